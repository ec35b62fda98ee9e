// sliding_window: the weighted previous window, in integers. `level` counts
// the hits of the window that starts at `tsUs`, `prevLevel` those of the
// window before it. Stored as "<count>:<windowStartUs>:<previousCount>".
import type { LimitSpec } from '../types.js';
import { ceilDiv, type AlgorithmModule, type BucketState, type Evaluation } from './algorithm.js';

/**
 * The windows `nowUs` reads: the stored window [ts, ts + W) is read by where
 * `now` falls, not by alignment (stores write epoch-aligned windows, the
 * local fallback may hold a Redis window shifted onto its own clock). For
 * aligned states this is exactly "ts = ws: cur/prev; ts = ws − W: prev;
 * older: nothing". A later window (the clock went backwards) is read at its start.
 */
function windows(limit: LimitSpec, state: BucketState | null, nowUs: number): { cur: number; prev: number; startUs: number } {
  const window = limit.unitUs;
  if (state !== null) {
    if (nowUs < state.tsUs + window) return { cur: state.level, prev: state.prevLevel ?? 0, startUs: state.tsUs };
    if (nowUs < state.tsUs + 2 * window) return { cur: 0, prev: state.level, startUs: state.tsUs + window };
  }
  return { cur: 0, prev: 0, startUs: Math.floor(nowUs / window) * window };
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
function evaluate(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  const { unitUs: window, tickUs: tick, windowTicks: wt, requestsPerUnit: max } = limit;
  const { cur, prev, startUs: windowStart } = windows(limit, state, nowUs);
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

export const slidingWindow: AlgorithmModule = {
  code: 's',
  // The script derives windowTicks as window / tick (exact: every tick divides a whole second).
  limitArgs: (limit) => [String(limit.unitUs), String(limit.tickUs), String(limit.requestsPerUnit)],
  evaluate,
  // Only while the charged window is still the stored one; the previous count stays.
  refund(_limit, state, _nowUs, cost, chargedStartUs) {
    if (state === null || cost <= 0 || state.tsUs !== chargedStartUs) return undefined;
    const left = Math.max(0, state.level - cost);
    const prevLevel = state.prevLevel ?? 0;
    return left === 0 && prevLevel === 0 ? null : { level: left, tsUs: state.tsUs, prevLevel };
  },
  // Counted in the current window, never above its maximum.
  debit(limit, state, nowUs, cost) {
    if (cost <= 0) return undefined;
    const { cur, prev, startUs } = windows(limit, state, nowUs);
    return { level: Math.min(limit.requestsPerUnit, cur + cost), tsUs: startUs, prevLevel: prev };
  },
  fromReply: (level, tsUs, prevLevel) => ({ level, tsUs, prevLevel }),
  fromStored: ([level = 0, tsUs = 0, prevLevel = 0]) => ({ level, tsUs, prevLevel }),
  mirrored: true,
};
