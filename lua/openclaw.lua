#!lua flags=allow-cross-slot-keys
--[[
openclaw.lua: the one Redis script of openclaw-ratelimit. Every operation on
bucket state lives here, sharing one copy of the arithmetic; ARGV[1] names the
operation. It mirrors src/core/bucket.ts (the JavaScript reference model,
which also computes every reported number from the states this script
returns); change both together. test/store/reference-redis.test.ts runs the
same random sequence through both and demands identical decisions.

Run by EVALSHA (EVAL on NOSCRIPT): one SHA for every operation. The flag
allow-cross-slot-keys (Redis >= 7.0) lets one call touch keys of several slots
served by this node: the caller declares ONE key in KEYS (routing only;
declared keys must share a slot) and passes every key in ARGV. Every read goes
through redis.pcall: a key this node does not serve (a resharding moved its
slot) marks its batch MOVED, and a MOVED batch writes nothing, so the caller
can send it again to the right node.

Limit table (every operation but presence): ARGV[2] = L, then 8 values per limit:
  alg ('t' token bucket | 'f' fixed window | 's' sliding window | 'h' global
  home bucket | 'l' region lease), tickUs,
  refillPerTick, levelPerToken, capacityLevel, windowUs, requestsPerUnit,
  windowTicks (sliding window: windowUs / tickUs; else 0)

take: decides B independent batches, each atomically and all-or-nothing.
  after the limit table: B, then B op counts, then 4 values per op:
  key, limit (1-based index into the table), cost (0 = check only),
  flags = shadow (1: never denies its batch) + 2 × quota group (0: none;
  g ≥ 1: the op belongs to quota-mode descriptor g)
  A batch commits when every ordinary op (neither shadow nor quota) is
  allowed and, if it has quota ops, one quota group has all its ops allowed
  (envoyproxy/ratelimit's quota_mode; core/bucket.ts commitPlan). Then each
  allowed take whose group (if any) is wholly allowed writes its next state
  (SET .. PX ttl >= 1 ms, or DEL when full/empty).
  Batches are decided in order; a batch sees what earlier ones committed, and
  ops on one key within a batch see each other's tentative take.
  Returns { nowUs, then per batch: status (0 denied, 1 committed, 2 moved),
            then 3 integers per op: the op key's state when its batch began }
  state triples: token bucket level, tsUs, 0; fixed window count,
  windowStartUs, 0; sliding window count, windowStartUs, previous count;
  no state: -1, 0, 0. The caller recomputes every outcome
  from these with the reference model.

refund: gives back what a committed batch took when another batch of the same
  request (another node or slot) denied. After the limit table, 4 values per op:
  key, limit, cost, chargedStartUs (windows: the window that was charged)
  A token bucket is refilled to now and gets `cost` back (capped; full =
  deleted); a window's count is decremented while it is still the charged
  window; a lease gets back at most what it has not yet reported spent. Nothing is added beyond what was taken: under-admission in the
  window between take and refund is possible, over-admission is not.
  Returns the number of keys changed.

debit, presence: see below (the local failure policy's admissions written
back; the number of sidecars sharing this Redis).

lease_claim, lease_grant, lease_deposit: global limits across regions (SPEC
§11), see below. In `take`, alg 'h' is a global limit's bucket in its home
region (a token bucket that holds back what leases hold; its state triple's
third value is that amount), alg 'l' spends a region's lease
("<tokens>:<expiresAtUs>:<generation>:<spent since last report>").

State per key: "<level>:<tsUs>", sliding windows "<count>:<windowStartUs>:<previousCount>"
(integers, written with %.0f so large numbers never turn into 1.7e+15). A
missing key is a full bucket / an empty window.
Time: Redis TIME only (scripts replicate by effects), read once per call.
]]

local function ceil_div(a, b)
  return math.floor((a + b - 1) / b)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function read_limits(at)
  local count = tonumber(ARGV[at])
  local limits = {}
  for i = 1, count do
    local b = at + (i - 1) * 8
    limits[i] = {
      alg = ARGV[b + 1], tick = tonumber(ARGV[b + 2]), refill = tonumber(ARGV[b + 3]),
      per = tonumber(ARGV[b + 4]), cap = tonumber(ARGV[b + 5]), window = tonumber(ARGV[b + 6]),
      max = tonumber(ARGV[b + 7]), wt = tonumber(ARGV[b + 8]),
    }
  end
  return limits, at + 1 + count * 8
end

-- Reads a key: {level, ts}, false (no state) or nil (not served by this node).
local function read_state(key)
  local v = redis.pcall('GET', key)
  if type(v) == 'table' and v.err then return nil end
  if not v then return false end
  local l, ts, third, fourth = string.match(v, '^(%d+):(%d+):?(%d*):?(%d*)$')
  if not l then return false end
  -- Sliding windows have a third field (the previous count); leases a third and fourth (gen, spent).
  return { tonumber(l), tonumber(ts), tonumber(third) or 0, gen = tonumber(third) or 0, spent = tonumber(fourth) or 0 }
end

local function write_state(key, state, ttl_us)
  if not state then
    redis.call('DEL', key)
    return
  end
  local text
  if state.lease then
    text = string.format('%.0f:%.0f:%.0f:%.0f', state[1], state[2], state.gen, state.spent)
  elseif state[3] then
    text = string.format('%.0f:%.0f:%.0f', state[1], state[2], state[3])
  else
    text = string.format('%.0f:%.0f', state[1], state[2])
  end
  redis.call('SET', key, text, 'PX', string.format('%.0f', math.max(1, ceil_div(ttl_us, 1000))))
end

-- Writes a token bucket at `level` (ts as refilled): deleted when full and no
-- lease is out, else kept until it would be full (and its leases over).
local function write_bucket(lim, key, state, level, ts)
  local horizon = 0
  if state and state.out and state.out > 0 then horizon = state.horizon end
  if level >= lim.cap and horizon == 0 then
    redis.call('DEL', key)
    return
  end
  local progress = 0
  if now > ts then progress = now - ts end
  local ttl = ceil_div(math.max(0, lim.cap - level), lim.refill) * lim.tick - progress + horizon
  redis.call('SET', key, string.format('%.0f:%.0f', level, ts), 'PX', string.format('%.0f', math.max(1, ceil_div(ttl, 1000))))
end

-- The capacity a token bucket refills to: a global limit's home bucket holds
-- back what its regions hold in unexpired leases (state.out, level units).
local function capacity(lim, state)
  if state and state.out then return lim.cap - state.out end
  return lim.cap
end

-- A token bucket's state refilled to now: level, ts.
local function refilled(lim, state)
  local cap = capacity(lim, state)
  if not state then return cap, now end
  local level, ts = state[1], state[2]
  local missing = cap - level
  local ticks = 0
  if now > ts then ticks = math.floor((now - ts) / lim.tick) end
  if missing <= 0 or ticks >= ceil_div(missing, lim.refill) then return cap, now end
  return level + ticks * lim.refill, ts + ticks * lim.tick
end

-- A global limit's home bucket: its state plus the leases its regions hold,
-- in the hash <key>:l (region -> "<tokens>:<expiresAtUs>:<generation>"). `out` is what
-- unexpired leases hold (level units), `horizon` how long the last one runs.
-- No state while leases are out cannot happen (the bucket outlives them); if
-- it did, the bucket is read as full up to what the leases leave.
local function with_leases(lim, state, key)
  local out, horizon = 0, 0
  local leases = redis.call('HGETALL', key .. ':l')
  for i = 1, #leases, 2 do
    local tokens, expires = string.match(leases[i + 1], '^(%d+):(%d+)')
    if tokens and tonumber(expires) > now then
      out = out + tonumber(tokens) * lim.per
      horizon = math.max(horizon, tonumber(expires) - now)
    end
  end
  if not state then
    if out == 0 then return false end
    state = { lim.cap - out, now }
  end
  return { state[1], state[2], out = out, horizon = horizon }
end

-- A fixed window's state at now: count, window start (a state outside its window is an empty new window).
local function current_window(lim, state)
  if state and state[2] <= now and now < state[2] + lim.window then return state[1], state[2] end
  return 0, math.floor(now / lim.window) * lim.window
end

-- A sliding window's state at now: count, previous count, window start (read
-- by where now falls, as core/bucket.ts evaluateSlidingWindow).
local function sliding(lim, state)
  if state then
    if now < state[2] + lim.window then return state[1], state[3] or 0, state[2] end
    if now < state[2] + 2 * lim.window then return 0, state[1], state[2] + lim.window end
  end
  return 0, 0, math.floor(now / lim.window) * lim.window
end

-- Decides one op on `state`: allowed, next state (false = none), ttlUs of the next state.
local function decide(lim, state, cost)
  if lim.alg == 's' then
    local cur, prev, start = sliding(lim, state)
    local et = 0
    if now > start then et = math.floor((now - start) / lim.tick) end
    local weighted = prev * (lim.wt - et)
    if cur + cost > lim.max or weighted + (cur + cost) * lim.wt > lim.max * lim.wt then return false, state, 0 end
    local after = cur + cost
    if after == 0 and prev == 0 then return true, false, 0 end
    local ttl = start + lim.window - now
    if after > 0 then ttl = start + 2 * lim.window - now end
    return true, { after, start, prev }, ttl
  end
  if lim.alg == 'f' then
    local count, start = current_window(lim, state)
    if count + cost > lim.max then return false, state, 0 end
    local after = count + cost
    if after == 0 then return true, false, 0 end
    return true, { after, start }, start + lim.window - now
  end
  if lim.alg == 'l' then
    -- A region's lease of a global limit: tokens until it expires (region clock).
    -- Kept while it lasts, even empty: what was spent is reported with the next request.
    local tokens = 0
    if state and now < state[2] then tokens = state[1] end
    if cost > tokens then return false, state, 0 end
    return true, { tokens - cost, state[2], lease = true, gen = state.gen, spent = state.spent + cost }, state[2] - now
  end
  if lim.refill == 0 then return cost == 0, state, 0 end -- requests_per_unit 0: always over
  local level, ts = refilled(lim, state)
  local need = cost * lim.per
  if need > level then return false, state, 0 end
  local after = level - need
  local progress = 0
  if now > ts then progress = now - ts end
  if state and state.out and state.out > 0 then
    -- A home bucket is kept while leases are out, and lives until it would be full once they end.
    return true, { after, ts, out = state.out, horizon = state.horizon },
      ceil_div(lim.cap - after, lim.refill) * lim.tick - progress + state.horizon
  end
  if after >= lim.cap then return true, false, 0 end
  return true, { after, ts }, ceil_div(lim.cap - after, lim.refill) * lim.tick - progress
end

local function take()
  local limits, at = read_limits(2)
  local batches = tonumber(ARGV[at])
  local counts = at + 1
  local op = at + 1 + batches
  local out = { now }
  local stored = {}  -- key -> state committed so far in this call (false = none)
  for b = 1, batches do
    local count = tonumber(ARGV[counts + b - 1])
    local status_at = #out + 1
    out[status_at] = 0
    local committed = true
    local moved = false
    local tentative = {} -- key -> state within this batch
    local takes = {}     -- { key, next state, ttl, quota group, shadow } of each allowed take, in order
    local groups = {}    -- quota group -> every op of it allowed
    local has_groups = false
    for i = 1, count do
      local key = ARGV[op]
      local lim = limits[tonumber(ARGV[op + 1])]
      local cost = tonumber(ARGV[op + 2])
      local flags = tonumber(ARGV[op + 3])
      local shadow = flags % 2 == 1
      local group = math.floor(flags / 2)
      op = op + 4
      local start = stored[key]
      if start == nil then
        start = read_state(key)
        if start == nil then
          moved = true
          start = false
        elseif lim.alg == 'h' then
          start = with_leases(lim, start, key)
        end
        stored[key] = start
      end
      local n = #out
      if start then
        local extra = start.out or start[3] or 0
        if lim.alg == 'l' or lim.alg == 't' or lim.alg == 'f' then extra = start.out or 0 end
        out[n + 1], out[n + 2], out[n + 3] = start[1], start[2], extra
      else
        out[n + 1], out[n + 2], out[n + 3] = -1, 0, 0
      end
      local state = tentative[key]
      if state == nil then state = start end
      local allowed, nxt, ttl = decide(lim, state, cost)
      if allowed and cost > 0 then -- a check-only op changes nothing (refilling twice is refilling once)
        takes[#takes + 1] = { key, nxt, ttl, group, shadow }
        tentative[key] = nxt
      end
      if not shadow then
        if group == 0 then
          if not allowed then committed = false end
        else
          local whole = groups[group]
          if whole == nil then whole = true end
          groups[group] = whole and allowed
          has_groups = true
        end
      end
    end
    if committed and has_groups then
      local any = false
      for _, whole in pairs(groups) do any = any or whole end
      committed = any
    end
    if moved then
      out[status_at] = 2
    elseif committed then
      out[status_at] = 1
      -- The last take on each key (whose quota group, if any, is wholly allowed) is its new state.
      local writes, order = {}, {}
      for _, w in ipairs(takes) do
        if w[5] or w[4] == 0 or groups[w[4]] then
          if writes[w[1]] == nil then order[#order + 1] = w[1] end
          writes[w[1]] = w
        end
      end
      for _, key in ipairs(order) do
        local w = writes[key]
        stored[key] = w[2]
        write_state(key, w[2], w[3])
      end
    end
  end
  return out
end

local function refund()
  local limits, at = read_limits(2)
  local changed = 0
  for op = at, #ARGV, 4 do
    local key = ARGV[op]
    local lim = limits[tonumber(ARGV[op + 1])]
    local cost = tonumber(ARGV[op + 2])
    local state = read_state(key)
    if state and cost > 0 then
      if lim.alg == 's' then
        if state[2] == tonumber(ARGV[op + 3]) then
          local left = math.max(0, state[1] - cost)
          if left == 0 and (state[3] or 0) == 0 then
            redis.call('DEL', key)
          else
            redis.call('SET', key, string.format('%.0f:%.0f:%.0f', left, state[2], state[3] or 0), 'KEEPTTL')
          end
          changed = changed + 1
        end
      elseif lim.alg == 'f' then
        if state[2] == tonumber(ARGV[op + 3]) then
          local left = state[1] - cost
          if left <= 0 then
            redis.call('DEL', key)
          else
            redis.call('SET', key, string.format('%.0f:%.0f', left, state[2]), 'KEEPTTL')
          end
          changed = changed + 1
        end
      elseif lim.alg == 'l' then
        -- Only what is still counted as spent here comes back: tokens already
        -- reported spent (lease_claim) were released at home, so they are gone.
        local back = math.min(cost, state.spent)
        if now < state[2] and back > 0 then
          redis.call('SET', key, string.format('%.0f:%.0f:%.0f:%.0f', state[1] + back, state[2], state.gen,
            state.spent - back), 'KEEPTTL')
          changed = changed + 1
        end
      elseif lim.refill > 0 then
        if lim.alg == 'h' then state = with_leases(lim, state, key) end
        local level, ts = refilled(lim, state)
        level = math.min(capacity(lim, state), level + cost * lim.per)
        write_bucket(lim, key, state, level, ts)
        changed = changed + 1
      end
    end
  end
  return changed
end

-- debit: records takes that this cluster did not see (the local failure policy
-- admitted them while their master was down), so the promoted replica does not
-- grant them again. After the limit table, 3 values per op: key, limit, cost.
-- Unconditional: a token bucket's level goes down by cost (not below 0), a
-- fixed window's count up by cost (not above its maximum). Returns the number of keys changed.
local function debit()
  local limits, at = read_limits(2)
  local changed = 0
  for op = at, #ARGV, 3 do
    local key = ARGV[op]
    local lim = limits[tonumber(ARGV[op + 1])]
    local cost = tonumber(ARGV[op + 2])
    local state = read_state(key)
    if state ~= nil and cost > 0 then
      if lim.alg == 's' then
        local cur, prev, start = sliding(lim, state)
        write_state(key, { math.min(lim.max, cur + cost), start, prev }, start + 2 * lim.window - now)
        changed = changed + 1
      elseif lim.alg == 'f' then
        local count, start = current_window(lim, state)
        local after = math.min(lim.max, count + cost)
        write_state(key, { after, start }, start + lim.window - now)
        changed = changed + 1
      elseif lim.alg == 'l' then
        if state and now < state[2] then
          local taken = math.min(cost, state[1])
          write_state(key, { state[1] - taken, state[2], lease = true, gen = state.gen, spent = state.spent + taken }, state[2] - now)
          changed = changed + 1
        end
      elseif lim.refill > 0 then
        if lim.alg == 'h' then state = with_leases(lim, state, key) end
        local level, ts = refilled(lim, state)
        write_bucket(lim, key, state, math.max(0, level - cost * lim.per), ts)
        changed = changed + 1
      end
    end
  end
  return changed
end

-- presence: counts the sidecars deciding against this Redis, for the local
-- failure policy's automatic divisor. KEYS[1] is the presence sorted set;
-- ARGV: 'presence', member (one per process), ttlUs. Adds or refreshes the
-- member at Redis time, drops members not seen within ttlUs, returns the count.
local function presence()
  local key = KEYS[1]
  local ttl = tonumber(ARGV[3])
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('(%.0f', now - ttl))
  redis.call('PEXPIRE', key, string.format('%.0f', math.max(1, ceil_div(2 * ttl, 1000))))
  return redis.call('ZCARD', key)
end

-- lease_claim: one sidecar of a region refills a key's lease at a time.
-- ARGV: 'lease_claim', ttlUs, then lease keys. For each it claims
-- (SET NX <key>:p for ttlUs) and, when claimed, takes the tokens spent from
-- the lease since its last report (they go to the home region with the
-- request). Returns 3 integers per key: claimed (0|1), spent, generation.
local function lease_claim()
  local ttl = string.format('%.0f', math.max(1, ceil_div(tonumber(ARGV[2]), 1000)))
  local out = {}
  for i = 3, #ARGV do
    local key = ARGV[i]
    local claimed = redis.call('SET', key .. ':p', '1', 'NX', 'PX', ttl) and 1 or 0
    local spent, gen = 0, 0
    if claimed == 1 then
      local state = read_state(key)
      if state and state.spent > 0 then
        spent, gen = state.spent, state.gen
        redis.call('SET', key, string.format('%.0f:%.0f:%.0f:0', state[1], state[2], state.gen), 'KEEPTTL')
      elseif state then
        gen = state.gen
      end
    end
    out[#out + 1] = claimed
    out[#out + 1] = spent
    out[#out + 1] = gen
  end
  return out
end

-- A region's lease as its home counts it: leases hash entry "<tokens>:<expiresAtUs>:<generation>".
local function home_lease(leases, region)
  local v = redis.call('HGET', leases, region)
  if not v then return nil end
  local tokens, expires, gen = string.match(v, '^(%d+):(%d+):?(%d*)$')
  if not tokens then return nil end
  return { tonumber(tokens), tonumber(expires), tonumber(gen) or 0 }
end

-- lease_grant, in the key's home region: moves tokens from the global bucket
-- into a region's lease. After the limit table: region, ttlUs, then 5
-- values per key: bucket key, limit, wanted tokens, spent, generation.
-- What the region reports spent from its current lease (same generation)
-- no longer counts as held by it: that capacity comes back to the bucket by
-- refill. The bucket refills only up to what unexpired leases still hold
-- (bucket plus leases never exceed the burst); the grant is what it holds,
-- at most `wanted`, added to the region's unexpired lease (whose expiry moves
-- to now + ttlUs), or a new lease of the next generation.
-- Returns { nowUs, then per key: granted tokens, generation }.
local function lease_grant()
  local limits, at = read_limits(2)
  local region = ARGV[at]
  local ttl = tonumber(ARGV[at + 1])
  local out = { now }
  for op = at + 2, #ARGV, 5 do
    local key = ARGV[op]
    local lim = limits[tonumber(ARGV[op + 1])]
    local wanted = tonumber(ARGV[op + 2])
    local spent = tonumber(ARGV[op + 3])
    local gen = tonumber(ARGV[op + 4])
    local leases = key .. ':l'
    local granted, held, next_gen = 0, 0, gen
    local mine = home_lease(leases, region)
    if mine and mine[2] > now then
      held = mine[1]
      next_gen = mine[3]
      if mine[3] == gen then held = math.max(0, held - spent) end
    else
      next_gen = (mine and mine[3] or gen) + 1
    end
    local state = read_state(key)
    if state ~= nil and lim.refill > 0 then
      if mine and mine[2] > now and held ~= mine[1] then
        redis.call('HSET', leases, region, string.format('%.0f:%.0f:%.0f', held, mine[2], mine[3]))
      end
      state = with_leases(lim, state, key) or { lim.cap, now, out = 0, horizon = 0 }
      local level, ts = refilled(lim, state)
      granted = math.min(wanted, math.floor(level / lim.per))
      if granted > 0 then
        redis.call('HSET', leases, region, string.format('%.0f:%.0f:%.0f', held + granted, now + ttl, next_gen))
        -- Expired leases go; the hash lives as long as its longest lease.
        local all = redis.call('HGETALL', leases)
        local horizon = ttl
        for i = 1, #all, 2 do
          local _, expires = string.match(all[i + 1], '^(%d+):(%d+)')
          if not expires or tonumber(expires) <= now then redis.call('HDEL', leases, all[i])
          else horizon = math.max(horizon, tonumber(expires) - now) end
        end
        redis.call('PEXPIRE', leases, string.format('%.0f', math.max(1, ceil_div(horizon, 1000))))
        local after = level - granted * lim.per
        state.out = state.out + granted * lim.per
        state.horizon = math.max(state.horizon, ttl)
        write_bucket(lim, key, state, after, ts)
      end
    end
    out[#out + 1] = granted
    out[#out + 1] = next_gen
  end
  return out
end

-- lease_deposit, in the region: adds granted tokens to the region's lease.
-- ARGV: 'lease_deposit', then 4 values per key: lease key, tokens, ttlUs
-- (already shortened by the grant's age and a margin, so the lease ends
-- before the home region stops counting it), generation. A lease of another
-- generation (its home lease expired meanwhile) is replaced. Frees the claim.
local function lease_deposit()
  for op = 2, #ARGV, 4 do
    local key = ARGV[op]
    local tokens = tonumber(ARGV[op + 1])
    local ttl = tonumber(ARGV[op + 2])
    local gen = tonumber(ARGV[op + 3])
    local state = read_state(key)
    if state ~= nil and ttl > 0 and tokens > 0 then
      local held, spent = 0, 0
      if state and now < state[2] and state.gen == gen then held, spent = state[1], state.spent end
      write_state(key, { held + tokens, now + ttl, lease = true, gen = gen, spent = spent }, ttl)
    end
    redis.pcall('DEL', key .. ':p')
  end
  return 1
end

local operation = ARGV[1]
if operation == 'take' then return take() end
if operation == 'refund' then return refund() end
if operation == 'debit' then return debit() end
if operation == 'presence' then return presence() end
if operation == 'lease_claim' then return lease_claim() end
if operation == 'lease_grant' then return lease_grant() end
if operation == 'lease_deposit' then return lease_deposit() end
return redis.error_reply('openclaw.lua: unknown operation ' .. tostring(operation))
