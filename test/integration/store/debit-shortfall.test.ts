/**
 * A write-back that finds a bucket short of what the failure policy admitted
 * counts the shortfall as over-admission (`ratelimit_fallback_overadmitted_total`,
 * docs/failure.md): lua/openclaw.lua `debit` reports what did not fit, per
 * algorithm, and the store tells it once, whether the debit's reply came in
 * time or late.
 */
import { Redis } from 'ioredis';
import t from 'tap';
import { compileLimit } from '../../../src/core/limit.js';
import type { BucketOp, LimitSpec } from '../../../src/core/types.js';
import { RedisLibrary } from '../../../src/store/redis/library.js';
import { startDelayProxy } from '../../helpers/delay-proxy.js';
import { startRedis, waitFor } from '../../helpers/redis.js';
import { uniquePrefix } from '../../helpers/store-contract.js';
import { redisStoreFor } from './redis-helper.js';

const redis = await startRedis({ t });
const client = new Redis({ host: redis.host, port: redis.port, lazyConnect: true });
await client.connect();
t.teardown(() => client.quit());
const library = new RedisLibrary(client);

const op = (key: string, limit: LimitSpec, cost: number): BucketOp => ({ key, slotTag: 'tag', limit, cost, shadow: false });
const key = (label: string): string => `${uniquePrefix(label)}{tag}k`;

t.test('debit reports what did not fit, for every algorithm', async (t) => {
  const cases: [string, LimitSpec][] = [
    ['token bucket', compileLimit({ requestsPerUnit: 10, unit: 'hour' })],
    ['fixed window', compileLimit({ requestsPerUnit: 10, unit: 'hour', algorithm: 'fixed_window' })],
    ['sliding window', compileLimit({ requestsPerUnit: 10, unit: 'hour', algorithm: 'sliding_window' })],
  ];
  for (const [name, limit] of cases) {
    const k = key(name.replace(/ /g, '-'));
    t.equal((await library.debit(k, [op(k, limit, 7)])).shortfall, 0, `${name}: 7 of 10 fit`);
    t.equal((await library.debit(k, [op(k, limit, 5)])).shortfall, 2, `${name}: 5 more, 3 fit: 2 short`);
    t.equal((await library.debit(k, [op(k, limit, 4), op(k, limit, 1)])).shortfall, 5, `${name}: an empty bucket: all 5 short, summed over ops`);
  }
});

t.test('a write-back that finds the bucket spent counts the shortfall as over-admission', async (t) => {
  const limit = compileLimit({ requestsPerUnit: 10, unit: 'hour' });
  const k = key('write-back');
  const proxy = await startDelayProxy({ t, target: { port: redis.port }, delayMs: 0, name: 'to redis' });
  let overAdmitted = 0;
  const a = redisStoreFor(t, {
    redis: `redis://${proxy.address}`,
    policy: 'local',
    events: { fallbackOverAdmitted: (count) => { overAdmitted += count; } },
  });
  t.ok(await a.store.waitUntilConnected(10_000), 'A connected');
  for (let i = 0; i < 5; i++) t.equal((await a.apply([op(k, limit, 1)]))[0]!.allowed, true, `A: request ${i + 1} allowed by Redis`);
  proxy.cut();
  let local = 0;
  for (let i = 0; i < 8; i++) {
    const decision = await a.store.apply([op(k, limit, 1)]);
    if (decision.fallback === 'local' && decision.outcomes[0]!.allowed) local++;
  }
  t.equal(local, 5, 'A, cut off: the local policy admits the 5 Redis last had');
  // Meanwhile another sidecar spends those 5 in Redis.
  for (let i = 0; i < 5; i++) t.equal((await library.take(k, [[op(k, limit, 1)]]))[0]!.status, 'committed', `B: request ${i + 1} allowed`);
  proxy.heal();
  await waitFor('the write-back', () => overAdmitted > 0, 15_000);
  await new Promise((resolve) => setTimeout(resolve, 500)); // anything counted twice would show now
  t.equal(overAdmitted, 5, 'the 5 the policy admitted beyond the 10 are counted, once');
  const [probe] = await library.take(k, [[op(k, limit, 1)]]);
  t.equal(probe!.status, 'denied', 'and the bucket is empty: the debit was recorded');
});
