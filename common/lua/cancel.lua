-- Cancel a request: a queued one leaves its queue now; a running one is marked cancelled (the
-- hash is the truth: its worker's next publish sees it) and its worker is told over pub/sub.
-- KEYS: req, events, lease, stats, finished
-- ARGV: req_id, now_ms, ttl_s, maxlen, ctl_channel, queue_stem
-- → {'ok', previous_status} | {'missing'} | {'finished', status}
local h = redis.call('HMGET', KEYS[1], 'status', 'pool', 'worker')
if not h[1] then
  return {'missing'}
end
if h[1] ~= 'queued' and h[1] ~= 'running' then
  return {'finished', h[1]}
end
if h[1] == 'queued' then
  redis.call('ZREM', ARGV[6] .. h[2], ARGV[1])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('PUBLISH', ARGV[5], cjson.encode({type = 'cancel', id = ARGV[1], worker = h[3]}))
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_ms', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'type', 'final',
  'data', cjson.encode({status = 'cancelled'}))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[4], 'outcome:cancelled', 1)
redis.call('XADD', KEYS[5], '*', 'id', ARGV[1], 'status', 'cancelled')
return {'ok', h[1]}
