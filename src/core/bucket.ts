import type { BucketOp, BucketOutcome, LimitSpec } from './types.js';

/**
 * Stored state of one bucket. For token_bucket: `level` (1/levelPerToken
 * tokens) at time `tsUs`. For fixed_window: `level` = hits counted in the
 * window that starts at `tsUs`. For sliding_window: `level` = hits counted in
 * the window that starts at `tsUs` and `prevLevel` = hits counted in the
 * window before it (Redis: the string `<level>:<tsUs>:<prevLevel>`). A bucket
 * with no state is full (or an empty window).
 */
export interface BucketState {
  level: number;
  tsUs: number;
  /** sliding_window only: hits of the window `[tsUs - unitUs, tsUs)`. */
  prevLevel?: number;
  /**
   * A global limit's home bucket only (scope: global): what the regions hold
   * in unexpired leases, level units. The bucket refills only up to
   * capacity − outstanding, so bucket plus leases never exceed the burst.
   */
  outstanding?: number;
}

export interface Evaluation {
  /** The outcome when this op's batch commits (an allowed op took its tokens). */
  outcome: BucketOutcome;
  /** The outcome when the batch does not commit: nothing taken, same `allowed`. */
  untaken: BucketOutcome;
  /**
   * State to store when this op is allowed and its batch commits; null = delete
   * (bucket full again / window empty). When not committed, nothing is written:
   * the stored state already implies the same refill.
   */
  next: BucketState | null;
  /** How long `next` must live (µs) before the bucket would be full anyway. */
  ttlUs: number;
}

function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

/**
 * Evaluates one bucket at `nowUs` without deciding whether to commit.
 * Pure and exact: integer arithmetic below 2^53 only. lua/openclaw.lua mirrors this code.
 */
export function evaluate(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  switch (limit.algorithm) {
    case 'fixed_window': return evaluateFixedWindow(limit, state, nowUs, cost);
    case 'sliding_window': return evaluateSlidingWindow(limit, state, nowUs, cost);
    case 'token_bucket': return evaluateTokenBucket(limit, state, nowUs, cost);
    case 'lease': return evaluateLease(limit, state, nowUs, cost);
  }
}

function evaluateTokenBucket(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  const { refillPerTick: refill, tickUs: tick, levelPerToken: perToken } = limit;
  const outstanding = state?.outstanding ?? 0;
  const cap = limit.capacityLevel - outstanding;
  if (refill === 0) {
    // requests_per_unit: 0 means "always over" (envoyproxy/ratelimit); check-only passes.
    return {
      outcome: { allowed: cost === 0, remaining: 0, resetUs: 0, retryAfterUs: cost === 0 ? 0 : limit.unitUs },
      untaken: { allowed: cost === 0, remaining: 0, resetUs: 0, retryAfterUs: cost === 0 ? 0 : limit.unitUs },
      next: null, ttlUs: 0,
    };
  }
  let level = cap;
  let ts = nowUs;
  if (state !== null) {
    level = state.level;
    ts = state.tsUs;
    const missing = cap - level;
    const ticks = nowUs > ts ? Math.floor((nowUs - ts) / tick) : 0;
    if (missing <= 0 || ticks >= ceilDiv(missing, refill)) {
      level = cap;
      ts = nowUs;
    } else {
      level += ticks * refill;
      ts += ticks * tick;
    }
  }
  // Refill progress inside the current tick (clock going backwards counts as none).
  const progressUs = nowUs > ts ? nowUs - ts : 0;
  const need = cost * perToken;
  const allowed = need <= level;
  const after = allowed ? level - need : level;
  const resetUs = after >= cap ? 0 : ceilDiv(cap - after, refill) * tick - progressUs;
  const untakenResetUs = level >= cap ? 0 : ceilDiv(cap - level, refill) * tick - progressUs;
  let retryAfterUs = 0;
  if (!allowed) {
    retryAfterUs = need > limit.capacityLevel ? resetUs : ceilDiv(need - level, refill) * tick - progressUs;
  }
  // A home bucket stays while leases are out (its capacity comes back by refill, not at once).
  let next: BucketState | null = null;
  if (outstanding > 0) next = { level: after, tsUs: ts, outstanding };
  else if (after < cap) next = { level: after, tsUs: ts };
  return {
    outcome: { allowed, remaining: Math.floor(after / perToken), resetUs, retryAfterUs },
    untaken: { allowed, remaining: Math.floor(level / perToken), resetUs: untakenResetUs, retryAfterUs },
    next,
    ttlUs: resetUs,
  };
}

/**
 * A region's lease of a global limit (store/redis/global-limits.ts): `level`
 * tokens that this region may spend until `tsUs` (its expiry, region clock).
 * Allowed iff the lease has `cost` tokens; a denial takes nothing. Reset and
 * retry are estimates from the global rate: when the lease runs dry the next
 * tokens come from the home region's refill.
 */
function evaluateLease(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  const tokens = state !== null && nowUs < state.tsUs ? state.level : 0;
  const allowed = cost <= tokens;
  const after = allowed ? tokens - cost : tokens;
  const estimate = (missingTokens: number): number => (limit.refillPerTick === 0 || missingTokens <= 0
    ? 0 : ceilDiv(missingTokens * limit.levelPerToken, limit.refillPerTick) * limit.tickUs);
  const retryAfterUs = allowed ? 0 : Math.max(1, estimate(cost - tokens));
  return {
    outcome: { allowed, remaining: after, resetUs: estimate(limit.burst - after), retryAfterUs },
    untaken: { allowed, remaining: tokens, resetUs: estimate(limit.burst - tokens), retryAfterUs },
    // Kept while it lasts, even empty (its spending is reported with the next request, lua/openclaw.lua).
    next: state !== null && nowUs < state.tsUs ? { level: after, tsUs: state.tsUs } : null,
    ttlUs: state === null ? 0 : Math.max(0, state.tsUs - nowUs),
  };
}

function evaluateFixedWindow(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  const { unitUs, requestsPerUnit: max } = limit;
  // A state counts while `now` is inside its window. Stores write windows
  // aligned to the epoch; the local fallback may hold a Redis window shifted
  // onto its own clock, which stays valid until it ends.
  const current = state !== null && state.tsUs <= nowUs && nowUs < state.tsUs + unitUs;
  const windowStart = current ? state.tsUs : Math.floor(nowUs / unitUs) * unitUs;
  const count = current ? state.level : 0;
  const resetUs = windowStart + unitUs - nowUs;
  const allowed = count + cost <= max;
  const after = allowed ? count + cost : count;
  const retryAfterUs = allowed ? 0 : resetUs;
  return {
    outcome: { allowed, remaining: Math.max(0, max - after), resetUs, retryAfterUs },
    untaken: { allowed, remaining: Math.max(0, max - count), resetUs, retryAfterUs },
    next: after === 0 ? null : { level: after, tsUs: windowStart },
    ttlUs: resetUs,
  };
}

/**
 * sliding_window, the reference the Redis script mirrors. Integers only.
 *
 * Notation: W = limit.unitUs (the window, aligned to the Unix epoch), τ =
 * limit.tickUs, Wt = limit.windowTicks = W / τ, M = requests_per_unit.
 * At `now`: ws = floor(now / W) × W, et = floor((now − ws) / τ) (time into the
 * window, rounded DOWN to the tick: that only weighs the previous window
 * more, never less), cur = hits counted in [ws, ws + W), prev = hits counted
 * in [ws − W, ws). Everything is multiplied through by Wt:
 *
 *   weighted   = prev × (Wt − et)                       (prev × (W − e) / W, × Wt)
 *   allowed   ⇔ cur + n ≤ M  and  weighted + (cur + n) × Wt ≤ M × Wt
 *   remaining  = max(0, M − count − ceil(weighted / Wt))   count = cur (+ n if taken)
 *   reset      = ws + 2W − now if count > 0; ws + W − now if only prev > 0; else 0
 *                (the time until the counts no longer weigh anything: full again)
 *   retry (denied, n ≤ M): the first instant cost n fits, assuming no other hits:
 *     if cur + n ≤ M: k = Wt − floor((M − cur − n) × Wt / prev); if k < Wt, at ws + k × τ
 *     otherwise in the next window (prev' = cur, cur' = 0):
 *       k2 = 0 if cur = 0, else max(0, Wt − floor((M − n) × Wt / cur)); at ws + W + k2 × τ
 *   retry (n > M, never satisfiable; M = 0 included): W. The limiter reports
 *     such a denial as unsatisfiable (see core/limiter.ts).
 *
 * Each product is at most 2 × M × Wt, which compileLimit keeps below 2^53 by
 * its choice of τ. `cur + n ≤ M` is tested first, so a huge n is never
 * multiplied. A denial counts nothing. Without new hits the weighted usage
 * only falls with time (at a window boundary `prev × 1 + cur × Wt` becomes
 * `cur × Wt`), so "retry" is the earliest instant and the over-limit cache
 * stays sound. A stored window later than now's (the clock went backwards) is
 * read at its own start: et = 0, nothing decays. An older one counts nothing.
 */
function evaluateSlidingWindow(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  const { unitUs: window, tickUs: tick, windowTicks: wt, requestsPerUnit: max } = limit;
  // The stored window [ts, ts + W) is read by where `now` falls, not by
  // alignment: stores write epoch-aligned windows, the local fallback may hold
  // a Redis window shifted onto its own clock. For aligned states this is
  // exactly "ts = ws: cur/prev; ts = ws − W: prev; older: nothing".
  let windowStart = Math.floor(nowUs / window) * window;
  let cur = 0;
  let prev = 0;
  if (state !== null) {
    if (nowUs < state.tsUs + window) {
      // Its own window (or, clock gone backwards, a later one: read at its start).
      windowStart = state.tsUs;
      cur = state.level;
      prev = state.prevLevel ?? 0;
    } else if (nowUs < state.tsUs + 2 * window) {
      windowStart = state.tsUs + window;
      prev = state.level;
    }
  }
  const elapsedTicks = nowUs > windowStart ? Math.floor((nowUs - windowStart) / tick) : 0;
  const weighted = prev * (wt - elapsedTicks);
  const allowed = cur + cost <= max && weighted + (cur + cost) * wt <= max * wt;
  const after = allowed ? cur + cost : cur;
  const remaining = (count: number): number => Math.max(0, max - count - ceilDiv(weighted, wt));
  const reset = (count: number): number =>
    count > 0 ? windowStart + 2 * window - nowUs : prev > 0 ? windowStart + window - nowUs : 0;
  let retryAfterUs = 0;
  if (!allowed) {
    if (cost > max) {
      retryAfterUs = window;
    } else {
      let fitsTick = wt;
      if (prev > 0 && cur + cost <= max) fitsTick = wt - Math.floor(((max - cur - cost) * wt) / prev);
      retryAfterUs = fitsTick < wt
        ? windowStart + fitsTick * tick - nowUs
        : windowStart + window + (cur === 0 ? 0 : Math.max(0, wt - Math.floor(((max - cost) * wt) / cur))) * tick - nowUs;
    }
  }
  const resetUs = reset(after);
  return {
    outcome: { allowed, remaining: remaining(after), resetUs, retryAfterUs },
    untaken: { allowed, remaining: remaining(cur), resetUs: reset(cur), retryAfterUs },
    next: after === 0 && prev === 0 ? null : { level: after, tsUs: windowStart, prevLevel: prev },
    ttlUs: resetUs,
  };
}

/**
 * What a batch commits: 'none' (nothing is taken anywhere), 'allowed' (every
 * op that is itself allowed takes its tokens), or, with quota groups, for
 * each op whether it takes.
 */
export type CommitPlan = 'none' | 'allowed' | readonly boolean[];

/**
 * The all-or-nothing rule of a batch. It commits when every ordinary op
 * (neither shadow nor quota) is allowed and, if it has quota-mode ops, at
 * least one quota group (the ops of one quota descriptor) has all its ops
 * allowed: envoyproxy/ratelimit's quota_mode, where a request is over only
 * when every quota descriptor is. Then an op takes when it is itself allowed
 * and, for a quota op, its whole group is (a descriptor that is over takes
 * from none of its limits); a shadow op that would deny takes nothing.
 */
function commitPlan(ops: readonly BucketOp[], outcomes: readonly BucketOutcome[]): CommitPlan {
  let groups: Map<number, boolean> | undefined;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.shadow) continue;
    const allowed = outcomes[i]!.allowed;
    if (op.quotaGroup === undefined) {
      if (!allowed) return 'none';
    } else {
      groups ??= new Map();
      groups.set(op.quotaGroup, (groups.get(op.quotaGroup) ?? true) && allowed);
    }
  }
  if (groups === undefined) return 'allowed';
  if (![...groups.values()].some((whole) => whole)) return 'none';
  return ops.map((op, i) => outcomes[i]!.allowed
    && (op.shadow || op.quotaGroup === undefined || groups.get(op.quotaGroup) === true));
}

/** One store batch decided: the rule every store follows (see lua/openclaw.lua `take`). */
export interface BatchEvaluation {
  /** What the batch takes (`commitPlan`). */
  plan: CommitPlan;
  /** Anything taken: every ordinary op allowed (and a quota group, if any, wholly). */
  commits: boolean;
  evaluations: Evaluation[];
  /** What each op reports: `outcome` when it takes or is denied, `untaken` when it was allowed but takes nothing. */
  outcomes: BucketOutcome[];
}

/** Whether op `index` takes its tokens under `plan` (an allowed op, and its quota group wholly allowed). */
export function takes(plan: CommitPlan, evaluations: readonly Evaluation[], index: number): boolean {
  if (plan === 'none') return false;
  return plan === 'allowed' ? evaluations[index]!.outcome.allowed : plan[index]!;
}

/**
 * Decides a batch at `nowUs`. `stateAt(i)` is the stored state of op i's key
 * when the batch begins; ops on one key see each other's tentative takes (a
 * check-only op changes nothing). The memory store, the local mirror and the
 * Redis store (from the states lua/openclaw.lua returns) all decide with this.
 */
export function evaluateBatch(ops: readonly BucketOp[], stateAt: (index: number) => BucketState | null, nowUs: number): BatchEvaluation {
  const evaluations: Evaluation[] = new Array(ops.length);
  const outcomes: BucketOutcome[] = new Array(ops.length);
  let tentative: Map<string, BucketState | null> | undefined;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const state = tentative !== undefined && tentative.has(op.key) ? tentative.get(op.key)! : stateAt(i);
    const evaluation = evaluate(op.limit, state, nowUs, op.cost);
    evaluations[i] = evaluation;
    outcomes[i] = evaluation.outcome;
    if (evaluation.outcome.allowed && op.cost > 0 && ops.length > 1) (tentative ??= new Map()).set(op.key, evaluation.next);
  }
  const plan = commitPlan(ops, outcomes);
  for (let i = 0; i < ops.length; i++) {
    if (evaluations[i]!.outcome.allowed && !takes(plan, evaluations, i)) outcomes[i] = evaluations[i]!.untaken;
    else if (plan === 'none') outcomes[i] = evaluations[i]!.untaken;
  }
  return { plan, commits: plan !== 'none', evaluations, outcomes };
}
