-- Enqueue a new request, idempotently, unless its pool queue is over its bound.
-- KEYS: req, queue, events, pools, stats
-- ARGV: id, deadline_ms, queue_bound, pool, maxlen, ctl_channel, queued_event, field, value, ...
-- → {'ok'} | {'exists', status} | {'full', queue_len}
local status = redis.call('HGET', KEYS[1], 'status')
if status then
  return {'exists', status}
end
local qlen = redis.call('ZCARD', KEYS[2])
if qlen >= tonumber(ARGV[3]) then
  redis.call('HINCRBY', KEYS[5], 'rejected:queue_full', 1)
  return {'full', tostring(qlen)}
end
local fields = {}
for i = 8, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'type', 'queued', 'data', ARGV[7])
redis.call('HINCRBY', KEYS[5], 'arrivals', 1)
redis.call('PUBLISH', ARGV[6], cjson.encode({type = 'enqueued', pool = ARGV[4]}))
return {'ok'}
