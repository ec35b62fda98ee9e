// A token budget (`overdraft: true` on a token bucket): usage known only
// after the work was done (LLM tokens) is charged after the response. A
// check (cost 0) passes while the balance is above zero; a charge (cost > 0)
// is always recorded, also at or below zero and also when another limit of
// the request denies (`always`): the level goes negative and refills pay
// the debt first. Stored as a token bucket's "<level>:<tsUs>", the level
// possibly negative. See docs/budgets.md.
import type { BucketOutcome, LimitSpec } from '../types.js';
import { ceilDiv, type AlgorithmModule, type BucketState, type Evaluation } from './algorithm.js';
import { refilled, stateAt, tokenBucket } from './token-bucket.js';

/**
 * The lowest level a budget goes to: however much is charged, every number
 * (the debt, the time to refill it, a key's TTL) stays below 2^53. Far below
 * any real debt (for 1000 tokens/hour: some 2^52 µs of refill, 140 years).
 */
function debtFloor(limit: LimitSpec): number {
  return -Math.min(Number.MAX_SAFE_INTEGER - limit.capacityLevel, Math.floor(2 ** 52 / limit.tickUs) * limit.refillPerTick);
}

/** Whole tokens owed at `level` (rounded up); undefined above zero. */
function owed(limit: LimitSpec, level: number): number | undefined {
  return level > 0 ? undefined : ceilDiv(-level, limit.levelPerToken);
}

function evaluate(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  const { refillPerTick: refill, tickUs: tick, levelPerToken: perToken, capacityLevel: cap } = limit;
  const { level, tsUs: ts } = refilled(limit, state, nowUs);
  const progressUs = nowUs > ts ? nowUs - ts : 0;
  // Allowed while the balance is above zero, for a check and a charge alike.
  const allowed = level > 0;
  const charged = cost > 0;
  const after = charged ? Math.max(debtFloor(limit), level - cost * perToken) : level;
  const resetUs = after >= cap ? 0 : ceilDiv(cap - after, refill) * tick - progressUs;
  // Denied: the time until the balance (after this charge) is above zero again.
  const retryAfterUs = allowed ? 0 : ceilDiv(1 - after, refill) * tick - progressUs;
  const outcome: BucketOutcome = { allowed, remaining: after > 0 ? Math.floor(after / perToken) : 0, resetUs, retryAfterUs };
  const debt = owed(limit, after);
  if (debt !== undefined) outcome.debt = debt;
  const evaluation: Evaluation = { outcome, untaken: outcome, next: stateAt(limit, state, after, ts, nowUs), ttlUs: resetUs };
  // A charge is recorded whatever the batch decides; a check changes nothing.
  if (charged) evaluation.always = true;
  return evaluation;
}

export const overdraftBucket: AlgorithmModule = {
  code: 'o',
  limitArgs: (limit) => [...tokenBucket.limitArgs(limit), String(debtFloor(limit))],
  evaluate,
  refund: tokenBucket.refund,
  // Refilled to now, then `cost` taken, below zero too (a charge the store did not see is still owed).
  debit(limit, state, nowUs, cost) {
    if (cost <= 0) return undefined;
    const { level, tsUs } = refilled(limit, state, nowUs);
    return stateAt(limit, state, Math.max(debtFloor(limit), level - cost * limit.levelPerToken), tsUs, nowUs);
  },
  fromReply: tokenBucket.fromReply,
  fromStored: tokenBucket.fromStored,
  mirrored: true,
};
