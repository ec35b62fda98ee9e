import t from 'tap';
import { CircuitBreaker } from '../../../src/store/redis/circuit-breaker.js';
import type { BreakerState } from '../../../src/store/redis/circuit-breaker.js';

function breaker() {
  const b = new CircuitBreaker({ failureThreshold: 3 });
  const seen: BreakerState[] = [];
  b.onStateChange((state) => seen.push(state));
  return { b, seen };
}

t.test('opens after N consecutive failures; a success in between resets the count', async (t) => {
  const { b, seen } = breaker();
  b.failure(); b.failure(); b.success(); b.failure(); b.failure();
  t.equal(b.state, 'closed');
  b.failure();
  t.equal(b.state, 'open');
  b.failure();
  t.same(seen, ['open'], 'more failures while open change nothing');
});

t.test('trip opens at once (a closed connection is not a maybe); a success closes', async (t) => {
  const { b, seen } = breaker();
  b.trip();
  t.equal(b.state, 'open');
  b.trip();
  b.success();
  t.equal(b.state, 'closed');
  b.failure();
  t.equal(b.state, 'closed', 'the count starts again after a success');
  t.same(seen, ['open', 'closed']);
});

t.test('a throwing listener does not break the breaker; unsubscribe works', async (t) => {
  const b = new CircuitBreaker({ failureThreshold: 1 });
  const off = b.onStateChange(() => { throw new Error('listener'); });
  b.failure();
  t.equal(b.state, 'open');
  off();
});
