import t from 'tap';
import { CircuitBreaker } from '../../src/store/redis/circuit-breaker.js';
import type { BreakerState } from '../../src/store/redis/circuit-breaker.js';

function breaker() {
  let now = 0;
  const b = new CircuitBreaker({ failureThreshold: 3, coolDownMs: 1_000, nowMs: () => now });
  const seen: BreakerState[] = [];
  b.onStateChange((state) => seen.push(state));
  return { b, seen, advance: (ms: number) => { now += ms; } };
}

t.test('opens after N consecutive failures; a success in between resets the count', async (t) => {
  const { b, seen } = breaker();
  b.failure(); b.failure(); b.success(); b.failure(); b.failure();
  t.equal(b.state, 'closed');
  b.failure();
  t.equal(b.state, 'open');
  t.equal(b.tryAcquire(), false, 'refuses while open');
  t.same(seen, ['open']);
});

t.test('after the cool-down one probe goes through; its success closes', async (t) => {
  const { b, seen, advance } = breaker();
  for (let i = 0; i < 3; i++) b.failure();
  advance(999);
  t.equal(b.tryAcquire(), false);
  advance(1);
  t.equal(b.tryAcquire(), true, 'the probe');
  t.equal(b.state, 'half_open');
  t.equal(b.tryAcquire(), false, 'only one probe at a time');
  b.success();
  t.equal(b.state, 'closed');
  t.equal(b.tryAcquire(), true);
  t.same(seen, ['open', 'half_open', 'closed']);
});

t.test('a failed probe opens again for a full cool-down', async (t) => {
  const { b, advance } = breaker();
  for (let i = 0; i < 3; i++) b.failure();
  advance(1_000);
  t.equal(b.tryAcquire(), true);
  b.failure();
  t.equal(b.state, 'open');
  advance(500);
  t.equal(b.tryAcquire(), false);
  advance(500);
  t.equal(b.tryAcquire(), true);
});

t.test('a throwing listener does not break the breaker; unsubscribe works', async (t) => {
  const b = new CircuitBreaker({ failureThreshold: 1, nowMs: () => 0 });
  const off = b.onStateChange(() => { throw new Error('listener'); });
  b.failure();
  t.equal(b.state, 'open');
  off();
});
