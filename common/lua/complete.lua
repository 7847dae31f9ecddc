-- Finish a request (done or failed) only if the caller still holds its lease: first writer wins.
-- KEYS: req, events, lease, stats, finished
-- ARGV: worker_id, attempt, req_id, status, now_ms, ttl_s, maxlen, final_json, field, value, ...
-- → 1 written | 0 ignored (stale: lease lost, cancelled, or already finished)
local h = redis.call('HMGET', KEYS[1], 'status', 'worker', 'attempt')
if h[1] ~= 'running' or h[2] ~= ARGV[1] or h[3] ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[4], 'stale_completions', 1)
  return 0
end
local fields = {'status', ARGV[4], 'finished_ms', ARGV[5]}
for i = 9, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'type', 'final', 'data', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('HINCRBY', KEYS[4], 'outcome:' .. ARGV[4], 1)
redis.call('XADD', KEYS[5], '*', 'id', ARGV[3], 'status', ARGV[4])
return 1
