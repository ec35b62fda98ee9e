/**
 * Local leases (docs/leases.md) on a real Redis: lua/openclaw.lua
 * `lease_hold` step by step (tokens moved, never copied; the bucket refills
 * only up to the burst less what sidecars hold; a dead sidecar's lease ends
 * with its life), then the store layer: a busy key is decided from the lease
 * without Redis calls, exactly; a request is decided from leases only when
 * every op is leased; unspent tokens go back at reload and at close.
 */
import { Redis } from 'ioredis';
import t from 'tap';
import { evaluate } from '../../../src/core/bucket.js';
import { compileLimit } from '../../../src/core/limit.js';
import type { BucketOp, LimitSpec } from '../../../src/core/types.js';
import { RedisLibrary, type LeaseTerms } from '../../../src/store/redis/library.js';
import { startRedis, waitFor } from '../../helpers/redis.js';
import { uniquePrefix } from '../../helpers/store-contract.js';
import { redisStoreFor } from './redis-helper.js';

const redis = await startRedis({ t });
const client = new Redis({ host: redis.host, port: redis.port, lazyConnect: true });
await client.connect();
t.teardown(() => client.quit());
const library = new RedisLibrary(client);
const url = `redis://${redis.host}:${redis.port}`;

const TERMS: LeaseTerms = { ttlUs: 2_000_000, share: 4, minimum: 2 };
// 100 per hour: nothing refills noticeably during a test.
const slow = compileLimit({ requestsPerUnit: 100, unit: 'hour' });
// 1000 per second, burst 100: refills 100 tokens in 100 ms.
const fast = compileLimit({ requestsPerUnit: 1000, unit: 'second', burst: 100 });

const key = (label: string): string => `${uniquePrefix(label)}{tag}k`;
const op = (k: string, limit: LimitSpec, cost = 1): BucketOp => ({ key: k, slotTag: 'tag', limit, cost, shadow: false });

async function takeAll(k: string, limit: LimitSpec, tries: number): Promise<number> {
  let allowed = 0;
  for (let i = 0; i < tries; i++) {
    const [result] = await library.take(k, [[op(k, limit)]]);
    if (result!.status === 'committed') allowed++;
  }
  return allowed;
}

async function takeOnce(k: string, limit: LimitSpec, cost: number): Promise<boolean> {
  const [result] = await library.take(k, [[op(k, limit, cost)]]);
  return result!.status === 'committed';
}

t.test('lease_hold moves tokens: at most a quarter of the bucket per grant, and the bucket holds the rest', async (t) => {
  const k = key('move');
  const [grant] = await library.leaseHold(k, 'a', TERMS, [{ key: k, limit: slow, wanted: 60, held: 0, returned: 0 }]);
  t.equal(grant!.granted, 25, 'a quarter of the 100 the bucket held');
  t.equal(grant!.bucketTokens, 75);
  t.equal(await takeAll(k, slow, 80), 75, 'the bucket decides on what is left: 75');
  const [more] = await library.leaseHold(k, 'b', TERMS, [{ key: k, limit: slow, wanted: 60, held: 0, returned: 0 }]);
  t.equal(more!.granted, 0, 'an empty bucket leases nothing');
});

t.test('inspect says what leases hold out of the bucket: remaining plus leased is the burst', async (t) => {
  const k = key('inspect');
  const { store } = redisStoreFor(t, { redis: url, policy: 'deny' });
  t.ok(await store.waitUntilConnected(10_000), 'connected');
  const [before] = await store.inspect([op(k, slow)]);
  t.same(before, { allowed: true, remaining: 100, resetUs: 0, retryAfterUs: 0 }, 'a full bucket, no lease: no `leased`');
  const [grant] = await library.leaseHold(k, 'a', TERMS, [{ key: k, limit: slow, wanted: 60, held: 0, returned: 0 }]);
  t.equal(grant!.granted, 25);
  const [during] = await store.inspect([op(k, slow)]);
  t.match(during, { allowed: true, remaining: 75, leased: 25 }, 'the 25 leased are named beside the 75 left');
  t.equal(during!.resetUs, 0, 'full as far as the leases leave room (the bucket refills to the burst less what they hold)');
  await store.close();
});

t.test('the bucket refills only up to the burst less what sidecars hold', async (t) => {
  const k = key('cap');
  const [grant] = await library.leaseHold(k, 'a', TERMS, [{ key: k, limit: fast, wanted: 20, held: 0, returned: 0 }]);
  t.equal(grant!.granted, 20);
  t.equal(await takeOnce(k, fast, 80), true, 'the bucket held 80');
  await new Promise((resolve) => setTimeout(resolve, 300)); // far more than a refill of 100
  t.equal(await takeOnce(k, fast, 81), false, 'refilled to 100 − 20 held, not to 100');
  // A take's reply carries what is held: the reference model computes the same outcome Redis did.
  const [result] = await library.take(k, [[op(k, fast, 0)]]);
  const state = result!.states[0]!;
  t.equal(state.outstanding, 20 * fast.levelPerToken, 'the reply carries the held level');
  t.equal(evaluate(fast, state, result!.nowUs, 81).outcome.allowed, false, 'the model agrees: no token beyond 80');
  t.equal(evaluate(fast, state, result!.nowUs, 80).outcome.allowed, true, 'the model agrees: 80 pass');
  t.equal(await takeOnce(k, fast, 80), true, 'and Redis lets 80 pass');
});

t.test('returning gives unspent tokens back; a sidecar cannot give back more than it took', async (t) => {
  const k = key('return');
  await library.leaseHold(k, 'a', TERMS, [{ key: k, limit: slow, wanted: 25, held: 0, returned: 0 }]);
  // It spent 5 of its 25 and gives the 20 left back.
  const [back] = await library.leaseHold(k, 'a', TERMS, [{ key: k, limit: slow, wanted: 0, held: 0, returned: 20 }]);
  t.equal(back!.kept, true, 'its lease was live');
  t.equal(back!.bucketTokens, 95, '75 + the 20 unspent');
  t.equal(await client.hlen(`${k}:sl`), 0, 'nothing held any more');
  t.equal(await takeAll(k, slow, 100), 95, 'spent 5, so 95 left: nothing counted twice');
  const k2 = key('return-more');
  await library.leaseHold(k2, 'b', TERMS, [{ key: k2, limit: slow, wanted: 10, held: 0, returned: 0 }]);
  await takeAll(k2, slow, 50);
  const [over] = await library.leaseHold(k2, 'b', TERMS, [{ key: k2, limit: slow, wanted: 0, held: 0, returned: 1_000 }]);
  t.equal(over!.bucketTokens, 50, 'a return of 1,000 counts only the 10 it took: 40 + 10');
});

t.test('a sidecar that stops calling holds its lease only until it ends in Redis', async (t) => {
  const k = key('dead');
  const short: LeaseTerms = { ...TERMS, ttlUs: 300_000 };
  await library.leaseHold(k, 'dead', short, [{ key: k, limit: fast, wanted: 20, held: 0, returned: 0 }]);
  t.equal(await takeOnce(k, fast, 81), false, 'while it lasts, the bucket holds 80');
  await new Promise((resolve) => setTimeout(resolve, 500)); // the lease ended
  t.equal(await takeOnce(k, fast, 100), true, 'the whole burst again: the dead lease stranded tokens for its life only');
  // Its late call finds no lease: what it says it holds no longer counts.
  const [late] = await library.leaseHold(k, 'dead', short, [{ key: k, limit: fast, wanted: 0, held: 20, returned: 0 }]);
  t.equal(late!.kept, false, 'told that the lease is gone');
});

t.test('a busy key is decided from the lease, exactly, with few Redis calls', async (t) => {
  const k = key('hot');
  const limit = compileLimit({ requestsPerUnit: 100_000, unit: 'year' });
  const { store, counts } = redisStoreFor(t, { redis: url, policy: 'deny' });
  t.ok(await store.waitUntilConnected(10_000), 'connected');
  let fromLease = 0;
  let allowed = 0;
  const n = 6_000;
  for (let i = 0; i < n; i++) {
    const decision = await store.apply([op(k, limit)]);
    if (decision.fromLease === true) fromLease++;
    if (decision.outcomes[0]!.allowed) allowed++;
    if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  t.equal(allowed, n, 'every request allowed (far under the limit)');
  t.ok(fromLease > n / 2, `most decisions from the lease (${fromLease} of ${n})`);
  t.ok((counts.call ?? 0) < n - fromLease + 10, `a Redis take only for what the lease did not decide (${counts.call} calls)`);
  await store.close();
  const [probe] = await library.take(k, [[op(k, limit, 0)]]);
  const left = evaluate(limit, probe!.states[0]!, probe!.nowUs, 0).outcome.remaining;
  t.equal(left, 100_000 - n, 'after close, Redis holds exactly the burst less what was admitted: the unspent lease came back');
  t.equal(await client.hlen(`${k}:sl`), 0, 'no lease left in Redis');
});

t.test('a request is decided from leases only when every op is leased', async (t) => {
  const hot = key('pair-hot');
  const cold = key('pair-cold');
  const limit = compileLimit({ requestsPerUnit: 100_000, unit: 'year' });
  const tiny = compileLimit({ requestsPerUnit: 3, unit: 'hour' });
  const { store } = redisStoreFor(t, { redis: url, policy: 'deny' });
  await waitFor('a lease of the hot key', async () => (await store.apply([op(hot, limit)])).fromLease === true);
  let allowed = 0;
  for (let i = 0; i < 5; i++) {
    const decision = await store.apply([op(hot, limit), op(cold, tiny)]);
    t.not(decision.fromLease, true, 'the cold key has no lease: Redis decides the pair');
    if (decision.outcomes.every((o) => o.allowed)) allowed++;
  }
  t.equal(allowed, 3, 'the pair is admitted while the small limit allows it, exactly');
});

t.test('a reload gives every lease back', async (t) => {
  const k = key('reload');
  const limit = compileLimit({ requestsPerUnit: 100_000, unit: 'year' });
  let returned = 0;
  const { store } = redisStoreFor(t, { redis: url, policy: 'deny', events: { localLeaseReturned: (tokens) => { returned += tokens; } } });
  await waitFor('a lease', async () => (await store.apply([op(k, limit)])).fromLease === true);
  t.equal(await client.hlen(`${k}:sl`), 1, 'the lease is held in Redis');
  store.configChanged?.();
  await waitFor('the lease given back', () => returned > 0);
  t.equal(await client.hlen(`${k}:sl`), 0, 'no lease left in Redis');
});
