// fixed_window: envoyproxy/ratelimit's windows, aligned to the Unix epoch per
// period; `level` counts the hits of the window that starts at `tsUs`.
import type { LimitSpec } from '../types.js';
import type { AlgorithmModule, BucketState, Evaluation } from './algorithm.js';

/**
 * The window `nowUs` falls in: a state counts while `now` is inside its
 * window. Stores write windows aligned to the epoch; the local fallback may
 * hold a Redis window shifted onto its own clock, which stays valid until it ends.
 */
function currentWindow(limit: LimitSpec, state: BucketState | null, nowUs: number): { count: number; startUs: number } {
  if (state !== null && state.tsUs <= nowUs && nowUs < state.tsUs + limit.unitUs) return { count: state.level, startUs: state.tsUs };
  return { count: 0, startUs: Math.floor(nowUs / limit.unitUs) * limit.unitUs };
}

function evaluate(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  const max = limit.requestsPerUnit;
  const { count, startUs } = currentWindow(limit, state, nowUs);
  const resetUs = startUs + limit.unitUs - nowUs;
  const allowed = count + cost <= max;
  const after = allowed ? count + cost : count;
  const retryAfterUs = allowed ? 0 : resetUs;
  return {
    outcome: { allowed, remaining: Math.max(0, max - after), resetUs, retryAfterUs },
    untaken: { allowed, remaining: Math.max(0, max - count), resetUs, retryAfterUs },
    next: after === 0 ? null : { level: after, tsUs: startUs },
    ttlUs: resetUs,
  };
}

export const fixedWindow: AlgorithmModule = {
  code: 'f',
  limitArgs: (limit) => [String(limit.unitUs), String(limit.requestsPerUnit)],
  evaluate,
  // Only while the charged window is still the stored one (a later window owes nothing).
  refund(_limit, state, _nowUs, cost, chargedStartUs) {
    if (state === null || cost <= 0 || state.tsUs !== chargedStartUs) return undefined;
    const left = state.level - cost;
    return left <= 0 ? null : { level: left, tsUs: state.tsUs };
  },
  // Counted in the current window, never above its maximum.
  debit(limit, state, nowUs, cost) {
    if (cost <= 0) return undefined;
    const { count, startUs } = currentWindow(limit, state, nowUs);
    return { level: Math.min(limit.requestsPerUnit, count + cost), tsUs: startUs };
  },
  fromReply: (level, tsUs) => ({ level, tsUs }),
  fromStored: ([level = 0, tsUs = 0]) => ({ level, tsUs }),
  mirrored: true,
};
