import t from 'tap';
import { backoffDelayMs } from '../../../src/store/redis/backoff.js';

const steps = { baseMs: 100, maxMs: 2_000 };

t.test('reconnects and probes back off exponentially up to a cap (not linearly, not fixed)', async (t) => {
  const middle = (attempt: number): number => backoffDelayMs(attempt, steps, () => 0.5);
  t.same([1, 2, 3, 4, 5, 6, 7, 50].map(middle), [100, 200, 400, 800, 1_600, 2_000, 2_000, 2_000]);
});

t.test('each delay is jittered by up to ±20 % and never above the cap: a fleet does not retry in lockstep', async (t) => {
  t.equal(backoffDelayMs(3, steps, () => 0), 320, 'the low end: 400 ms − 20 %');
  t.equal(backoffDelayMs(3, steps, () => 0.999_999), 480, 'the high end: 400 ms + 20 %');
  t.equal(backoffDelayMs(9, steps, () => 0), 1_600, 'capped steps jitter downwards');
  t.equal(backoffDelayMs(9, steps, () => 0.999_999), 2_000, 'and never beyond the cap');
  const drawn = new Set(Array.from({ length: 50 }, () => backoffDelayMs(4, steps)));
  t.ok(drawn.size > 10, `50 sidecars draw ${drawn.size} different delays for the same attempt`);
});
