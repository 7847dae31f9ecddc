-- Claim up to n earliest-deadline requests of one pool for a worker, in one round trip.
-- KEYS: queue, lease
-- ARGV: worker_id, n, now_ms, lease_ms, req_stem, events_stem, maxlen
-- → list of flat HGETALL arrays, one per claimed request (status now 'running')
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[2]))
local out = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local rk = ARGV[5] .. id
  -- a stale queue entry (cancelled, finished, expired hash) is simply dropped
  if redis.call('HGET', rk, 'status') == 'queued' then
    local attempt = redis.call('HINCRBY', rk, 'attempt', 1)
    redis.call('HSET', rk, 'status', 'running', 'worker', ARGV[1], 'started_ms', ARGV[3])
    redis.call('HSETNX', rk, 'claimed_ms', ARGV[3])
    redis.call('ZADD', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[4]), id)
    redis.call('XADD', ARGV[6] .. id, 'MAXLEN', '~', ARGV[7], '*', 'type', 'claimed',
      'data', cjson.encode({worker = ARGV[1], attempt = attempt, ts_ms = tonumber(ARGV[3])}))
    out[#out + 1] = redis.call('HGETALL', rk)
  end
end
return out
