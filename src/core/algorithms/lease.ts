// A region's lease of a global limit (store/redis/global-limits.ts): `level`
// tokens that this region may spend until `tsUs` (its expiry, region clock),
// and `spent`, what it spent since its last report to the home region.
// Stored as "<tokens>:<expiresAtUs>:<generation>:<spent>".
import type { LimitSpec } from '../types.js';
import { ceilDiv, type AlgorithmModule, type BucketState, type Evaluation } from './algorithm.js';

/** The lease while it lasts, else none (an expired lease holds nothing). */
function live(state: BucketState | null, nowUs: number): BucketState | null {
  return state !== null && nowUs < state.tsUs ? state : null;
}

/**
 * Allowed iff the lease has `cost` tokens; a denial takes nothing. Reset and
 * retry are estimates from the global rate: when the lease runs dry the next
 * tokens come from the home region's refill.
 */
function evaluate(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  const lease = live(state, nowUs);
  const tokens = lease === null ? 0 : lease.level;
  const allowed = cost <= tokens;
  const after = allowed ? tokens - cost : tokens;
  const estimate = (missingTokens: number): number => (limit.refillPerTick === 0 || missingTokens <= 0
    ? 0 : ceilDiv(missingTokens * limit.levelPerToken, limit.refillPerTick) * limit.tickUs);
  const retryAfterUs = allowed ? 0 : Math.max(1, estimate(cost - tokens));
  return {
    outcome: { allowed, remaining: after, resetUs: estimate(limit.burst - after), retryAfterUs },
    untaken: { allowed, remaining: tokens, resetUs: estimate(limit.burst - tokens), retryAfterUs },
    // Kept while it lasts, even empty (its spending is reported with the next request).
    next: lease === null ? null : { level: after, tsUs: lease.tsUs, spent: (lease.spent ?? 0) + (allowed ? cost : 0) },
    ttlUs: state === null ? 0 : Math.max(0, state.tsUs - nowUs),
  };
}

export const lease: AlgorithmModule = {
  code: 'l',
  limitArgs: () => [],
  evaluate,
  // Only what is still counted as spent here comes back: tokens already
  // reported spent were released at home, so they are gone.
  refund(_limit, state, nowUs, cost) {
    const held = live(state, nowUs);
    const back = Math.min(cost, held?.spent ?? 0);
    if (held === null || back <= 0) return undefined;
    return { level: held.level + back, tsUs: held.tsUs, spent: held.spent! - back };
  },
  debit(_limit, state, nowUs, cost) {
    const held = live(state, nowUs);
    if (held === null || cost <= 0) return undefined;
    const taken = Math.min(cost, held.level);
    return { level: held.level - taken, tsUs: held.tsUs, spent: (held.spent ?? 0) + taken };
  },
  fromReply: (level, tsUs, spent) => ({ level, tsUs, spent }),
  fromStored: ([level = 0, tsUs = 0, , spent = 0]) => ({ level, tsUs, spent }),
  mirrored: false,
};
