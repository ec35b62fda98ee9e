--[[
token-bucket.lua: decides one batch of bucket ops atomically (all keys in one
Redis Cluster slot). Mirrors `evaluate` + `batchCommits` of src/core/bucket.ts
exactly; change both together.

KEYS[i]   full key of op i (every key carries the same {hash tag})
ARGV      9 values per op; op i starts at ARGV[(i-1)*9 + 1]:
  +1 algorithm        'token_bucket' | 'fixed_window'
  +2 tickUs           micro-seconds per refill tick
  +3 refillPerTick    level added per tick (0 = requests_per_unit 0: always over)
  +4 levelPerToken    level units per token
  +5 capacityLevel    burst * levelPerToken
  +6 unitUs           unit length in micro-seconds (fixed_window alignment)
  +7 requestsPerUnit  fixed_window maximum count
  +8 cost             tokens to take; 0 = check only
  +9 shadow           '1' = never denies the batch
State per key: the string "<level>:<tsUs>" (integers, written with %.0f so
large numbers never turn into 1.7e+15). A missing key is a full bucket / an
empty window.

Time: redis TIME only (scripts replicate by effects in Redis 7).
Ops on the same key see each other's tentative take, in order.

The batch commits when every non-shadow op is allowed; then each allowed op's
next state is written with SET .. PX ttl (ttl >= 1 ms), or DEL when the bucket
is full again / the window is empty. Otherwise nothing is written.

Returns { committed(0|1), nowUs,
          then 7 integers per op: allowed(0|1), remaining, resetUs, retryAfterUs,
          untakenRemaining, untakenResetUs, stateTsUs }
  remaining/resetUs are the outcome if the batch commits (the op took its
  tokens); untaken* are the outcome when nothing is taken (batch not
  committed); stateTsUs is the `ts` written for this op (fixed_window: its
  window start), used by refund.lua.
]]

local function ceil_div(a, b)
  return math.floor((a + b - 1) / b)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- key -> { level, ts } or false (no state); loaded once, updated tentatively
local states = {}
local function load(key)
  local s = states[key]
  if s ~= nil then return s end
  s = false
  local v = redis.call('GET', key)
  if v then
    local l, ts = string.match(v, '^(%d+):(%d+)$')
    if l then s = { tonumber(l), tonumber(ts) } end
  end
  states[key] = s
  return s
end

-- Returns allowed, remaining, resetUs, retryAfterUs, untakenRemaining,
-- untakenResetUs, next ({level, ts} or false), ttlUs
local function token_bucket(a, base, state)
  local tick = tonumber(a[base + 2])
  local refill = tonumber(a[base + 3])
  local per = tonumber(a[base + 4])
  local cap = tonumber(a[base + 5])
  local unit = tonumber(a[base + 6])
  local cost = tonumber(a[base + 8])
  if refill == 0 then
    if cost == 0 then return true, 0, 0, 0, 0, 0, false, 0 end
    return false, 0, 0, unit, 0, 0, false, 0
  end
  local level = cap
  local ts = now
  if state then
    level = state[1]
    ts = state[2]
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
  end
  local progress = 0
  if now > ts then progress = now - ts end
  local need = cost * per
  local allowed = need <= level
  local after = level
  if allowed then after = level - need end
  local reset = 0
  if after < cap then reset = ceil_div(cap - after, refill) * tick - progress end
  local ureset = 0
  if level < cap then ureset = ceil_div(cap - level, refill) * tick - progress end
  local retry = 0
  if not allowed then
    if need > cap then
      retry = reset
    else
      retry = ceil_div(need - level, refill) * tick - progress
    end
  end
  local nxt = false
  if after < cap then nxt = { after, ts } end
  return allowed, math.floor(after / per), reset, retry, math.floor(level / per), ureset, nxt, reset
end

local function fixed_window(a, base, state)
  local unit = tonumber(a[base + 6])
  local max = tonumber(a[base + 7])
  local cost = tonumber(a[base + 8])
  local ws = math.floor(now / unit) * unit
  local count = 0
  if state and state[2] == ws then count = state[1] end
  local reset = ws + unit - now
  local allowed = count + cost <= max
  local after = count
  if allowed then after = count + cost end
  local retry = 0
  if not allowed then retry = reset end
  local nxt = false
  if after ~= 0 then nxt = { after, ws } end
  return allowed, math.max(0, max - after), reset, retry, math.max(0, max - count), reset, nxt, reset
end

local out = { 0, now }
local committed = true
local writes = {}      -- key -> { next, ttlUs } of the last allowed op on that key
local order = {}       -- keys in first-write order
for i = 1, #KEYS do
  local key = KEYS[i]
  local base = (i - 1) * 9
  local state = load(key)
  local allowed, rem, reset, retry, urem, ureset, nxt, ttl
  if ARGV[base + 1] == 'fixed_window' then
    allowed, rem, reset, retry, urem, ureset, nxt, ttl = fixed_window(ARGV, base, state)
  else
    allowed, rem, reset, retry, urem, ureset, nxt, ttl = token_bucket(ARGV, base, state)
  end
  local ts = 0
  if allowed then
    if writes[key] == nil then order[#order + 1] = key end
    writes[key] = { nxt, ttl }
    states[key] = nxt
    if nxt then ts = nxt[2] end
  elseif ARGV[base + 9] ~= '1' then
    committed = false
  end
  local n = #out
  out[n + 1] = allowed and 1 or 0
  out[n + 2] = rem
  out[n + 3] = reset
  out[n + 4] = retry
  out[n + 5] = urem
  out[n + 6] = ureset
  out[n + 7] = ts
end

if committed then
  out[1] = 1
  for _, key in ipairs(order) do
    local w = writes[key]
    local nxt = w[1]
    if nxt then
      local ttl_ms = math.max(1, ceil_div(w[2], 1000))
      redis.call('SET', key, string.format('%.0f:%.0f', nxt[1], nxt[2]), 'PX', string.format('%.0f', ttl_ms))
    else
      redis.call('DEL', key)
    end
  end
end
return out
