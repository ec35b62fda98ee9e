import type { BucketOp, BucketOutcome, LimitSpec } from './types.js';

/**
 * Stored state of one bucket. For token_bucket: `level` (1/levelPerToken
 * tokens) at time `tsUs`. For fixed_window: `level` = hits counted in the
 * window that starts at `tsUs`. A bucket with no state is full (or an empty window).
 */
export interface BucketState {
  level: number;
  tsUs: number;
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
  return limit.algorithm === 'fixed_window'
    ? evaluateFixedWindow(limit, state, nowUs, cost)
    : evaluateTokenBucket(limit, state, nowUs, cost);
}

function evaluateTokenBucket(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  const { capacityLevel: cap, refillPerTick: refill, tickUs: tick, levelPerToken: perToken } = limit;
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
    retryAfterUs = need > cap ? resetUs : ceilDiv(need - level, refill) * tick - progressUs;
  }
  return {
    outcome: { allowed, remaining: Math.floor(after / perToken), resetUs, retryAfterUs },
    untaken: { allowed, remaining: Math.floor(level / perToken), resetUs: untakenResetUs, retryAfterUs },
    next: after >= cap ? null : { level: after, tsUs: ts },
    ttlUs: resetUs,
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

/** One store batch decided: the rule every store follows (see lua/openclaw.lua `take`). */
export interface BatchEvaluation {
  /** Every non-shadow op allowed: the allowed takes are written. */
  commits: boolean;
  evaluations: Evaluation[];
  /** What each op reports: `outcome` when the batch commits, else `untaken`. */
  outcomes: BucketOutcome[];
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
  let commits = true;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const state = tentative !== undefined && tentative.has(op.key) ? tentative.get(op.key)! : stateAt(i);
    const evaluation = evaluate(op.limit, state, nowUs, op.cost);
    evaluations[i] = evaluation;
    outcomes[i] = evaluation.outcome;
    if (evaluation.outcome.allowed) {
      if (op.cost > 0 && ops.length > 1) (tentative ??= new Map()).set(op.key, evaluation.next);
    } else if (!op.shadow) {
      commits = false;
    }
  }
  if (!commits) {
    for (let i = 0; i < ops.length; i++) outcomes[i] = evaluations[i]!.untaken;
  }
  return { commits, evaluations, outcomes };
}
