-- Requeue requests whose lease expired (their worker is gone), keeping the canvas checkpoint;
-- fail them once they have lost more than max_failures attempts. Safe to run anywhere, any time.
-- A pool the plan retired meanwhile hands them to a live pool instead (lib.lua).
-- KEYS: lease, stats, finished, retired pools, redirect
-- ARGV: now_ms, req_stem, events_stem, queue_stem, max_failures, ttl_s, maxlen, ctl_channel, limit
-- → {num_requeued, num_failed}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[9]))
local requeued, failed = 0, 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local rk = ARGV[2] .. id
  local ek = ARGV[3] .. id
  local h = redis.call('HMGET', rk, 'status', 'pool', 'deadline_ms', 'worker', 'queue_score',
    'slo_class')
  if h[1] == 'running' then
    local failures = redis.call('HINCRBY', rk, 'failures', 1)
    if failures > tonumber(ARGV[5]) then
      local err = 'worker lost ' .. failures .. ' times (last: ' .. (h[4] or '?') .. ')'
      redis.call('HSET', rk, 'status', 'failed', 'error', err, 'finished_ms', ARGV[1])
      redis.call('XADD', ek, 'MAXLEN', '~', ARGV[7], '*', 'type', 'final',
        'data', cjson.encode({status = 'failed', error = err}))
      redis.call('EXPIRE', rk, ARGV[6])
      redis.call('EXPIRE', ek, ARGV[6])
      redis.call('HINCRBY', KEYS[2], 'outcome:failed', 1)
      redis.call('XADD', KEYS[3], '*', 'id', id, 'status', 'failed')
      failed = failed + 1
    else
      local pool = live_pool(KEYS[4], KEYS[5], h[2], h[6], id)
      redis.call('HSET', rk, 'status', 'queued', 'worker', '', 'pool', pool)
      redis.call('HINCRBY', rk, 'requeues', 1)
      redis.call('ZADD', ARGV[4] .. pool, h[5] or h[3], id)
      redis.call('XADD', ek, 'MAXLEN', '~', ARGV[7], '*', 'type', 'requeued',
        'data', cjson.encode({reason = 'lease_expired', worker = h[4], pool = pool}))
      redis.call('PUBLISH', ARGV[8], cjson.encode({type = 'enqueued', pool = pool}))
      requeued = requeued + 1
    end
    redis.call('HINCRBY', KEYS[2], 'reaped', 1)
  end
end
return {requeued, failed}
