// token_bucket (the default): a level refilled by whole ticks, capped at the
// burst less what sidecars hold of it in local leases, while they last
// (docs/leases.md). Also the arithmetic of a global limit's home bucket
// (home-bucket.ts), whose capacity is the burst less what regions hold in
// leases, and of a token budget (overdraft-bucket.ts), whose level may go
// below zero.
import type { LimitSpec } from '../types.js';
import { ceilDiv, type AlgorithmModule, type BucketState, type Evaluation } from './algorithm.js';

/** What leases hold of the bucket at `nowUs` (level units): a home bucket's regions, a bucket's sidecars. */
export function heldAt(state: BucketState | null, nowUs: number): number {
  if (state?.outstanding === undefined) return 0;
  return state.outstandingUntilUs === undefined || nowUs < state.outstandingUntilUs ? state.outstanding : 0;
}

/** The capacity the bucket refills to: the burst less what leases hold. */
function capacityOf(limit: LimitSpec, state: BucketState | null, nowUs: number): number {
  return limit.capacityLevel - heldAt(state, nowUs);
}

/** The state refilled to `nowUs` (a bucket with no state is full): level, and the time its last whole tick ended. */
export function refilled(limit: LimitSpec, state: BucketState | null, nowUs: number): { level: number; tsUs: number } {
  const cap = capacityOf(limit, state, nowUs);
  if (state === null) return { level: cap, tsUs: nowUs };
  const missing = cap - state.level;
  const ticks = nowUs > state.tsUs ? Math.floor((nowUs - state.tsUs) / limit.tickUs) : 0;
  if (missing <= 0 || ticks >= ceilDiv(missing, limit.refillPerTick)) return { level: cap, tsUs: nowUs };
  return { level: state.level + ticks * limit.refillPerTick, tsUs: state.tsUs + ticks * limit.tickUs };
}

/** The state at `level`: none when full, unless leases are out (the bucket outlives them). */
export function stateAt(limit: LimitSpec, state: BucketState | null, level: number, tsUs: number, nowUs: number): BucketState | null {
  const outstanding = heldAt(state, nowUs);
  if (outstanding > 0) {
    const until = state!.outstandingUntilUs;
    return until === undefined ? { level, tsUs, outstanding } : { level, tsUs, outstanding, outstandingUntilUs: until };
  }
  return level < limit.capacityLevel ? { level, tsUs } : null;
}

function evaluate(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  const { refillPerTick: refill, tickUs: tick, levelPerToken: perToken } = limit;
  if (refill === 0) {
    // requests_per_unit: 0 means "always over" (envoyproxy/ratelimit); check-only passes.
    const outcome = { allowed: cost === 0, remaining: 0, resetUs: 0, retryAfterUs: cost === 0 ? 0 : limit.unitUs };
    return { outcome, untaken: { ...outcome }, next: null, ttlUs: 0 };
  }
  const cap = capacityOf(limit, state, nowUs);
  const { level, tsUs: ts } = refilled(limit, state, nowUs);
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
  return {
    outcome: { allowed, remaining: Math.floor(after / perToken), resetUs, retryAfterUs },
    untaken: { allowed, remaining: Math.floor(level / perToken), resetUs: untakenResetUs, retryAfterUs },
    next: stateAt(limit, state, after, ts, nowUs),
    ttlUs: resetUs,
  };
}

export const tokenBucket: AlgorithmModule = {
  code: 't',
  limitArgs: (limit) => [String(limit.tickUs), String(limit.refillPerTick), String(limit.levelPerToken), String(limit.capacityLevel)],
  evaluate,
  // Refilled to now, then `cost` back, never above the capacity.
  refund(limit, state, nowUs, cost) {
    if (state === null || cost <= 0 || limit.refillPerTick === 0) return undefined;
    const { level, tsUs } = refilled(limit, state, nowUs);
    return stateAt(limit, state, Math.min(capacityOf(limit, state, nowUs), level + cost * limit.levelPerToken), tsUs, nowUs);
  },
  // Refilled to now, then `cost` taken, never below empty.
  debit(limit, state, nowUs, cost) {
    if (cost <= 0 || limit.refillPerTick === 0) return undefined;
    const { level, tsUs } = refilled(limit, state, nowUs);
    return stateAt(limit, state, Math.max(0, level - cost * limit.levelPerToken), tsUs, nowUs);
  },
  // What sidecars hold in local leases, live when Redis read it (lua read_held).
  fromReply: (level, tsUs, outstanding) => (outstanding > 0 ? { level, tsUs, outstanding } : { level, tsUs }),
  fromStored: ([level = 0, tsUs = 0, outstanding = 0, untilUs = 0]) =>
    (outstanding > 0 ? { level, tsUs, outstanding, outstandingUntilUs: untilUs } : { level, tsUs }),
  mirrored: true,
};
