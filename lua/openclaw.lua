#!lua flags=allow-cross-slot-keys
--[[
openclaw.lua: the one Redis script of openclaw-ratelimit. Every operation on
bucket state lives here; ARGV[1] names the operation (OPERATIONS, at the
end). Each algorithm is one entry of ALGORITHMS: what it reads of its limit,
its take, refund and debit, and what it reports. Each entry mirrors one
module of src/core/algorithms/ (the JavaScript reference model, which also
computes every reported number from the states this script returns); change
both together. test/integration/store/reference-redis.test.ts runs random sequences
through both and demands identical decisions and states.

Run by EVALSHA (EVAL on NOSCRIPT): one SHA for every operation. The flag
allow-cross-slot-keys (Redis >= 7.0) lets one call touch keys of several slots
served by this node: the caller declares ONE key in KEYS (routing only;
declared keys must share a slot) and passes every key in ARGV. A key this
node does not serve (a resharding moved its slot) marks its batch MOVED, and
a MOVED batch writes nothing, so the caller can send it again to the right node.

Limit table (every operation but presence and the lease_claim/lease_deposit
pair): ARGV[2] = L, then each limit: its algorithm's code, then the values
that entry's `limit` reads:
  't' token bucket, 'h' a global limit's home bucket: tickUs, refillPerTick,
      levelPerToken, capacityLevel
  'o' token budget (overdraft): as 't', then debtFloor (its lowest level, < 0)
  'f' fixed window: windowUs, requestsPerUnit
  's' sliding window: windowUs, tickUs, requestsPerUnit
  'l' a region's lease of a global limit: nothing

take: decides batches (each one request's ops), each atomically and
  all-or-nothing. After the limit table:
  the keys, each once: G, then per read group its size n and n keys (the
  keys of one group share a slot and are read by one MGET);
  then 3 values per op: key (1-based index into those keys), word, cost
  (0 = check only). word = limit index + (L + 1) × flags, flags = joins
  (1: the op belongs to the previous op's batch; 0: it starts a batch)
  + 2 × shadow (never denies its batch) + 4 × report (a charge of
  /v1/report) + 8 × quota group (0: none; g ≥ 1: the op belongs to
  quota-mode descriptor g).
  A batch commits when every ordinary op (neither shadow nor quota) is
  allowed and, if it has quota ops, one quota group has all its ops allowed
  (envoyproxy/ratelimit's quota_mode; core/bucket.ts commitPlan). Then each
  allowed take whose group (if any) is wholly allowed sets its key's state.
  An `always` take sets its key's state whether the batch commits or not:
  a charge (cost > 0) on a token budget, and every charge of a report (an
  ordinary limit's report charge that does not fit is its entry's debit).
  Batches are decided in order; a batch sees what earlier ones committed, and
  ops on one key within a batch see each other's tentative take. Each key
  changed is written once, after the last batch (SET .. PX ttl >= 1 ms, or
  DEL when full/empty).
  Returns { nowUs, then per batch: status (0 denied, 1 committed, 2 moved),
            then 3 integers per op: the op key's state when its batch began,
            as its entry's `report` gives it; no state: 0, -1, 0 (a
            budget's level may be negative; no state's time is) }
  The caller recomputes every outcome from these with the reference model.

refund: gives back what a committed batch took when another batch of the same
  request (another node or slot) denied. After the limit table, 4 values per op:
  key, limit, cost, chargedStartUs (the state timestamp the take wrote).
  Nothing is added beyond what was taken: under-admission in the window
  between take and refund is possible, over-admission is not.
  Returns { nowUs, number of keys changed, 0 }.

debit: records takes that this cluster did not see (the local failure policy
  admitted them while their master was down), so the promoted replica does not
  grant them again. After the limit table, 3 values per op: key, limit, cost.
  Unconditional, but never beyond empty (a window: never above its maximum;
  a token budget: down to its debt floor, below zero). What does not fit is
  the shortfall: admissions beyond what the bucket held (over-admission the
  failure policy made, seen now).
  Returns { nowUs, number of keys changed, shortfall (tokens, summed) }.

presence, lease_claim, lease_grant, lease_deposit: see below (the number of
sidecars sharing this Redis; global limits across regions, see
docs/multi-region.md). lease_hold: a sidecar's local lease of a busy
token bucket (docs/leases.md).

State per key: integers joined by ':' (written with %d, a C long, so large
numbers never turn into 1.7e+15; every level and time is below 2^53, which
src/core/limit.ts checks, and %d costs a fraction of %.0f): token bucket "<level>:<tsUs>" (a token budget's
level may be negative: "-<debt level>:<tsUs>"), fixed window
"<count>:<windowStartUs>", sliding window "<count>:<windowStartUs>:<previousCount>",
a token bucket with local leases out "<level>:<tsUs>:<held level>:<untilUs>",
lease "<tokens>:<expiresAtUs>:<generation>:<spent since last report>".
A missing key is a full bucket / an empty window.
Time: Redis TIME only (scripts replicate by effects), read once per call.
]]

-- Globals this script uses per op, as locals (a global is a table lookup each time).
local ARGV, tonumber, unpack = ARGV, tonumber, unpack
local floor, max, min = math.floor, math.max, math.min
local format, match = string.format, string.match

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function ceil_div(a, b)
  return floor((a + b - 1) / b)
end

-- A stored state: { integers } or false (none, or not a state of ours).
local function parse(v)
  if not v then return false end
  local a, b, c, d = match(v, '^(%-?%d+):(%d+):?(%d*):?(%d*)$')
  if not a then return false end
  -- `x + 0` converts a string of digits once; tonumber would parse it twice.
  if c == '' then return { a + 0, b + 0 } end
  return { a + 0, b + 0, c + 0, d ~= '' and d + 0 or nil }
end

-- Reads one key: its state, false (none) or nil (not served by this node).
local function read_one(key)
  local v = redis.pcall('GET', key)
  if type(v) == 'table' and v.err then return nil end
  return parse(v)
end

-- Writes a key: false = delete; ttl (µs) nil = it keeps its expiry.
local function write(key, s, ttl)
  if not s then
    redis.call('DEL', key)
    return
  end
  local text
  if s[4] then
    text = format('%d:%d:%d:%d', s[1], s[2], s[3], s[4])
  elseif s[3] then
    text = format('%d:%d:%d', s[1], s[2], s[3])
  else
    text = format('%d:%d', s[1], s[2])
  end
  if ttl then
    redis.call('SET', key, text, 'PX', format('%d', max(1, ceil_div(ttl, 1000))))
  else
    redis.call('SET', key, text, 'KEEPTTL')
  end
end

---------------------------------------------------------------------------
-- ALGORITHMS: code -> a function that builds the entry. Each entry:
--   limit(at): its limit's values from ARGV[at..]; returns lim, the next at
--   take(lim, s, cost): allowed, next state (false = none), ttlUs, and
--     true when the take is recorded whatever the batch decides (`always`)
--   refund(lim, s, cost, chargedStartUs), debit(lim, s, cost): the new state
--     (false = delete) and its ttlUs (nil = keep the key's expiry), and for a
--     debit the tokens that did not fit (its shortfall), or nil
--     when nothing changes; s is the stored state (refund: never false)
--   report(s): the three integers a take reply carries for state s
--   read(lim, key, s) (optional): s completed when first read in a call
---------------------------------------------------------------------------

local function bucket_limit(at)
  return { tick = tonumber(ARGV[at]), refill = tonumber(ARGV[at + 1]), per = tonumber(ARGV[at + 2]),
    cap = tonumber(ARGV[at + 3]) }, at + 4
end

-- The capacity a token bucket refills to: a home bucket holds back what its
-- regions hold in unexpired leases, a bucket what sidecars hold in local
-- leases (s.out, level units; see `read_held`).
local function capacity(lim, s)
  if s and s.out then return lim.cap - s.out end
  return lim.cap
end

-- A token bucket refilled to now: level, ts (whole ticks only).
local function refilled(lim, s)
  local cap = capacity(lim, s)
  if not s then return cap, now end
  local level, ts = s[1], s[2]
  local missing = cap - level
  local ticks = 0
  if now > ts then ticks = floor((now - ts) / lim.tick) end
  if missing <= 0 or ticks >= ceil_div(missing, lim.refill) then return cap, now end
  return level + ticks * lim.refill, ts + ticks * lim.tick
end

-- A token bucket at `level`: its state and ttl. None when full and no lease
-- is out; a bucket is kept while leases are out, until it would be full once
-- they end. A bucket's local leases (s.held) are stored in its own text.
local function bucket_at(lim, s, level, ts)
  local horizon = 0
  if s and s.out and s.out > 0 then horizon = s.horizon end
  if level >= lim.cap and horizon == 0 then return false, 0 end
  local progress = 0
  if now > ts then progress = now - ts end
  local ttl = ceil_div(max(0, lim.cap - level), lim.refill) * lim.tick - progress + horizon
  if horizon > 0 then
    if s.held then return { level, ts, s.out, now + horizon, out = s.out, horizon = horizon, held = true }, ttl end
    return { level, ts, out = s.out, horizon = horizon }, ttl
  end
  return { level, ts }, ttl
end

-- A token bucket's state as read: what sidecars hold in local leases
-- (lease_hold) is kept in its text, "<level>:<tsUs>:<out>:<untilUs>": `out`
-- level units held until `untilUs` (the last lease's end). Past that, none.
local function read_held(_, _, s)
  if not s or not s[4] then return s end
  if s[4] > now and s[3] > 0 then return { s[1], s[2], out = s[3], horizon = s[4] - now, held = true } end
  return { s[1], s[2] }
end

local function token_bucket()
  return {
    limit = bucket_limit,
    take = function(lim, s, cost)
      if lim.refill == 0 then return cost == 0, s, 0 end -- requests_per_unit 0: always over
      local level, ts = refilled(lim, s)
      local need = cost * lim.per
      if need > level then return false, s, 0 end
      local nxt, ttl = bucket_at(lim, s, level - need, ts)
      return true, nxt, ttl
    end,
    -- Refilled to now, then cost back, never above the capacity.
    refund = function(lim, s, cost)
      if lim.refill == 0 then return nil end
      local level, ts = refilled(lim, s)
      return bucket_at(lim, s, min(capacity(lim, s), level + cost * lim.per), ts)
    end,
    -- Refilled to now, then cost taken, never below empty; what did not fit is the shortfall.
    debit = function(lim, s, cost)
      if lim.refill == 0 then return nil end
      local level, ts = refilled(lim, s)
      local after = level - cost * lim.per
      local nxt, ttl = bucket_at(lim, s, max(0, after), ts)
      return nxt, ttl, ceil_div(max(0, -after), lim.per)
    end,
    report = function(s) return s[1], s[2], s.out or 0 end,
    read = read_held,
  }
end

-- A token budget (overdraft): a check passes while the level is above zero;
-- a charge is always recorded (`always`), down to the debt floor; refills
-- pay the debt first (core/algorithms/overdraft-bucket.ts).
local function overdraft_bucket()
  local entry = token_bucket()
  entry.limit = function(at)
    local lim
    lim, at = bucket_limit(at)
    lim.floor = tonumber(ARGV[at])
    return lim, at + 1
  end
  entry.take = function(lim, s, cost)
    local level, ts = refilled(lim, s)
    if cost == 0 then return level > 0, s, 0 end
    local nxt, ttl = bucket_at(lim, s, max(lim.floor, level - cost * lim.per), ts)
    return level > 0, nxt, ttl, true
  end
  -- Refilled to now, then cost taken, below zero too.
  entry.debit = function(lim, s, cost)
    local level, ts = refilled(lim, s)
    local after = level - cost * lim.per
    local nxt, ttl = bucket_at(lim, s, max(lim.floor, after), ts)
    return nxt, ttl, ceil_div(max(0, lim.floor - after), lim.per)
  end
  return entry
end

-- A global limit's home bucket: a token bucket that holds back what its
-- regions hold in leases, kept in the hash <key>:l (region ->
-- "<tokens>:<expiresAtUs>:<generation>"). `out` is what unexpired leases
-- hold (level units), `horizon` how long the last one runs. No state while
-- leases are out cannot happen (the bucket outlives them); if it did, the
-- bucket is read as full up to what the leases leave.
local function with_leases(lim, key, s)
  local out, horizon = 0, 0
  local leases = redis.call('HGETALL', key .. ':l')
  for i = 1, #leases, 2 do
    local tokens, expires = match(leases[i + 1], '^(%d+):(%d+)')
    if tokens and tonumber(expires) > now then
      out = out + tonumber(tokens) * lim.per
      horizon = max(horizon, tonumber(expires) - now)
    end
  end
  if not s then
    if out == 0 then return false end
    s = { lim.cap - out, now }
  end
  return { s[1], s[2], out = out, horizon = horizon }
end

local function home_bucket()
  local entry = token_bucket()
  entry.report = function(s) return s[1], s[2], s.out or 0 end
  entry.read = with_leases
  return entry
end

-- A fixed window at now: count, window start (a state outside its window is an empty new window).
local function current_window(lim, s)
  if s and s[2] <= now and now < s[2] + lim.window then return s[1], s[2] end
  return 0, floor(now / lim.window) * lim.window
end

local function fixed_window()
  return {
    limit = function(at)
      return { window = tonumber(ARGV[at]), max = tonumber(ARGV[at + 1]) }, at + 2
    end,
    take = function(lim, s, cost)
      local count, start = current_window(lim, s)
      if count + cost > lim.max then return false, s, 0 end
      local after = count + cost
      if after == 0 then return true, false, 0 end
      return true, { after, start }, start + lim.window - now
    end,
    -- Only while the charged window is the stored one.
    refund = function(lim, s, cost, charged)
      if s[2] ~= charged then return nil end
      local left = s[1] - cost
      if left <= 0 then return false end
      return { left, s[2] }
    end,
    debit = function(lim, s, cost)
      local count, start = current_window(lim, s)
      return { min(lim.max, count + cost), start }, start + lim.window - now, max(0, count + cost - lim.max)
    end,
    report = function(s) return s[1], s[2], 0 end,
  }
end

-- A sliding window at now: count, previous count, window start (read by
-- where now falls, as core/algorithms/sliding-window.ts).
local function sliding(lim, s)
  if s then
    if now < s[2] + lim.window then return s[1], s[3] or 0, s[2] end
    if now < s[2] + 2 * lim.window then return 0, s[1], s[2] + lim.window end
  end
  return 0, 0, floor(now / lim.window) * lim.window
end

local function sliding_window()
  return {
    limit = function(at)
      local window, tick = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
      return { window = window, tick = tick, max = tonumber(ARGV[at + 2]), wt = window / tick }, at + 3
    end,
    take = function(lim, s, cost)
      local cur, prev, start = sliding(lim, s)
      local et = 0
      if now > start then et = floor((now - start) / lim.tick) end
      local weighted = prev * (lim.wt - et)
      if cur + cost > lim.max or weighted + (cur + cost) * lim.wt > lim.max * lim.wt then return false, s, 0 end
      local after = cur + cost
      if after == 0 and prev == 0 then return true, false, 0 end
      local ttl = start + lim.window - now
      if after > 0 then ttl = start + 2 * lim.window - now end
      return true, { after, start, prev }, ttl
    end,
    -- Only while the charged window is the stored one; the previous count stays.
    refund = function(lim, s, cost, charged)
      if s[2] ~= charged then return nil end
      local left, prev = max(0, s[1] - cost), s[3] or 0
      if left == 0 and prev == 0 then return false end
      return { left, s[2], prev }
    end,
    debit = function(lim, s, cost)
      local cur, prev, start = sliding(lim, s)
      return { min(lim.max, cur + cost), start, prev }, start + 2 * lim.window - now, max(0, cur + cost - lim.max)
    end,
    report = function(s) return s[1], s[2], s[3] or 0 end,
  }
end

-- A region's lease of a global limit: tokens until it expires (region clock).
-- Kept while it lasts, even empty: what was spent is reported with the next request.
local function lease()
  return {
    limit = function(at) return {}, at end,
    take = function(lim, s, cost)
      local tokens = 0
      if s and now < s[2] then tokens = s[1] end
      if cost > tokens then return false, s, 0 end
      if cost == 0 then return true, s, 0 end
      return true, { tokens - cost, s[2], s[3] or 0, (s[4] or 0) + cost }, s[2] - now
    end,
    -- Only what is still counted as spent here comes back: tokens already
    -- reported spent (lease_claim) were released at home, so they are gone.
    refund = function(lim, s, cost)
      local back = min(cost, s[4] or 0)
      if now >= s[2] or back <= 0 then return nil end
      return { s[1] + back, s[2], s[3] or 0, (s[4] or 0) - back }
    end,
    debit = function(lim, s, cost)
      if not s or now >= s[2] then return nil end
      local taken = min(cost, s[1])
      return { s[1] - taken, s[2], s[3] or 0, (s[4] or 0) + taken }, s[2] - now, cost - taken
    end,
    report = function(s) return s[1], s[2], s[4] or 0 end,
  }
end

-- Each entry is built when a call first names its code (scripts run from
-- scratch every call: building only what a call uses keeps its fixed cost low).
local ALGORITHMS = { t = token_bucket, o = overdraft_bucket, h = home_bucket, f = fixed_window, s = sliding_window, l = lease }

---------------------------------------------------------------------------
-- Operations
---------------------------------------------------------------------------

-- The limit table at ARGV[at]: limits (each with its ALGORITHMS entry as .alg), their count, the next at.
local function read_limits(at)
  local count = tonumber(ARGV[at])
  local limits, built = {}, {}
  at = at + 1
  for i = 1, count do
    local code = ARGV[at]
    local alg = built[code]
    if not alg then
      local build = ALGORITHMS[code]
      if not build then error('openclaw.lua: unknown algorithm ' .. tostring(code)) end
      alg = build()
      built[code] = alg
    end
    local lim
    lim, at = alg.limit(at + 1)
    lim.alg = alg
    limits[i] = lim
  end
  return limits, count, at
end

-- The keys of a take at ARGV[at] (read groups): keys by index, their states
-- (key -> state or false), the keys this node does not serve, the next at.
-- One MGET per group; a group whose MGET fails (a slot moving) is read key
-- by key, so only the keys that moved are marked.
local function read_keys(at)
  local groups = tonumber(ARGV[at])
  at = at + 1
  local keys, states, moved = {}, {}, {}
  for _ = 1, groups do
    local n = tonumber(ARGV[at])
    local first = at + 1
    local values = redis.pcall('MGET', unpack(ARGV, first, first + n - 1))
    if values.err then values = nil end
    for i = 1, n do
      local key = ARGV[first + i - 1]
      keys[#keys + 1] = key
      if values then
        states[key] = parse(values[i])
      else
        local s = read_one(key)
        if s == nil then moved[key] = true end
        states[key] = s or false
      end
    end
    at = first + n
  end
  return keys, states, moved, at
end

local function take()
  local limits, count, at = read_limits(2)
  local keys, states, moved, op = read_keys(at)
  local base = count + 1
  local last = #ARGV
  local completed = {} -- keys whose entry's `read` ran
  local dirty = {}     -- key -> ttl of its last committed state (the state is in `states`)
  local order = {}     -- dirty keys, first written first
  -- The current batch's takes, 6 slots each (key, next state, ttl, quota
  -- group, shadow, always): reused from batch to batch, so a batch allocates
  -- nothing of its own; an op reads its key's tentative state from here.
  local takes, n = {}, 0
  local out, k = { now }, 1 -- k: the reply's length so far
  while op <= last do
    local status_at = k + 1
    out[status_at] = 0
    k = status_at
    local committed, is_moved = true, false
    local groups -- quota group -> every op of it allowed; created when needed
    n = 0
    local first = true
    while op <= last do
      local word = ARGV[op + 1] + 0 -- (as in parse: one conversion, not tonumber's two)
      local index = word % base
      local flags = (word - index) / base
      local shadow, report, group = false, false, 0
      if flags > 0 then -- (most ops have no flags)
        shadow = flags % 4 >= 2
        report = flags % 8 >= 4
        group = (flags - flags % 8) / 8
      end
      if flags % 2 == 0 and not first then break end -- the next batch starts
      first = false
      local key = keys[ARGV[op] + 0]
      local cost = ARGV[op + 2] + 0
      op = op + 3
      local lim = limits[index]
      local alg = lim.alg
      if moved[key] then is_moved = true end
      if alg.read and not completed[key] then
        completed[key] = true
        states[key] = alg.read(lim, key, states[key])
      end
      local s = states[key]
      if s then
        out[k + 1], out[k + 2], out[k + 3] = alg.report(s)
      else
        out[k + 1], out[k + 2], out[k + 3] = 0, -1, 0
      end
      k = k + 3
      for i = n - 5, 1, -6 do -- the latest tentative take on this key in this batch, if any
        if takes[i] == key then
          s = takes[i + 1]
          break
        end
      end
      local allowed, nxt, ttl, always = alg.take(lim, s, cost)
      if report and cost > 0 and not always then
        -- A report's charge: whole when it fits, else as far as the limit has tokens (its debit).
        if allowed then
          always = true
        else
          local debited, debited_ttl = alg.debit(lim, s or false, cost)
          if debited ~= nil then nxt, ttl, always = debited, debited_ttl, true end
        end
      end
      if (allowed or always) and cost > 0 then -- a check-only op changes nothing (refilling twice is refilling once)
        takes[n + 1], takes[n + 2], takes[n + 3], takes[n + 4], takes[n + 5], takes[n + 6] = key, nxt, ttl, group, shadow, always
        n = n + 6
      end
      if not shadow then
        if group == 0 then
          if not allowed then committed = false end
        else
          groups = groups or {}
          local whole = groups[group]
          if whole == nil then whole = true end
          groups[group] = whole and allowed
        end
      end
    end
    if committed and groups then
      local any = false
      for _, whole in pairs(groups) do any = any or whole end
      committed = any
    end
    if is_moved then
      out[status_at] = 2
    else
      if committed then out[status_at] = 1 end
      -- Each take whose quota group (if any) is wholly allowed sets its key's state when the batch
      -- commits, an `always` take in any case; the last one stands.
      for i = 1, n, 6 do
        local group = takes[i + 3]
        if takes[i + 5] or (committed and (takes[i + 4] or group == 0 or groups[group])) then
          local key = takes[i]
          states[key] = takes[i + 1]
          if dirty[key] == nil then order[#order + 1] = key end
          dirty[key] = takes[i + 2]
        end
      end
    end
  end
  for i = 1, #order do
    local key = order[i]
    write(key, states[key], dirty[key])
  end
  return out
end

-- take is nearly every call, so it runs before the script defines the other
-- operations: a script runs from scratch on every call, and every function
-- defined before a call's operation is paid for by that call.
if ARGV[1] == 'take' then return take() end

-- refund and debit: one op at a time (rare paths: a denial across masters, a write-back after a failure).
local function adjust(stride, change)
  local limits, _, at = read_limits(2)
  local changed, short = 0, 0
  for op = at, #ARGV, stride do
    local key = ARGV[op]
    local lim = limits[tonumber(ARGV[op + 1])]
    local cost = tonumber(ARGV[op + 2])
    local s = read_one(key)
    if s ~= nil and cost > 0 then
      local nxt, ttl, missing = change(lim, key, s, cost, ARGV[op + 3])
      if nxt ~= nil then
        write(key, nxt, ttl)
        changed = changed + 1
      end
      short = short + (missing or 0)
    end
  end
  return { now, changed, short }
end

local function refund()
  return adjust(4, function(lim, key, s, cost, charged)
    if not s then return nil end -- nothing taken is stored
    if lim.alg.read then s = lim.alg.read(lim, key, s) end
    return lim.alg.refund(lim, s, cost, tonumber(charged))
  end)
end

local function debit()
  return adjust(3, function(lim, key, s, cost)
    if lim.alg.read then s = lim.alg.read(lim, key, s) end
    return lim.alg.debit(lim, s, cost)
  end)
end

-- presence: counts the sidecars deciding against this Redis, for the local
-- failure policy's automatic divisor. KEYS[1] is the presence sorted set;
-- ARGV: 'presence', member (one per process), ttlUs. Adds or refreshes the
-- member at Redis time, drops members not seen within ttlUs, returns the count.
local function presence()
  local key = KEYS[1]
  local ttl = tonumber(ARGV[3])
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', format('(%d', now - ttl))
  redis.call('PEXPIRE', key, format('%d', max(1, ceil_div(2 * ttl, 1000))))
  return redis.call('ZCARD', key)
end

-- lease_claim: one sidecar of a region refills a key's lease at a time.
-- ARGV: 'lease_claim', ttlUs, then lease keys. For each it claims
-- (SET NX <key>:p for ttlUs) and, when claimed, takes the tokens spent from
-- the lease since its last report (they go to the home region with the
-- request). Returns 3 integers per key: claimed (0|1), spent, generation.
local function lease_claim()
  local ttl = format('%d', max(1, ceil_div(tonumber(ARGV[2]), 1000)))
  local out = {}
  for i = 3, #ARGV do
    local key = ARGV[i]
    local claimed = redis.call('SET', key .. ':p', '1', 'NX', 'PX', ttl) and 1 or 0
    local spent, gen = 0, 0
    if claimed == 1 then
      local s = read_one(key)
      if s and (s[4] or 0) > 0 then
        spent, gen = s[4], s[3] or 0
        write(key, { s[1], s[2], gen, 0 })
      elseif s then
        gen = s[3] or 0
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
  local tokens, expires, gen = match(v, '^(%d+):(%d+):?(%d*)$')
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
  local limits, _, at = read_limits(2)
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
      if mine[3] == gen then held = max(0, held - spent) end
    else
      next_gen = (mine and mine[3] or gen) + 1
    end
    local state = read_one(key)
    if state ~= nil and lim.refill > 0 then
      if mine and mine[2] > now and held ~= mine[1] then
        redis.call('HSET', leases, region, format('%d:%d:%d', held, mine[2], mine[3]))
      end
      state = with_leases(lim, key, state) or { lim.cap, now, out = 0, horizon = 0 }
      local level, ts = refilled(lim, state)
      granted = min(wanted, floor(level / lim.per))
      if granted > 0 then
        redis.call('HSET', leases, region, format('%d:%d:%d', held + granted, now + ttl, next_gen))
        -- Expired leases go; the hash lives as long as its longest lease.
        local all = redis.call('HGETALL', leases)
        local horizon = ttl
        for i = 1, #all, 2 do
          local _, expires = match(all[i + 1], '^(%d+):(%d+)')
          if not expires or tonumber(expires) <= now then redis.call('HDEL', leases, all[i])
          else horizon = max(horizon, tonumber(expires) - now) end
        end
        redis.call('PEXPIRE', leases, format('%d', max(1, ceil_div(horizon, 1000))))
        local after = level - granted * lim.per
        state.out = state.out + granted * lim.per
        state.horizon = max(state.horizon, ttl)
        write(key, bucket_at(lim, state, after, ts))
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
    local s = read_one(key)
    if s ~= nil and ttl > 0 and tokens > 0 then
      local held, spent = 0, 0
      if s and now < s[2] and (s[3] or 0) == gen then held, spent = s[1], s[4] or 0 end
      write(key, { held + tokens, now + ttl, gen, spent }, ttl)
    end
    redis.pcall('DEL', key .. ':p')
  end
  return 1
end

-- lease_hold: a sidecar's local lease of a token bucket (docs/leases.md).
-- Moves tokens between a bucket and what one sidecar holds of it, kept per
-- sidecar in the hash <key>:sl (member -> "<tokens>:<untilUs>"), summed into
-- the bucket's text (read_held) so every take sees the bucket refill only
-- up to the burst less what sidecars hold. After the limit table: member,
-- ttlUs, share, minimum, then 5 values per key: key, limit, wanted, held
-- (what the sidecar still holds and keeps), returned (what it gives back).
-- `held` counts only while the sidecar's lease is live here (its tokens
-- are never more than the lease), `returned` only up to the rest of it:
-- a sidecar can never give back more than it took. Held tokens are kept for
-- ttlUs from now; the grant is at most `wanted` and at most 1/share of what
-- the bucket holds, and nothing below `minimum`: a nearly empty bucket
-- leases nothing and is decided take by take.
-- Returns { nowUs, then per key: granted, kept (1: `held` still counts),
--           the bucket's tokens after, 0|1|2 (2: this node does not serve it) }.
local function lease_hold()
  local limits, _, at = read_limits(2)
  local member = ARGV[at]
  local ttl = tonumber(ARGV[at + 1])
  local share = tonumber(ARGV[at + 2])
  local minimum = tonumber(ARGV[at + 3])
  local out = { now }
  for op = at + 4, #ARGV, 5 do
    local key = ARGV[op]
    local lim = limits[tonumber(ARGV[op + 1])]
    local wanted = tonumber(ARGV[op + 2])
    local held = tonumber(ARGV[op + 3])
    local returned = tonumber(ARGV[op + 4])
    local s = read_one(key)
    if s == nil or lim.refill == 0 then
      out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = 0, 0, 0, s == nil and 2 or 0
    else
      s = read_held(lim, key, s)
      local level, ts = refilled(lim, s)
      local leases = key .. ':sl'
      -- What the other sidecars hold, expired leases dropped; and this one's lease.
      local others, horizon, mine = 0, 0, 0
      local all = redis.call('HGETALL', leases)
      for i = 1, #all, 2 do
        local tokens, untilUs = match(all[i + 1], '^(%d+):(%d+)$')
        tokens, untilUs = tonumber(tokens), tonumber(untilUs)
        if not tokens or untilUs <= now then
          redis.call('HDEL', leases, all[i])
        elseif all[i] == member then
          mine = tokens
        else
          others = others + tokens
          horizon = max(horizon, untilUs)
        end
      end
      local kept = 0
      if mine > 0 then kept = 1 end
      held = min(held, mine)
      returned = min(returned, mine - held)
      local cap = lim.cap - (others + held) * lim.per
      level = min(cap, level + returned * lim.per)
      local granted = min(wanted, floor(floor(level / lim.per) / share))
      if granted < minimum then granted = 0 end
      level = level - granted * lim.per
      held = held + granted
      if held > 0 then
        redis.call('HSET', leases, member, format('%d:%d', held, now + ttl))
        horizon = max(horizon, now + ttl)
      elseif mine > 0 then
        redis.call('HDEL', leases, member)
      end
      local outstanding = (others + held) * lim.per
      if horizon > now then
        redis.call('PEXPIRE', leases, format('%d', max(1, ceil_div(horizon - now, 1000))))
      end
      local state = { level, ts }
      if outstanding > 0 then state = { level, ts, out = outstanding, horizon = horizon - now, held = true } end
      local nxt, nxt_ttl = bucket_at(lim, state, level, ts)
      write(key, nxt, nxt_ttl)
      out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = granted, kept, floor(level / lim.per), 1
    end
  end
  return out
end

local OPERATIONS = {
  take = take, refund = refund, debit = debit, presence = presence,
  lease_claim = lease_claim, lease_grant = lease_grant, lease_deposit = lease_deposit,
  lease_hold = lease_hold,
}
local operation = OPERATIONS[ARGV[1]]
if not operation then return redis.error_reply('openclaw.lua: unknown operation ' .. tostring(ARGV[1])) end
return operation()
