/**
 * The lease operations of lua/openclaw.lua (global limits, SPEC §11) on a
 * real Redis, step by step: what the home bucket holds back, what a spend
 * report releases, what a lease may spend. One redis-server plays both the
 * home region (bucket `<key>:g`) and a region (lease `<key>:lease:b`).
 */
import { Redis } from 'ioredis';
import t from 'tap';
import { compileLimit } from '../../../src/core/limit.js';
import type { BucketOp, LimitSpec } from '../../../src/core/types.js';
import { RedisLibrary } from '../../../src/store/redis/library.js';
import { startRedis } from '../../helpers/redis.js';
import { uniquePrefix } from '../../helpers/store-contract.js';

const redis = await startRedis({ t });
const client = new Redis({ host: redis.host, port: redis.port, lazyConnect: true });
await client.connect();
t.teardown(() => client.quit());
const library = new RedisLibrary(client);

// 10 per hour, burst 10: nothing refills noticeably during a test.
// The home bucket's spec, as global-limits.ts routes a global op in its home region.
const limit = { ...compileLimit({ requestsPerUnit: 10, unit: 'hour', scope: 'global' }), algorithm: 'home_bucket' as const };
const lease = { ...limit, algorithm: 'lease' as const };
const TTL_US = 5_000_000;

function keys() {
  const base = `${uniquePrefix('lease')}{tag}k`;
  return { home: `${base}:g`, lease: `${base}:lease:b` };
}

const take = (key: string, cost: number, spec: LimitSpec = limit): BucketOp => ({ key, slotTag: 'tag', limit: spec, cost, shadow: false });

async function decide(op: BucketOp): Promise<boolean> {
  const [result] = await library.take(op.key, [[op]]);
  return result!.status === 'committed';
}

t.test('a grant moves tokens: the home bucket holds back what the lease holds', async (t) => {
  const k = keys();
  const { granted, gens } = await library.leaseGrant(k.home, 'b', TTL_US, [{ key: k.home, limit, wanted: 6, spent: 0, gen: 0 }]);
  t.same(granted, [6], 'six tokens moved to region b');
  t.equal(gens[0], 1, 'a first lease is generation 1');
  // The home region decides on what is left: 4.
  let allowed = 0;
  for (let i = 0; i < 6; i++) if (await decide(take(k.home, 1))) allowed++;
  t.equal(allowed, 4, 'bucket plus lease never exceed the burst: 10 − 6 = 4 at home');
  const more = await library.leaseGrant(k.home, 'b', TTL_US, [{ key: k.home, limit, wanted: 5, spent: 0, gen: 1 }]);
  t.same(more.granted, [0], 'nothing left to grant');
});

t.test('a deposit makes a lease; spending it takes tokens and records what was spent', async (t) => {
  const k = keys();
  await library.leaseGrant(k.home, 'b', TTL_US, [{ key: k.home, limit, wanted: 3, spent: 0, gen: 0 }]);
  await library.leaseDeposit(k.lease, [{ key: k.lease, tokens: 3, ttlUs: TTL_US - 500_000, gen: 1 }]);
  const spends = [];
  for (let i = 0; i < 4; i++) spends.push(await decide(take(k.lease, 1, lease)));
  t.same(spends, [true, true, true, false], 'exactly the three leased tokens');
  t.match(await client.get(k.lease), /^0:\d+:1:3$/, 'the empty lease stays, with 3 spent to report');
  const claims = await library.leaseClaim(k.lease, [k.lease], 2_000_000);
  t.same(claims, [{ claimed: true, spent: 3, gen: 1 }], 'a claim takes the report');
  t.match(await client.get(k.lease), /^0:\d+:1:0$/, 'and resets it');
  t.same(await library.leaseClaim(k.lease, [k.lease], 2_000_000), [{ claimed: false, spent: 0, gen: 0 }], 'one claim at a time');
});

t.test('a spend report releases the spent tokens: the home bucket may refill into that room again', async (t) => {
  const k = keys();
  // The bucket refills quickly here: 100/second.
  const fast = { ...compileLimit({ requestsPerUnit: 100, unit: 'second', burst: 10, scope: 'global' }), algorithm: 'home_bucket' as const };
  await library.leaseGrant(k.home, 'b', TTL_US, [{ key: k.home, limit: fast, wanted: 10, spent: 0, gen: 0 }]);
  await new Promise((resolve) => setTimeout(resolve, 150)); // 15 tokens' worth of refill time
  const blocked = await library.leaseGrant(k.home, 'c', TTL_US, [{ key: k.home, limit: fast, wanted: 10, spent: 0, gen: 0 }]);
  t.same(blocked.granted, [0], 'no refill while b holds the whole burst');
  // b reports all 10 spent (same generation): released.
  const released = await library.leaseGrant(k.home, 'b', TTL_US, [{ key: k.home, limit: fast, wanted: 0, spent: 10, gen: 1 }]);
  t.same(released.granted, [0], 'asking nothing grants nothing');
  await new Promise((resolve) => setTimeout(resolve, 150));
  const after = await library.leaseGrant(k.home, 'c', TTL_US, [{ key: k.home, limit: fast, wanted: 10, spent: 0, gen: 0 }]);
  t.ok(after.granted[0]! >= 9, `after the report the bucket refilled: c was granted ${after.granted[0]}`);
});

t.test('a report of another generation releases nothing (its lease had expired at home)', async (t) => {
  const k = keys();
  await library.leaseGrant(k.home, 'b', TTL_US, [{ key: k.home, limit, wanted: 4, spent: 0, gen: 0 }]);
  await library.leaseGrant(k.home, 'b', TTL_US, [{ key: k.home, limit, wanted: 0, spent: 4, gen: 7 }]);
  let allowed = 0;
  for (let i = 0; i < 10; i++) if (await decide(take(k.home, 1))) allowed++;
  t.equal(allowed, 6, 'the four stay held: 10 − 4');
});

t.test('a lease expires: spending stops at its expiry, and the home stops counting it at its own (later) one', async (t) => {
  const k = keys();
  await library.leaseGrant(k.home, 'b', 400_000, [{ key: k.home, limit, wanted: 5, spent: 0, gen: 0 }]);
  await library.leaseDeposit(k.lease, [{ key: k.lease, tokens: 5, ttlUs: 200_000, gen: 1 }]);
  t.ok(await decide(take(k.lease, 1, lease)), 'spendable while valid');
  await new Promise((resolve) => setTimeout(resolve, 250));
  t.notOk(await decide(take(k.lease, 1, lease)), 'not after its expiry in the region');
  let home = 0;
  for (let i = 0; i < 10; i++) if (await decide(take(k.home, 1))) home++;
  t.equal(home, 5, 'the home still holds the 5 back until its own expiry');
  await new Promise((resolve) => setTimeout(resolve, 200));
  const regrant = await library.leaseGrant(k.home, 'c', TTL_US, [{ key: k.home, limit, wanted: 5, spent: 0, gen: 0 }]);
  t.same(regrant.granted, [0], 'an expired lease frees room, which the bucket refills only at its rate (10/hour: nothing yet)');
});
