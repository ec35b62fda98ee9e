#!lua flags=allow-cross-slot-keys
--[[
refund.lua: gives back tokens that token-bucket.lua took for a request that
was denied by another slot group (Redis Cluster, keys spread over slots).
Only run on that denial path. Giving back restores the bucket as if the take
never happened, while keeping every other request's take: the level is
refilled to now exactly as token-bucket.lua does, then `cost` tokens are
added (capped at capacity; a full bucket is deleted). A key that is already
gone was full, so there is nothing to give back. A fixed_window count is only
decremented while it is still the window that was charged. Under-admission
between the take and this refund is accepted; over-admission is not possible
because nothing is added beyond what this request took.

KEYS[1]   one of the keys, for routing only (declared keys must share a slot)
ARGV      8 values per op; op i starts at ARGV[(i-1)*8 + 1]:
  +1 key              full key of the op (all served by this node: the flag
                      above lets one call touch several slots of one node)
  +2 algorithm        'token_bucket' | 'fixed_window'
  +3 tickUs
  +4 refillPerTick
  +5 levelPerToken
  +6 capacityLevel
  +7 cost             tokens taken by that op
  +8 stateTsUs        fixed_window: the window start that was charged
Returns the number of keys changed.
]]

local function ceil_div(a, b)
  return math.floor((a + b - 1) / b)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local changed = 0

for i = 1, #ARGV / 8 do
  local base = (i - 1) * 8 + 1
  local key = ARGV[base]
  local cost = tonumber(ARGV[base + 6])
  local v = redis.call('GET', key)
  local l, ts
  if v then l, ts = string.match(v, '^(%d+):(%d+)$') end
  if l and cost > 0 then
    local level = tonumber(l)
    ts = tonumber(ts)
    if ARGV[base + 1] == 'fixed_window' then
      if ts == tonumber(ARGV[base + 7]) then
        level = level - cost
        if level <= 0 then
          redis.call('DEL', key)
        else
          redis.call('SET', key, string.format('%.0f:%.0f', level, ts), 'KEEPTTL')
        end
        changed = changed + 1
      end
    else
      local tick = tonumber(ARGV[base + 2])
      local refill = tonumber(ARGV[base + 3])
      local per = tonumber(ARGV[base + 4])
      local cap = tonumber(ARGV[base + 5])
      if refill > 0 then
        local missing = cap - level
        local ticks = 0
        if now > ts then ticks = math.floor((now - ts) / tick) end
        if missing <= 0 or ticks >= ceil_div(missing, refill) then
          level = cap
          ts = now
        else
          level = level + ticks * refill
          ts = ts + ticks * tick
        end
        level = level + cost * per
        if level >= cap then
          redis.call('DEL', key)
        else
          local progress = 0
          if now > ts then progress = now - ts end
          local ttl = ceil_div(cap - level, refill) * tick - progress
          redis.call('SET', key, string.format('%.0f:%.0f', level, ts),
            'PX', string.format('%.0f', math.max(1, ceil_div(ttl, 1000))))
        end
        changed = changed + 1
      end
    end
  end
end
return changed
