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
 * Pure and exact: integer arithmetic below 2^53 only. lua/ mirrors this code.
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
  const windowStart = Math.floor(nowUs / unitUs) * unitUs;
  const count = state !== null && state.tsUs === windowStart ? state.level : 0;
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
 * The all-or-nothing rule of a batch: it commits when every non-shadow op is
 * allowed; then each op that is itself allowed takes its tokens (a shadow op
 * that would deny takes nothing). Otherwise nothing is taken anywhere.
 */
export function batchCommits(ops: readonly BucketOp[], outcomes: readonly BucketOutcome[]): boolean {
  for (let i = 0; i < ops.length; i++) {
    if (!ops[i]!.shadow && !outcomes[i]!.allowed) return false;
  }
  return true;
}
