import t from 'tap';
import { evaluate, type BucketState } from '../../../src/core/bucket.js';
import { compileLimit } from '../../../src/core/limit.js';
import type { LimitSpec } from '../../../src/core/types.js';

const SECOND = 1_000_000;
const MINUTE = 60 * SECOND;
/** A minute boundary (the Unix epoch is aligned to every unit): windows start here. */
const T0 = 28_333_333 * MINUTE;

/** One request against a window and its state, as a store would for a lone op. */
function windowOf(limit: LimitSpec) {
  let state: BucketState | null = null;
  return {
    hit(nowUs: number, cost = 1) {
      const evaluation = evaluate(limit, state, nowUs, cost);
      if (evaluation.outcome.allowed && cost > 0) state = evaluation.next;
      return evaluation.outcome;
    },
    get state() { return state; },
  };
}

const perMinute = (requestsPerUnit: number) => compileLimit({ requestsPerUnit, unit: 'minute', algorithm: 'sliding_window' });

t.test('within one window it counts like a fixed window; a denial counts nothing', async (t) => {
  const w = windowOf(perMinute(10));
  for (let i = 9; i >= 0; i--) t.match(w.hit(T0 + SECOND), { allowed: true, remaining: i });
  t.same(w.state, { level: 10, tsUs: T0, prevLevel: 0 }, 'state: this window\'s count, its start, the previous count');
  const denied = w.hit(T0 + 2 * SECOND);
  t.match(denied, { allowed: false, remaining: 0 });
  t.equal(denied.retryAfterUs, MINUTE - 2 * SECOND + 6 * SECOND, 'the 10 hits weigh 9 at 6 s into the next window');
  t.equal(denied.resetUs, 2 * MINUTE - 2 * SECOND, 'the hits weigh nothing once the next window has passed');
  t.same(w.state, { level: 10, tsUs: T0, prevLevel: 0 }, 'the denial changed nothing');
});

t.test('the previous window weighs (W - e) / W: allowed iff prev × (W − e) / W + cur + n ≤ limit', async (t) => {
  const w = windowOf(perMinute(10));
  w.hit(T0 + 30 * SECOND, 10);
  const next = T0 + MINUTE;
  t.match(w.hit(next), { allowed: false, remaining: 0 }, 'at the start of the next window prev weighs all 10');
  t.equal(w.hit(next + 6 * SECOND - 1).allowed, false, '1 µs before prev weighs 9');
  t.match(w.hit(next + 6 * SECOND), { allowed: true, remaining: 0 }, '10 × 54/60 + 0 + 1 = 10');
  t.match(w.hit(next + 30 * SECOND, 0), { allowed: true, remaining: 4 }, 'half-way: 10 × 0.5 + 1 = 6 used, 4 left');
  t.match(w.hit(next + 30 * SECOND, 5), { allowed: false, remaining: 4 }, '5 + 1 + 5 = 11 > 10');
  t.match(w.hit(next + 30 * SECOND, 4), { allowed: true, remaining: 0 });
  t.same(w.state, { level: 5, tsUs: next, prevLevel: 10 });
  t.match(w.hit(next + MINUTE, 0), { allowed: true, remaining: 5, resetUs: MINUTE },
    'a window later the 5 weigh fully and the 10 not at all');
  t.match(w.hit(next + 3 * MINUTE, 0), { allowed: true, remaining: 10, resetUs: 0 }, 'two windows later nothing weighs');
});

t.test('retry-after is the first instant the cost fits: in this window, or in the next', async (t) => {
  const limit = perMinute(10);
  const at = (state: BucketState, nowUs: number, cost = 1) => evaluate(limit, state, nowUs, cost).outcome;
  // prev 10, cur 2 at 0 s: 1 more fits when 10 × (60 − e)/60 ≤ 7, i.e. e ≥ 18 s.
  t.equal(at({ level: 2, tsUs: T0, prevLevel: 10 }, T0).retryAfterUs, 18 * SECOND);
  t.equal(at({ level: 2, tsUs: T0, prevLevel: 10 }, T0 + 18 * SECOND).allowed, true);
  // prev 10, cur 9: in this window 1 never fits before its end (10 × 1/60 > 0); in the next
  // window prev' = 9: 9 × (60 − e)/60 + 1 ≤ 10 holds at e = 0.
  t.equal(at({ level: 9, tsUs: T0, prevLevel: 10 }, T0 + 5 * SECOND).retryAfterUs, 55 * SECOND);
  // cur 10 (full): next window, 10 × (60 − e)/60 + 3 ≤ 10 ⇔ e ≥ 18 s.
  t.equal(at({ level: 10, tsUs: T0, prevLevel: 0 }, T0 + 5 * SECOND, 3).retryAfterUs, 55 * SECOND + 18 * SECOND);
  // A previous window from long ago counts nothing.
  t.match(at({ level: 10, tsUs: T0 - 5 * MINUTE, prevLevel: 10 }, T0), { allowed: true, remaining: 9 });
});

t.test('a cost above the limit is never allowed: it takes nothing and is told to wait a whole window', async (t) => {
  const w = windowOf(perMinute(5));
  const denied = w.hit(T0, 6);
  t.match(denied, { allowed: false, remaining: 5, retryAfterUs: MINUTE });
  t.equal(w.state, null);
  t.match(w.hit(T0, 5), { allowed: true, remaining: 0 }, 'the whole limit is still there');
});

t.test('requests_per_unit 0 is always over; check-only passes', async (t) => {
  const w = windowOf(perMinute(0));
  t.match(w.hit(T0 + 7), { allowed: false, remaining: 0, retryAfterUs: MINUTE });
  t.match(w.hit(T0, 0), { allowed: true, remaining: 0, retryAfterUs: 0 });
});

t.test('unit_multiplier: a window of 5 minutes aligned to the epoch', async (t) => {
  const limit = compileLimit({ requestsPerUnit: 100, unit: 'minute', unitMultiplier: 5, algorithm: 'sliding_window' });
  t.equal(limit.unitUs, 5 * MINUTE);
  t.equal(limit.fingerprint, 'sw100/5m');
  const start = Math.floor(T0 / (5 * MINUTE)) * 5 * MINUTE;
  const w = windowOf(limit);
  t.match(w.hit(start + 4 * MINUTE, 100), { allowed: true, remaining: 0, resetUs: 6 * MINUTE });
  t.match(w.hit(start + 5 * MINUTE + 150 * SECOND, 50), { allowed: true, remaining: 0 }, 'half of the 100 weighs half-way');
});

t.test('the tick: 1 µs when the numbers allow, coarser (ms, s) for large limits over long windows', async (t) => {
  t.equal(perMinute(1000).tickUs, 1);
  const daily = compileLimit({ requestsPerUnit: 1_000_000, unit: 'day', algorithm: 'sliding_window' });
  t.equal(daily.tickUs, 1000);
  t.ok(2 * daily.requestsPerUnit * daily.windowTicks <= Number.MAX_SAFE_INTEGER);
  const yearly = compileLimit({ requestsPerUnit: 10_000_000, unit: 'year', algorithm: 'sliding_window' });
  t.equal(yearly.tickUs, SECOND);
  t.throws(() => compileLimit({ requestsPerUnit: 2 ** 40, unit: 'year', algorithm: 'sliding_window' }),
    { message: 'requests_per_unit 1099511627776 is too large for a sliding window of y' });
  // Time into the window is rounded DOWN to the tick: the previous window weighs as at the tick's start.
  const dayStart = Math.floor(T0 / (86_400 * SECOND)) * 86_400 * SECOND;
  const state: BucketState = { level: 0, tsUs: dayStart, prevLevel: 1_000_000 };
  const atTick = evaluate(daily, state, dayStart + 43_200 * SECOND, 0).outcome;
  const insideTick = evaluate(daily, state, dayStart + 43_200 * SECOND + 999, 0).outcome;
  t.equal(atTick.remaining, 500_000);
  t.equal(insideTick.remaining, 500_000, '999 µs later, still the same tick');
  t.equal(evaluate(daily, state, dayStart + 43_200 * SECOND + 1000, 0).outcome.remaining, 500_000,
    'one tick later prev weighs 1/86400000 less: not yet a whole request');
});

t.test('a clock that goes backwards decays nothing and breaks nothing', async (t) => {
  const limit = perMinute(10);
  const state: BucketState = { level: 4, tsUs: T0 + MINUTE, prevLevel: 10 };
  const outcome = evaluate(limit, state, T0 + 30 * SECOND, 1).outcome;
  t.match(outcome, { allowed: false, remaining: 0 }, 'read at the start of the stored window: prev weighs fully');
  t.ok(outcome.retryAfterUs > 30 * SECOND);
});
