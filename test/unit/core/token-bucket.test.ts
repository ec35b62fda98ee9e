import t from 'tap';
import { evaluate, type BucketState } from '../../../src/core/bucket.js';
import { compileLimit } from '../../../src/core/limit.js';
import type { LimitSpec } from '../../../src/core/types.js';

const SECOND = 1_000_000;
const T0 = 1_700_000_000 * SECOND; // a fixed epoch instant, µs

/** Runs one request against a bucket and keeps the state, as a store would for a lone op. */
function bucket(limit: LimitSpec) {
  let state: BucketState | null = null;
  return {
    hit(nowUs: number, cost = 1) {
      const evaluation = evaluate(limit, state, nowUs, cost);
      if (evaluation.outcome.allowed) state = evaluation.next;
      return evaluation.outcome;
    },
    get state() { return state; },
  };
}

t.test('a new bucket is full: burst requests pass at once, the next is denied', async (t) => {
  const b = bucket(compileLimit({ requestsPerUnit: 10, unit: 'second', burst: 20 }));
  for (let i = 19; i >= 0; i--) t.match(b.hit(T0), { allowed: true, remaining: i });
  const denied = b.hit(T0);
  t.equal(denied.allowed, false);
  t.equal(denied.remaining, 0);
  t.equal(denied.retryAfterUs, 100_000, 'one token refills in 1/10 s');
  t.equal(denied.resetUs, 2 * SECOND, '20 tokens take 2 s to refill');
});

t.test('tokens refill continuously, not per window', async (t) => {
  const b = bucket(compileLimit({ requestsPerUnit: 10, unit: 'second' }));
  for (let i = 0; i < 10; i++) b.hit(T0);
  t.equal(b.hit(T0 + 99_999).allowed, false, 'not yet a whole token after 99.999 ms');
  t.equal(b.hit(T0 + 100_000).allowed, true, 'one token after 100 ms');
  t.equal(b.hit(T0 + 100_000).allowed, false);
  t.match(b.hit(T0 + 1_100_000, 0), { allowed: true, remaining: 10 }, 'full again after a second');
});

t.test('refill never goes past capacity', async (t) => {
  const b = bucket(compileLimit({ requestsPerUnit: 5, unit: 'second', burst: 5 }));
  b.hit(T0, 5);
  t.match(b.hit(T0 + 3600 * SECOND, 0), { allowed: true, remaining: 5, resetUs: 0 });
});

t.test('a cost above burst is always denied and takes nothing', async (t) => {
  const b = bucket(compileLimit({ requestsPerUnit: 10, unit: 'minute', burst: 10 }));
  const denied = b.hit(T0, 11);
  t.equal(denied.allowed, false);
  t.equal(denied.remaining, 10, 'nothing taken');
  t.equal(b.state, null, 'state untouched');
  t.equal(b.hit(T0, 10).allowed, true, 'the whole burst is still there');
});

t.test('cost (hits_addend) takes that many tokens; 0 only checks', async (t) => {
  const b = bucket(compileLimit({ requestsPerUnit: 100, unit: 'hour' }));
  t.match(b.hit(T0, 40), { allowed: true, remaining: 60 });
  t.match(b.hit(T0, 0), { allowed: true, remaining: 60 });
  t.match(b.hit(T0, 61), { allowed: false, remaining: 60 });
  t.match(b.hit(T0, 60), { allowed: true, remaining: 0 });
  t.match(b.hit(T0, 0), { allowed: true, remaining: 0 }, 'check-only passes on an empty bucket');
});

t.test('retry-after is the time until cost tokens exist', async (t) => {
  const b = bucket(compileLimit({ requestsPerUnit: 1, unit: 'minute' }));
  t.equal(b.hit(T0).allowed, true);
  const denied = b.hit(T0 + 59_500_000);
  t.equal(denied.allowed, false);
  t.equal(denied.retryAfterUs, 500_000, 'half a second left (the transport rounds it up to 1 s)');
  const costly = bucket(compileLimit({ requestsPerUnit: 10, unit: 'second' }));
  costly.hit(T0, 10);
  t.equal(costly.hit(T0, 3).retryAfterUs, 300_000, '3 tokens take 300 ms');
});

t.test('no drift: a rate whose token interval is not a whole micro-second', async (t) => {
  // 3 per second = one token every 333333.33 µs.
  const limit = compileLimit({ requestsPerUnit: 3, unit: 'second', burst: 1 });
  t.equal(limit.tickUs, 1);
  const b = bucket(limit);
  t.equal(b.hit(T0).allowed, true);
  // Step one micro-second at a time through many check-only calls that store the refilled state.
  let state = b.state;
  let wholeTokensSeen = 0;
  for (let now = T0; now < T0 + 333_333; now += 7) {
    const evaluation = evaluate(limit, state, now, 0);
    wholeTokensSeen += evaluation.outcome.remaining;
    state = evaluation.next;
  }
  t.equal(wholeTokensSeen, 0, 'no whole token appears early');
  t.not(state, null);
  t.equal(evaluate(limit, state, T0 + 333_333, 1).outcome.allowed, false, '1 µs before the token is whole');
  t.equal(evaluate(limit, state, T0 + 333_334, 1).outcome.allowed, true, 'exactly ceil(1e6/3) µs later');
  // Three tokens after exactly one second, however the second was sliced.
  const whole = bucket(compileLimit({ requestsPerUnit: 3, unit: 'second', burst: 3 }));
  whole.hit(T0, 3);
  for (let i = 1; i <= 1000; i++) whole.hit(T0 + i * 1000, 0);
  t.match(whole.hit(T0 + SECOND, 3), { allowed: true });
});

t.test('a clock that goes backwards refills nothing and breaks nothing', async (t) => {
  const b = bucket(compileLimit({ requestsPerUnit: 10, unit: 'second' }));
  b.hit(T0, 10);
  const outcome = b.hit(T0 - 5 * SECOND);
  t.equal(outcome.allowed, false);
  t.ok(outcome.retryAfterUs > 0);
});

t.test('requests_per_unit 0 is always over', async (t) => {
  const b = bucket(compileLimit({ requestsPerUnit: 0, unit: 'second' }));
  t.equal(b.hit(T0).allowed, false);
  t.equal(b.hit(T0 + 1000 * SECOND).allowed, false);
});

t.test('long units and large bursts keep exact integers below 2^53', async (t) => {
  const year = compileLimit({ requestsPerUnit: 7, unit: 'year', burst: 1_000_000 });
  t.ok(year.capacityLevel <= Number.MAX_SAFE_INTEGER);
  t.ok(year.tickUs > 1, 'a coarser tick keeps the numbers exact');
  const b = bucket(year);
  t.equal(b.hit(T0, 1_000_000).allowed, true);
  t.equal(b.hit(T0 + 1).allowed, false);
  t.throws(() => compileLimit({ requestsPerUnit: 1, unit: 'year', burst: 2 ** 52 }), /too large/);
});

t.test('fixed_window: windows align to the Unix epoch per unit', async (t) => {
  const limit = compileLimit({ requestsPerUnit: 3, unit: 'minute', algorithm: 'fixed_window' });
  const minuteStart = Math.floor(T0 / (60 * SECOND)) * 60 * SECOND;
  const b = bucket(limit);
  const at = minuteStart + 50 * SECOND;
  t.match(b.hit(at), { allowed: true, remaining: 2, resetUs: 10 * SECOND });
  t.match(b.hit(at, 2), { allowed: true, remaining: 0 });
  const denied = b.hit(at + SECOND);
  t.match(denied, { allowed: false, remaining: 0, retryAfterUs: 9 * SECOND });
  t.match(b.hit(minuteStart + 60 * SECOND), { allowed: true, remaining: 2 }, 'a new window starts on the minute');
});

t.test('fixed_window: a denial takes nothing (STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT)', async (t) => {
  const b = bucket(compileLimit({ requestsPerUnit: 5, unit: 'hour', algorithm: 'fixed_window' }));
  b.hit(T0, 4);
  t.equal(b.hit(T0, 2).allowed, false);
  t.equal(b.hit(T0, 1).allowed, true, 'the denied 2 were not counted');
});
