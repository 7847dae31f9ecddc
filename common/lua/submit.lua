-- Enqueue a new request, idempotently, unless its pool queue is over its bound. Every request
-- that is not a replay counts as an arrival of its class (admitted or rejected: the planner's
-- rates). A request for a pool the plan retired goes to a live pool instead (lib.lua).
-- KEYS: req, queue, events, pools, stats, arrivals bucket, retired pools, redirect
-- Deadline feasibility is decided here too, against the queue as it is at the enqueue: given
-- ahead_limit, a request with more than ahead_limit requests claimed before it cannot make
-- its deadline (the gateway computed the limit from its deadline, its service time and the
-- pool's service rate); a drop class is refused, a serve class is enqueued and flagged.
-- ARGV: id, score, queue_bound, pool, maxlen, ctl_channel, queued_event, slo_class, queue_stem,
--       arrivals_ttl_s, ahead_limit ('': no check; -1: late even first), drop_if_late (1|0),
--       field, value, ...
-- → {'ok', pool} | {'exists', status} | {'full', queue_len, pool} | {'infeasible', ahead, pool}
local status = redis.call('HGET', KEYS[1], 'status')
if status then
  return {'exists', status}
end
redis.call('HINCRBY', KEYS[6], ARGV[8], 1)
redis.call('EXPIRE', KEYS[6], tonumber(ARGV[10]))
local pool = live_pool(KEYS[7], KEYS[8], ARGV[4], ARGV[8], ARGV[1])
local queue = KEYS[2]
if pool ~= ARGV[4] then
  queue = ARGV[9] .. pool
end
local qlen = redis.call('ZCARD', queue)
if qlen >= tonumber(ARGV[3]) then
  redis.call('HINCRBY', KEYS[5], 'rejected:queue_full', 1)
  return {'full', tostring(qlen), pool}
end
local ahead_limit = tonumber(ARGV[11])
local late = false
local ahead = 0
if ahead_limit ~= nil then
  ahead = redis.call('ZCOUNT', queue, '-inf', '(' .. ARGV[2])
  late = ahead > ahead_limit
end
if late and ARGV[12] == '1' then
  redis.call('HINCRBY', KEYS[5], 'rejected:deadline_infeasible', 1)
  return {'infeasible', tostring(ahead), pool}
end
local fields = {}
for i = 13, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
if late then
  redis.call('HSET', KEYS[1], 'admission_flag', 'deadline_infeasible')
end
local event = ARGV[7]
if pool ~= ARGV[4] then
  redis.call('HSET', KEYS[1], 'pool', pool)
  local data = cjson.decode(event)
  data['pool'] = pool
  event = cjson.encode(data)
end
redis.call('ZADD', queue, ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], pool)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'type', 'queued', 'data', event)
redis.call('HINCRBY', KEYS[5], 'arrivals', 1)
redis.call('PUBLISH', ARGV[6], cjson.encode({type = 'enqueued', pool = pool}))
return {'ok', pool}
