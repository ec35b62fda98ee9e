import t from 'tap';
import { compileLimit } from '../../../src/core/limit.js';
import type { BucketOp } from '../../../src/core/types.js';
import { MemoryStore } from '../../../src/store/memory-store.js';

const perMinute = compileLimit({ requestsPerUnit: 10, unit: 'minute' });
const perSecond = compileLimit({ requestsPerUnit: 2, unit: 'second' });

function op(key: string, cost = 1, shadow = false, limit = perMinute): BucketOp {
  return { key, slotTag: key, limit, cost, shadow };
}

t.test('a denied request takes tokens from no limit', async (t) => {
  let now = 1_000_000_000;
  const store = new MemoryStore({ maxKeys: 1_000_000, clock: () => now, sweep: false });
  store.applySync([op('per-ip', 9)]);
  // per-key has plenty, per-ip has 1 left; the request costs 2 → denied everywhere.
  const outcomes = store.applySync([op('per-key', 2), op('per-ip', 2)]);
  t.match(outcomes, [{ allowed: true, remaining: 10 }, { allowed: false, remaining: 1 }]);
  t.match(store.applySync([op('per-key', 0)]), [{ remaining: 10 }], 'per-key untouched by the denial');
  t.match(store.applySync([op('per-ip', 1)]), [{ allowed: true, remaining: 0 }]);
});

t.test('a shadow limit reports its denial but neither denies nor blocks the others', async (t) => {
  const store = new MemoryStore({ maxKeys: 1_000_000, clock: () => 5_000_000, sweep: false });
  store.applySync([op('shadowed', 10)]);
  const outcomes = store.applySync([op('enforced', 1), op('shadowed', 1, true)]);
  t.match(outcomes, [{ allowed: true, remaining: 9 }, { allowed: false }]);
  t.match(store.applySync([op('enforced', 0)]), [{ remaining: 9 }], 'the enforced limit took its token');
});

t.test('two descriptors on the same bucket in one request both count', async (t) => {
  const store = new MemoryStore({ maxKeys: 1_000_000, clock: () => 5_000_000, sweep: false });
  store.applySync([op('same', 8)]);
  t.match(store.applySync([op('same', 1), op('same', 1)]), [{ allowed: true, remaining: 1 }, { allowed: true, remaining: 0 }]);
  t.match(store.applySync([op('same', 1), op('same', 1)]), [{ allowed: false }, { allowed: false }]);
});

t.test('a bucket that is full again is forgotten at once', async (t) => {
  let now = 1_000_000;
  const store = new MemoryStore({ maxKeys: 1_000_000, clock: () => now, sweep: false });
  store.applySync([op('a', 1, false, perSecond)]);
  t.equal(store.size, 1);
  now += 600_000; // refilled: the next take writes a full-again state → deleted
  store.applySync([op('a', 0, false, perSecond)]);
  store.applySync([op('a', 1, false, perSecond)]);
  t.equal(store.size, 1);
  now += 10_000_000;
  store.sweepSlice();
  t.equal(store.size, 0, 'expired buckets are swept');
});

t.test('memory stays bounded under a spray of unique keys (LRU eviction)', async (t) => {
  const store = new MemoryStore({ maxKeys: 1000, clock: () => 1_000_000, sweep: false });
  for (let i = 0; i < 50_000; i++) store.applySync([op(`spray-${i}`)]);
  t.equal(store.size, 1000);
  t.match(store.applySync([op('spray-49999', 0)]), [{ remaining: 9 }], 'recent keys are kept');
  t.match(store.applySync([op('spray-0', 0)]), [{ remaining: 10 }], 'the oldest were evicted (their debt forgotten)');
});
