-- Record one step of one request, only while the caller still holds its lease.
-- KEYS: req, events
-- ARGV: worker_id, attempt, maxlen, event_json, steps, tokens_committed, tokens_total, block,
--       partial_text, tau, canvas ('' = no checkpoint this step), ckpt_block
-- → 'ok' | the reason the caller no longer owns it (its status, or 'lost')
local h = redis.call('HMGET', KEYS[1], 'status', 'worker', 'attempt', 'tau_min', 'tau_max')
if h[1] ~= 'running' then
  return h[1] or 'missing'
end
if h[2] ~= ARGV[1] or h[3] ~= ARGV[2] then
  return 'lost'
end
local tau = tonumber(ARGV[10])
local tau_min = tonumber(h[4]) or tau
local tau_max = tonumber(h[5]) or tau
redis.call('HSET', KEYS[1], 'steps', ARGV[5], 'tokens_committed', ARGV[6],
  'tokens_total', ARGV[7], 'block', ARGV[8], 'partial', ARGV[9],
  'tau_min', tostring(math.min(tau_min, tau)), 'tau_max', tostring(math.max(tau_max, tau)))
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[1], 'canvas', ARGV[11], 'ckpt_block', ARGV[12])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', 'progress', 'data', ARGV[4])
return 'ok'
