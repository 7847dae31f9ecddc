-- Move every request queued for a retired pool to the live pool its class goes to now
-- (lib.lua), keeping its score (deadline) and its canvas checkpoint. A no-op unless the pool is
-- retired; stale entries (no longer queued) are dropped, as a claim would drop them.
-- KEYS: queue of the pool, retired pools, redirect, pools
-- ARGV: pool, req_stem, events_stem, queue_stem, ctl_channel, maxlen
-- → number of requests moved
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  return 0
end
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local moved, woken = 0, {}
for i = 1, #entries, 2 do
  local id, score = entries[i], entries[i + 1]
  local rk = ARGV[2] .. id
  local h = redis.call('HMGET', rk, 'status', 'slo_class')
  local pool = live_pool(KEYS[2], KEYS[3], ARGV[1], h[2], id)
  if pool ~= ARGV[1] then
    redis.call('ZREM', KEYS[1], id)
    if h[1] == 'queued' then
      redis.call('ZADD', ARGV[4] .. pool, score, id)
      redis.call('HSET', rk, 'pool', pool)
      redis.call('HINCRBY', rk, 'requeues', 1)
      redis.call('XADD', ARGV[3] .. id, 'MAXLEN', '~', ARGV[6], '*', 'type', 'requeued',
        'data', cjson.encode({reason = 'pool_retired', pool = pool}))
      redis.call('SADD', KEYS[4], pool)
      woken[pool] = true
      moved = moved + 1
    end
  end
end
for pool, _ in pairs(woken) do
  redis.call('PUBLISH', ARGV[5], cjson.encode({type = 'enqueued', pool = pool}))
end
return moved
