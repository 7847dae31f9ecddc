-- Worker heartbeat: refresh its hash (with TTL) and renew the leases it still owns.
-- KEYS: lease, worker, workers
-- ARGV: worker_id, lease_expiry_ms, ttl_s, req_stem, num_fields, field, value, ..., id, attempt, ...
-- → ids whose lease the caller no longer owns (it should drop them)
local nf = tonumber(ARGV[5])
local fields = {}
for i = 6, 5 + 2 * nf do
  fields[#fields + 1] = ARGV[i]
end
if nf > 0 then
  redis.call('HSET', KEYS[2], unpack(fields))
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
local lost = {}
for i = 6 + 2 * nf, #ARGV, 2 do
  local id = ARGV[i]
  local h = redis.call('HMGET', ARGV[4] .. id, 'status', 'worker', 'attempt')
  if h[1] == 'running' and h[2] == ARGV[1] and h[3] == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
  else
    lost[#lost + 1] = id
  end
end
return lost
