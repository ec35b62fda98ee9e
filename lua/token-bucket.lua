#!lua flags=allow-cross-slot-keys
--[[
token-bucket.lua: decides several independent batches of bucket ops, each
atomically and all-or-nothing, in one call. Concurrent requests are coalesced
into one call per Redis node (src/store/script-batcher.ts); a batch is one
request's ops on this node. Mirrors `evaluate` + `batchCommits` of
src/core/bucket.ts exactly; change both together.

The flag allow-cross-slot-keys (Redis >= 7.0) lets one call touch keys of
several slots, as long as this node serves them all: the caller groups keys by
node, declares ONE of them in KEYS (declared keys must share a slot; Redis
routes and checks the call by it) and passes every key in ARGV. A key served
elsewhere makes the call fail, never a wrong decision.

KEYS[1]   one of the keys, for routing only
ARGV[1]   B, the number of batches
ARGV[2 .. B+1]  the number of ops in each batch
then 10 values per op, op i (counting over all batches) at ARGV[B + 1 + (i-1)*10 + 1]:
  +1 key              full key of the op
  +2 algorithm        'token_bucket' | 'fixed_window'
  +3 tickUs           micro-seconds per refill tick
  +4 refillPerTick    level added per tick (0 = requests_per_unit 0: always over)
  +5 levelPerToken    level units per token
  +6 capacityLevel    burst * levelPerToken
  +7 unitUs           unit length in micro-seconds (fixed_window alignment)
  +8 requestsPerUnit  fixed_window maximum count
  +9 cost             tokens to take; 0 = check only
  +10 shadow          '1' = never denies the batch
State per key: the string "<level>:<tsUs>" (integers, written with %.0f so
large numbers never turn into 1.7e+15). A missing key is a full bucket / an
empty window.

Time: redis TIME only (scripts replicate by effects in Redis 7), read once:
every batch of the call is decided at the same instant.
Batches are decided in order; a batch sees what earlier batches committed, and
ops on the same key within a batch see each other's tentative take.

A batch commits when every non-shadow op in it is allowed; then each allowed
op's next state is written with SET .. PX ttl (ttl >= 1 ms), or DEL when the
bucket is full again / the window is empty. Otherwise the batch writes nothing.

Returns { nowUs, then for each batch: committed(0|1),
          then 7 integers per op of the batch: allowed(0|1), remaining, resetUs,
          retryAfterUs, untakenRemaining, untakenResetUs, stateTsUs }
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

-- key -> { level, ts } or false (no state), as committed so far in this call
local stored = {}
-- key -> tentative state of the batch being decided
local states = {}
local function load(key)
  local s = states[key]
  if s ~= nil then return s end
  s = stored[key]
  if s == nil then
    s = false
    local v = redis.call('GET', key)
    if v then
      local l, ts = string.match(v, '^(%d+):(%d+)$')
      if l then s = { tonumber(l), tonumber(ts) } end
    end
    stored[key] = s
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

local batches = tonumber(ARGV[1])
local out = { now }
local first = 1              -- number of the batch's first op
for b = 1, batches do
  local count = tonumber(ARGV[1 + b])
  local committed = true
  local writes = {}          -- key -> { next, ttlUs } of the last allowed op on that key
  local order = {}           -- keys in first-write order
  states = {}
  local at = #out + 1
  out[at] = 0
  for i = first, first + count - 1 do
    local base = batches + 1 + (i - 1) * 10 + 1   -- ARGV[base] is the key, ARGV[base + 1] the algorithm
    local key = ARGV[base]
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
    out[at] = 1
    for _, key in ipairs(order) do
      local w = writes[key]
      local nxt = w[1]
      stored[key] = nxt
      if nxt then
        local ttl_ms = math.max(1, ceil_div(w[2], 1000))
        redis.call('SET', key, string.format('%.0f:%.0f', nxt[1], nxt[2]), 'PX', string.format('%.0f', ttl_ms))
      else
        redis.call('DEL', key)
      end
    end
  end
  first = first + count
end
return out
