-- Put a running request back on its queue (drain, or a retryable failure), keeping its deadline
-- and its canvas checkpoint; only if the caller still holds its lease. A pool the plan retired
-- meanwhile hands it to a live pool instead (lib.lua).
-- KEYS: req, events, lease, queue, stats, retired pools, redirect
-- ARGV: worker_id, attempt, req_id, canvas ('' = keep), ckpt_block, failures_inc, reason, error,
--       maxlen, ctl_channel, pool, score_offset (the best-effort lane for late requests),
--       queue_stem
-- → 1 requeued | 0 ignored
local h = redis.call('HMGET', KEYS[1], 'status', 'worker', 'attempt', 'deadline_ms', 'queue_score',
  'slo_class')
if h[1] ~= 'running' or h[2] ~= ARGV[1] or h[3] ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[5], 'stale_handbacks', 1)
  return 0
end
local pool = live_pool(KEYS[6], KEYS[7], ARGV[11], h[6], ARGV[3])
local queue = KEYS[4]
if pool ~= ARGV[11] then
  queue = ARGV[13] .. pool
  redis.call('HSET', KEYS[1], 'pool', pool)
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'worker', '')
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'canvas', ARGV[4], 'ckpt_block', ARGV[5])
end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[1], 'last_error', ARGV[8])
end
redis.call('HINCRBY', KEYS[1], 'failures', tonumber(ARGV[6]))
redis.call('HINCRBY', KEYS[1], 'requeues', 1)
redis.call('ZREM', KEYS[3], ARGV[3])
local score = tonumber(h[5] or h[4]) or tonumber(h[4])
redis.call('ZADD', queue, score + tonumber(ARGV[12] or '0'), ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], '*', 'type', 'requeued',
  'data', cjson.encode({reason = ARGV[7], error = ARGV[8], pool = pool}))
redis.call('HINCRBY', KEYS[5], 'requeued:' .. ARGV[7], 1)
redis.call('PUBLISH', ARGV[10], cjson.encode({type = 'enqueued', pool = pool}))
return 1
