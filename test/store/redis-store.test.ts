import t from 'tap';
import type { Test } from 'tap';
import { StoreCallError } from '../../src/errors.js';
import { REFUND_SCRIPT, TOKEN_BUCKET_SCRIPT } from '../../src/store/redis-scripts.js';
import { REFUND_SHA, TOKEN_BUCKET_SHA, createRedisStore } from '../../src/store/redis-store.js';
import type { RedisStore, RedisStoreOptions } from '../../src/store/redis-store.js';
import type { BreakerState } from '../../src/store/circuit-breaker.js';
import { freePort, sleep, startRedis, waitFor } from '../helpers/redis.js';
import type { RedisNode } from '../helpers/redis.js';
import { OpFactory, uniquePrefix } from './contract.js';

const redis = await startRedis({ t });

async function storeFor(t: Test, node: RedisNode, options: Partial<RedisStoreOptions> = {}): Promise<RedisStore> {
  const store = createRedisStore({ url: node.url, ...options });
  t.teardown(() => store.close());
  await waitFor('redis store ready', () => store.health().ready);
  return store;
}

/** Rejection time of a promise in ms, or throws if it resolves. */
async function rejectsWithin(work: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  try {
    await work;
  } catch (error: unknown) {
    return { ms: performance.now() - start, error };
  }
  throw new Error('expected a rejection');
}

t.test('the script SHAs are pinned: changing a script is deliberate', async (t) => {
  t.equal(TOKEN_BUCKET_SHA, '253ea4bd448592e7e98c11a9eb33b64662ca6e87', 'lua/token-bucket.lua');
  t.equal(REFUND_SHA, '87afcc80a02018bdef53c7548d3c6d172c7592bf', 'lua/refund.lua');
  t.equal(TOKEN_BUCKET_SCRIPT.sha, TOKEN_BUCKET_SHA);
  t.equal(REFUND_SCRIPT.sha, REFUND_SHA);
});

t.test('state lives in one integer string per key and expires once the bucket would be full', async (t) => {
  const store = await storeFor(t, redis);
  const f = new OpFactory(uniquePrefix('ttl'));
  const fast = f.op([['api_key', 'ttl']], { requestsPerUnit: 10, unit: 'second', burst: 1 });
  t.match(await store.apply([fast]), [{ allowed: true, remaining: 0 }]);
  t.match(await redis.cli('GET', fast.key), /^\d+:\d{16}$/, 'level:tsUs, no exponent notation');
  const pttl = Number(await redis.cli('PTTL', fast.key));
  t.ok(pttl > 0 && pttl <= 100, `PTTL ${pttl} in (0, 100] ms`);
  await waitFor('key gone after refill', async () => (await redis.cli('EXISTS', fast.key)) === '0', 1_000, 10);

  const year = f.op([['api_key', 'year']], { requestsPerUnit: 1_000, unit: 'year' });
  await store.apply([year]);
  const yearTtl = Number(await redis.cli('PTTL', year.key));
  t.ok(yearTtl > 31_535_000 && yearTtl <= 31_536_000, `one token of 1000/year: PTTL ${yearTtl} ms ≈ 8.76 h`);

  const check = f.op([['api_key', 'check']], { requestsPerUnit: 5, unit: 'hour' }, 0);
  await store.apply([check]);
  t.equal(await redis.cli('EXISTS', check.key), '0', 'check-only on a full bucket writes nothing');

  const fw = f.op([['api_key', 'fw']], { requestsPerUnit: 5, unit: 'minute', algorithm: 'fixed_window' });
  const [outcome] = await store.apply([fw]);
  const fwTtl = Number(await redis.cli('PTTL', fw.key));
  t.ok(fwTtl > 0 && fwTtl <= Math.ceil(outcome!.resetUs / 1000), `fixed window PTTL ${fwTtl} ms ends with the window`);
});

t.test('a denial writes nothing', async (t) => {
  const store = await storeFor(t, redis);
  const f = new OpFactory(uniquePrefix('deny'));
  const op = f.op([['api_key', 'd']], { requestsPerUnit: 1, unit: 'hour' });
  await store.apply([op]);
  const before = await redis.cli('GET', op.key);
  t.match(await store.apply([op]), [{ allowed: false }]);
  t.equal(await redis.cli('GET', op.key), before);
});

t.test('SCRIPT FLUSH: the next calls fall back to EVAL without a failed decision', async (t) => {
  // Recovery is under test, not the 50 ms deadline (EVALSHA -> NOSCRIPT -> EVAL is two round trips).
  const store = await storeFor(t, redis, { timeoutMs: 2_000 });
  const f = new OpFactory(uniquePrefix('flush'));
  const op = f.op([['api_key', 'f']], { requestsPerUnit: 100, unit: 'hour' });
  await store.apply([op]);
  t.equal(await redis.cli('SCRIPT', 'EXISTS', TOKEN_BUCKET_SHA), '1');
  await redis.cli('SCRIPT', 'FLUSH');
  t.equal(await redis.cli('SCRIPT', 'EXISTS', TOKEN_BUCKET_SHA), '0');
  const outcomes = await Promise.all(Array.from({ length: 20 }, () => store.apply([op])));
  t.equal(outcomes.length, 20, 'every call succeeded');
  t.equal(await redis.cli('SCRIPT', 'EXISTS', TOKEN_BUCKET_SHA), '1', 'reloaded');
  t.equal(store.breakerState, 'closed');
});

t.test('a cross-slot denial leaves every bucket as it was (one atomic call on a single node)', async (t) => {
  const store = await storeFor(t, redis);
  const f = new OpFactory(uniquePrefix('refund'));
  const wide = f.op([['remote_address', '10.1.1.1']], { requestsPerUnit: 5, unit: 'hour' });
  const fw = f.op([['user', 'u1']], { requestsPerUnit: 5, unit: 'hour', algorithm: 'fixed_window' });
  const narrow = f.op([['api_key', 'r']], { requestsPerUnit: 1, unit: 'hour' });
  t.not(wide.slotTag, narrow.slotTag);
  t.not(fw.slotTag, narrow.slotTag);
  await store.apply([narrow]);
  const denied = await store.apply([wide, fw, narrow]);
  t.match(denied, [{ allowed: true, remaining: 5 }, { allowed: true, remaining: 5 }, { allowed: false }]);
  t.equal(await redis.cli('EXISTS', wide.key), '0', 'token bucket full again: key deleted');
  t.equal(await redis.cli('EXISTS', fw.key), '0', 'window count back to 0: key deleted');

  await store.apply([wide, fw]);
  const level = await redis.cli('GET', wide.key);
  const count = await redis.cli('GET', fw.key);
  await store.apply([wide, fw, narrow]);
  // The same bucket: the level at a common instant (level - ts * refill / tick) is unchanged.
  const timeless = (value: string): number => {
    const [l, ts] = value.split(':').map(Number) as [number, number];
    return l - (ts * wide.limit.refillPerTick) / wide.limit.tickUs;
  };
  t.equal(timeless(await redis.cli('GET', wide.key)), timeless(level), 'level restored exactly');
  t.equal(await redis.cli('GET', fw.key), count, 'window count restored');
  t.match(await store.apply([{ ...wide, cost: 0 }, { ...fw, cost: 0 }]), [{ remaining: 4 }, { remaining: 4 }]);
});

t.test('apply rejects near its deadline when Redis does not answer', async (t) => {
  const store = await storeFor(t, redis, { timeoutMs: 50 });
  const f = new OpFactory(uniquePrefix('deadline'));
  const op = f.op([['api_key', 'p']], { requestsPerUnit: 100, unit: 'hour' });
  await redis.cli('CLIENT', 'PAUSE', '700', 'ALL');
  const { ms, error } = await rejectsWithin(store.apply([op]));
  t.type(error, StoreCallError);
  t.match((error as Error).message, /deadline/);
  t.ok(ms >= 45 && ms < 300, `rejected after ${ms.toFixed(1)} ms (deadline 50 ms)`);
  await sleep(800);
  t.match(await store.apply([op]), [{ allowed: true }], 'works again when Redis answers');
});

t.test('the circuit breaker opens on a hung Redis, refuses fast, probes and closes', async (t) => {
  const node = await startRedis({ t });
  const store = await storeFor(t, node, { timeoutMs: 50, breaker: { failureThreshold: 3, coolDownMs: 300 } });
  const states: BreakerState[] = [];
  store.onStateChange((state) => states.push(state));
  const f = new OpFactory(uniquePrefix('breaker'));
  const op = f.op([['api_key', 'b']], { requestsPerUnit: 100, unit: 'hour' });
  await node.kill('SIGSTOP');
  t.teardown(() => node.kill('SIGCONT'));
  for (let i = 0; i < 3; i++) await t.rejects(store.apply([op]), StoreCallError);
  t.equal(store.breakerState, 'open');
  t.match(store.health(), { ready: false, fallbackActive: true, detail: /breaker open/ });
  const fast = await rejectsWithin(store.apply([op]));
  t.match((fast.error as Error).message, /circuit breaker is open/);
  t.ok(fast.ms < 5, `refused in ${fast.ms.toFixed(2)} ms while open`);
  await node.kill('SIGCONT');
  await sleep(350);
  t.match(await store.apply([op]), [{ allowed: true }], 'the probe succeeds');
  t.same(states, ['open', 'half_open', 'closed']);
  t.match(store.health(), { ready: true, fallbackActive: false });
});

t.test('the breaker recovers after Redis is killed and restarted', async (t) => {
  const node = await startRedis({ t });
  const store = await storeFor(t, node, { timeoutMs: 50, breaker: { failureThreshold: 3, coolDownMs: 200 } });
  const f = new OpFactory(uniquePrefix('restart'));
  const op = f.op([['api_key', 'r']], { requestsPerUnit: 100, unit: 'hour' });
  await store.apply([op]);
  await node.kill('SIGKILL');
  const down = await rejectsWithin(store.apply([op]));
  t.type(down.error, StoreCallError);
  t.ok(down.ms < 60, `a dead Redis fails in ${down.ms.toFixed(1)} ms`);
  for (let i = 0; i < 3; i++) await store.apply([op]).catch(() => undefined);
  t.equal(store.breakerState, 'open');
  await node.restart();
  const start = performance.now();
  await waitFor('decisions again', async () => (await store.apply([op])).length === 1, 5_000, 50);
  t.ok(true, `recovered ${(performance.now() - start).toFixed(0)} ms after restart`);
  t.equal(store.breakerState, 'closed');
  t.equal(store.health().ready, true);
});

t.test('a Redis unreachable at start: apply fails fast, then works once Redis starts', async (t) => {
  const port = await freePort();
  const store = createRedisStore({ url: `redis://127.0.0.1:${port}`, timeoutMs: 50 });
  t.teardown(() => store.close());
  const f = new OpFactory(uniquePrefix('late'));
  const op = f.op([['api_key', 'l']], { requestsPerUnit: 100, unit: 'hour' });
  const early = await rejectsWithin(store.apply([op]));
  t.type(early.error, StoreCallError);
  t.ok(early.ms < 100, `rejected in ${early.ms.toFixed(1)} ms`);
  t.match(store.health(), { ready: false });
  await startRedis({ t, port });
  await waitFor('decisions once Redis is up', async () => (await store.apply([op])).length === 1, 5_000, 50);
  t.match(store.health(), { ready: true, fallbackActive: false });
});

t.test('two sidecars sharing one Redis enforce one limit', async (t) => {
  const one = await storeFor(t, redis);
  const two = await storeFor(t, redis);
  const f = new OpFactory(uniquePrefix('shared'));
  const op = f.op([['api_key', 's']], { requestsPerUnit: 50, unit: 'hour' });
  const outcomes = (await Promise.all([
    ...Array.from({ length: 60 }, () => one.apply([op])),
    ...Array.from({ length: 60 }, () => two.apply([op])),
  ])).flat();
  t.equal(outcomes.filter((o) => o.allowed).length, 50);
});

t.test('connection options: password, db number and bad addresses', async (t) => {
  const secured = await startRedis({ t, args: ['--requirepass', 's3cret'] });
  const f = new OpFactory(uniquePrefix('auth'));
  const op = f.op([['api_key', 'a']], { requestsPerUnit: 5, unit: 'hour' });
  const store = await storeFor(t, secured, { url: `redis://:s3cret@127.0.0.1:${secured.port}/2` });
  t.match(await store.apply([op]), [{ allowed: true, remaining: 4 }]);
  t.equal(await secured.cli('-a', 's3cret', '-n', '2', 'EXISTS', op.key), '1', 'written to db 2');
  const separate = await storeFor(t, secured, { url: `redis://127.0.0.1:${secured.port}`, username: 'default', password: 's3cret' });
  t.match(await separate.apply([op]), [{ allowed: true, remaining: 4 }], 'db 0 is another keyspace');

  t.throws(() => createRedisStore({}), TypeError);
  t.throws(() => createRedisStore({ url: redis.url, cluster: '127.0.0.1:7000' }), TypeError);
  t.throws(() => createRedisStore({ url: 'http://127.0.0.1:6379' }), TypeError);
  t.throws(() => createRedisStore({ cluster: '127.0.0.1:notaport' }), TypeError);
  t.equal(createRedisStoreKeyPrefix(), 'rl:', 'default key prefix');
});

function createRedisStoreKeyPrefix(): string {
  const store = createRedisStore({ url: redis.url });
  const prefix = store.keyPrefix;
  void store.close();
  return prefix;
}

t.test('after close, apply rejects; close is idempotent', async (t) => {
  const store = await storeFor(t, redis);
  await store.close();
  await store.close();
  const op = new OpFactory(uniquePrefix('closed')).op([['a', 'b']], { requestsPerUnit: 1, unit: 'hour' });
  await t.rejects(store.apply([op]), StoreCallError);
});
