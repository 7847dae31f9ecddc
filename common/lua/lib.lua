-- Helpers shared by the scripts: common/bus_calls.load_scripts prepends this file to each one.

-- The pool a request of class `cls` queued for `pool` belongs in now: `pool` itself, unless a
-- plan retired it; then one of the current plan's pools for the class, by its routing shares
-- (picked by a hash of the id, so a request always lands in the same one), else the largest
-- pool. redirect_key: class → JSON [[pool, share], ...], '*' → [[largest pool, 1]].
local function live_pool(retired_key, redirect_key, pool, cls, id)
  if redis.call('SISMEMBER', retired_key, pool) == 0 then
    return pool
  end
  local raw = redis.call('HGET', redirect_key, cls or '')
  if not raw then
    raw = redis.call('HGET', redirect_key, '*')
  end
  if not raw then
    return pool
  end
  local choices = cjson.decode(raw)
  local x = tonumber(string.sub(redis.sha1hex(id), 1, 8), 16) / 4294967296
  for _, c in ipairs(choices) do
    x = x - c[2]
    if x < 0 then
      return c[1]
    end
  end
  return choices[#choices][1]
end

