import t from 'tap';
import type { Test } from 'tap';
import { MemoryStore } from '../../../src/store/memory-store.js';
import { LIBRARY_LUA, LIBRARY_SHA } from '../../../src/store/redis/library.js';
import { SettingsError, StoreUnavailableError } from '../../../src/errors.js';
import { createRedisStore } from '../../../src/store/redis/redis-store.js';
import { freePort, startRedis, unlessHung, waitFor } from '../../helpers/redis.js';
import type { RedisNode } from '../../helpers/redis.js';
import { OpFactory, uniquePrefix } from '../../helpers/store-contract.js';
import { redisStoreFor } from './redis-helper.js';

const redis = await startRedis({ t });

async function ready(t: Test, node: RedisNode, options: Parameters<typeof redisStoreFor>[1] = {}) {
  const made = redisStoreFor(t, { redis: node.url, ...options });
  await waitFor('redis store ready', () => made.store.health().ready);
  return made;
}

/**
 * A hang detector, not a speed check: 100 times the 50 ms deadline (and 10 times
 * the longest a lagging event loop may stretch it). Nothing here asserts how fast
 * an answer comes; load only makes answers later, never wrong.
 */
const HANG_GUARD_MS = 5_000;

/** The rejection of `work` and the ms it took (to print, and for lower bounds); throws if it resolves or hangs. */
async function rejection(work: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  try {
    await unlessHung(work, 'the decision', HANG_GUARD_MS);
  } catch (error: unknown) {
    return { ms: performance.now() - start, error };
  }
  throw new Error('expected a rejection');
}

function busyWaitMs(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* the event loop is blocked, as on a saturated sidecar */ }
}

async function scriptCalls(node: RedisNode): Promise<number> {
  const stats = await node.cli('INFO', 'commandstats');
  const calls = (name: string): number => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
  return calls('evalsha') + calls('eval');
}

t.test('the library script is pinned: changing it is deliberate (and changes its SHA for EVALSHA)', async (t) => {
  t.equal(LIBRARY_SHA, '1494056759873a80b1d44a967cca52d83820cc7b', 'lua/openclaw.lua');
  t.match(LIBRARY_LUA, /^#!lua flags=allow-cross-slot-keys\n/, 'the shebang Redis reads the flag from');
});

t.test('state lives in one integer string per key and expires once the bucket would be full', async (t) => {
  const { apply } = await ready(t, redis);
  const f = new OpFactory(uniquePrefix('ttl'));
  // Full again 1 s after the take (not after its 1-minute unit): 1 s for the two reads below, even on a loaded machine.
  const fast = f.op([['api_key', 'ttl']], { requestsPerUnit: 60, unit: 'minute', burst: 1 });
  t.match(await apply([fast]), [{ allowed: true, remaining: 0 }]);
  t.match(await redis.cli('GET', fast.key), /^\d+:\d{16}$/, 'level:tsUs, no exponent notation');
  const pttl = Number(await redis.cli('PTTL', fast.key));
  t.ok(pttl > 0 && pttl <= 1_000, `PTTL ${pttl} in (0, 1000] ms: the time to refill one token, not the unit`);
  await waitFor('key gone after refill', async () => (await redis.cli('EXISTS', fast.key)) === '0', HANG_GUARD_MS, 10);

  const year = f.op([['api_key', 'year']], { requestsPerUnit: 1_000, unit: 'year' });
  await apply([year]);
  const yearTtl = Number(await redis.cli('PTTL', year.key));
  t.ok(yearTtl > 31_535_000 && yearTtl <= 31_536_000, `one token of 1000/year: PTTL ${yearTtl} ms ≈ 8.76 h`);

  const check = f.op([['api_key', 'check']], { requestsPerUnit: 5, unit: 'hour' }, 0);
  await apply([check]);
  t.equal(await redis.cli('EXISTS', check.key), '0', 'check-only on a full bucket writes nothing');

  const fw = f.op([['api_key', 'fw']], { requestsPerUnit: 5, unit: 'minute', algorithm: 'fixed_window' });
  const [outcome] = await apply([fw]);
  const fwTtl = Number(await redis.cli('PTTL', fw.key));
  t.ok(fwTtl > 0 && fwTtl <= Math.ceil(outcome!.resetUs / 1000), `fixed window PTTL ${fwTtl} ms ends with the window`);
});

t.test('a denial writes nothing', async (t) => {
  const { apply } = await ready(t, redis, { mirror: false });
  const f = new OpFactory(uniquePrefix('deny'));
  const op = f.op([['api_key', 'd']], { requestsPerUnit: 1, unit: 'hour' });
  await apply([op]);
  const before = await redis.cli('GET', op.key);
  t.match(await apply([op]), [{ allowed: false }]);
  t.equal(await redis.cli('GET', op.key), before);
});

t.test('SCRIPT FLUSH: the next calls fall back to EVAL without a failed decision, at the default deadline', async (t) => {
  const { apply, counts } = await ready(t, redis);
  const f = new OpFactory(uniquePrefix('flush'));
  const op = f.op([['api_key', 'f']], { requestsPerUnit: 100, unit: 'hour' });
  await apply([op]);
  t.equal(await redis.cli('SCRIPT', 'EXISTS', LIBRARY_SHA), '1');
  await redis.cli('SCRIPT', 'FLUSH');
  t.equal(await redis.cli('SCRIPT', 'EXISTS', LIBRARY_SHA), '0');
  const outcomes = await Promise.all(Array.from({ length: 20 }, () => apply([op])));
  t.equal(outcomes.filter((o) => o[0]!.allowed).length, 20, 'every decision came from Redis and allowed');
  t.equal(await redis.cli('SCRIPT', 'EXISTS', LIBRARY_SHA), '1', 'reloaded');
  t.equal(counts['fallbackDecision'] ?? 0, 0);
});

t.test('a cross-slot denial leaves every bucket as it was (one atomic call on a single node)', async (t) => {
  const { apply } = await ready(t, redis, { mirror: false });
  const f = new OpFactory(uniquePrefix('refund'));
  const wide = f.op([['remote_address', '10.1.1.1']], { requestsPerUnit: 5, unit: 'hour' });
  const fw = f.op([['user', 'u1']], { requestsPerUnit: 5, unit: 'hour', algorithm: 'fixed_window' });
  const narrow = f.op([['api_key', 'r']], { requestsPerUnit: 1, unit: 'hour' });
  t.not(wide.slotTag, narrow.slotTag);
  await apply([narrow]);
  t.match(await apply([wide, fw, narrow]), [{ allowed: true, remaining: 5 }, { allowed: true, remaining: 5 }, { allowed: false }]);
  t.equal(await redis.cli('EXISTS', wide.key), '0', 'token bucket full again: key deleted');
  t.equal(await redis.cli('EXISTS', fw.key), '0', 'window count back to 0: key deleted');
  t.match(await apply([{ ...wide, cost: 0 }, { ...fw, cost: 0 }]), [{ remaining: 5 }, { remaining: 5 }]);
});

t.test('a deadline counts from the write: time a request waits inside a busy sidecar is not Redis time', async (t) => {
  const { apply, counts, states } = await ready(t, redis);
  const f = new OpFactory(uniquePrefix('queued'));
  const op = f.op([['api_key', 'q']], { requestsPerUnit: 100, unit: 'hour' });
  const pending = apply([op]);
  busyWaitMs(200); // the loop is busy before the call is written (4x the 50 ms deadline)
  t.match(await pending, [{ allowed: true }], 'decided by Redis');
  t.equal(counts['fallbackDecision'] ?? 0, 0);
  t.same([...states.values()].flat(), [], 'the breaker never moved');
});

t.test('a reply already in the socket is never late because the loop was busy after the write', async (t) => {
  const { apply, counts, states } = await ready(t, redis);
  const f = new OpFactory(uniquePrefix('lagged'));
  const op = f.op([['api_key', 'l']], { requestsPerUnit: 100, unit: 'hour' });
  let verdicts = 0;
  for (let round = 0; round < 5; round++) {
    const pending = apply([op]);
    // Queued after the batcher's flush: runs right after the call is written.
    setImmediate(() => busyWaitMs(150));
    await pending;
    verdicts++;
  }
  t.equal(verdicts, 5, 'every round decided by Redis');
  t.equal(counts['fallbackDecision'] ?? 0, 0, 'no failure policy');
  t.same([...states.values()].flat(), [], 'the breaker never moved');
});

t.test('Redis that really does not answer: the deadline holds (deny policy: refused at the deadline, the reply counted late)', async (t) => {
  const node = await startRedis({ t });
  const { store, counts } = await ready(t, node);
  const f = new OpFactory(uniquePrefix('deadline'));
  const op = f.op([['api_key', 'p']], { requestsPerUnit: 100, unit: 'hour' });
  // SIGSTOP, not CLIENT PAUSE: Redis answers only after SIGCONT, so only the deadline can end the call.
  await node.kill('SIGSTOP');
  t.teardown(() => node.kill('SIGCONT'));
  const { ms, error } = await rejection(Promise.resolve(store.apply([op])));
  t.type(error, StoreUnavailableError, 'the deny policy refused');
  t.match((error as Error).message, /not answered within its 50 ms deadline/);
  t.ok(ms >= 45, `refused after ${ms.toFixed(1)} ms: not before the 50 ms deadline`);
  t.equal(counts['timeout'], 1, 'one call missed its deadline');
  await node.kill('SIGCONT');
  await waitFor('the late reply', () => (counts['lateReply'] ?? 0) === 1, HANG_GUARD_MS, 10);
  t.match((await store.apply([op])).outcomes, [{ allowed: true }], 'works again when Redis answers');
});

t.test('the circuit breaker opens on a hung Redis, refuses without a call, probes and closes', async (t) => {
  const node = await startRedis({ t });
  const { store, states, counts } = await ready(t, node, { breaker: { failureThreshold: 3 } });
  const f = new OpFactory(uniquePrefix('breaker'));
  const op = f.op([['api_key', 'b']], { requestsPerUnit: 100, unit: 'hour' });
  await node.kill('SIGSTOP');
  t.teardown(() => node.kill('SIGCONT'));
  for (let i = 0; i < 3; i++) await t.rejects(Promise.resolve(store.apply([op])), StoreUnavailableError);
  t.same(states.get(`127.0.0.1:${node.port}`), ['open']);
  t.match(store.health(), { ready: false, detail: /unavailable: 127\.0\.0\.1/ });
  const callsWhileClosed = counts['call'];
  t.equal(callsWhileClosed, 3, 'the three failed calls');
  const refused = await rejection(Promise.resolve(store.apply([op])));
  t.match((refused.error as Error).message, /circuit open/);
  t.comment(`refused in ${refused.ms.toFixed(2)} ms while open`);
  await node.kill('SIGCONT');
  await waitFor('probe closes the breaker', () => store.health().ready, HANG_GUARD_MS, 20);
  t.same(states.get(`127.0.0.1:${node.port}`), ['open', 'closed'], 'closed by a background probe, no decision was the probe');
  // A call sent while open would have ended by now (at its deadline, or answered after SIGCONT, before the probe).
  t.equal(counts['call'], callsWhileClosed, 'the refusal sent no script call to the hung Redis (it waited for nothing)');
  t.equal(counts['timeout'], 3, 'no deadline ran out but the three failed calls\'');
  t.match((await store.apply([op])).outcomes, [{ allowed: true }]);
});

t.test('a logger that throws while a timed-out call is answered strands none of the call\'s requests', async (t) => {
  const node = await startRedis({ t });
  const throwing = { info() {}, error() {}, warn() { throw new Error('logger is broken'); } };
  const { store } = await ready(t, node, { policy: 'allow', logger: throwing });
  const f = new OpFactory(uniquePrefix('logger'));
  const ops = ['a', 'b', 'c'].map((key) => f.op([['api_key', key]], { requestsPerUnit: 10, unit: 'hour' }));
  await node.kill('SIGSTOP');
  t.teardown(() => node.kill('SIGCONT'));
  // One turn: the three go out in one script call, which misses its deadline; the first answer's log throws.
  const settled = await unlessHung(Promise.all(ops.map((op) => store.apply([op]))), 'the call\'s requests', HANG_GUARD_MS);
  t.same(settled.map((d) => d.fallback), ['allow', 'allow', 'allow'], 'every request of the call was answered, each by the policy');
});

t.test('local policy after a hang: what Redis reported spent is never granted again (6 of 10 spent → at most 4)', async (t) => {
  const node = await startRedis({ t });
  const { store } = await ready(t, node, { policy: 'local' });
  const f = new OpFactory(uniquePrefix('hang'));
  const op = f.op([['api_key', 'h']], { requestsPerUnit: 10, unit: 'hour' });
  for (let i = 0; i < 6; i++) t.equal((await store.apply([op])).fallback, undefined, 'Redis decided');
  await node.kill('SIGSTOP');
  t.teardown(() => node.kill('SIGCONT'));
  let allowed = 0;
  for (let i = 0; i < 10; i++) {
    const decision = await store.apply([op]);
    // Allowed only by the local policy; once the local state is empty, the mirror denies without trying Redis.
    if (decision.outcomes[0]!.allowed) {
      t.equal(decision.fallback, 'local');
      allowed++;
    }
  }
  t.equal(allowed, 4, 'exactly the 4 tokens Redis had left');
});

t.test('a late reply still teaches the local state and counts what the local policy over-admitted', async (t) => {
  const node = await startRedis({ t });
  const a = await ready(t, node, { policy: 'local' });
  const b = await ready(t, node, { policy: 'local' });
  const f = new OpFactory(uniquePrefix('late'));
  const op = f.op([['api_key', 'late']], { requestsPerUnit: 3, unit: 'hour' });
  for (let i = 0; i < 3; i++) await b.apply([op]); // another sidecar spends the bucket; `a` never saw it
  // SIGSTOP, not CLIENT PAUSE: however late a loaded loop lets the deadline run, Redis answers only after it.
  await node.kill('SIGSTOP');
  t.teardown(() => node.kill('SIGCONT'));
  const decision = await a.store.apply([op]);
  t.match(decision, { fallback: 'local', outcomes: [{ allowed: true }] }, 'Redis too slow: the local policy admitted');
  await node.kill('SIGCONT');
  await waitFor('the late reply', () => (a.counts['lateReply'] ?? 0) === 1, HANG_GUARD_MS, 10);
  t.equal(a.counts['fallbackOverAdmitted'], 1, 'Redis had denied it: one over-admission counted');
  const next = await a.store.apply([op]);
  t.match(next, { fallback: undefined, outcomes: [{ allowed: false }] }, 'the late reply taught the mirror: denied locally');
  t.equal(a.counts['localDenial'], 1);
});

t.test('the mirror denies an exhausted key without a Redis call, and only what Redis said', async (t) => {
  const { apply, counts } = await ready(t, redis);
  const f = new OpFactory(uniquePrefix('mirror'));
  const op = f.op([['api_key', 'm']], { requestsPerUnit: 10, unit: 'hour' });
  const other = f.op([['api_key', 'other']], { requestsPerUnit: 10, unit: 'hour' });
  for (let i = 0; i < 10; i++) await apply([op]);
  const before = await scriptCalls(redis);
  const [denied] = await apply([op]);
  t.match(denied, { allowed: false, remaining: 0 });
  t.ok(denied!.retryAfterUs > 350_000_000 && denied!.retryAfterUs <= 360_000_000, 'one token of 10/hour: 6 minutes');
  t.equal(await scriptCalls(redis), before, 'no Redis call');
  t.equal(counts['localDenial'], 1);
  t.match(await apply([other]), [{ allowed: true, remaining: 9 }], 'another key still goes to Redis');
});

t.test('regression: a request carrying 11 copies of a 10/hour descriptor does not make the bucket look empty', async (t) => {
  const { apply } = await ready(t, redis);
  const f = new OpFactory(uniquePrefix('copies'));
  const op = f.op([['api_key', 'shared']], { requestsPerUnit: 10, unit: 'hour' });
  const eleven = await apply(Array.from({ length: 11 }, () => op));
  t.equal(eleven.filter((o) => !o.allowed).length >= 1, true, 'denied: 11 tokens asked of a bucket of 10');
  t.match(await apply([op]), [{ allowed: true, remaining: 9 }], 'the next single request sees the full bucket');
});

t.test('the breaker recovers after Redis is killed and restarted', async (t) => {
  const node = await startRedis({ t });
  const { store, counts } = await ready(t, node, { breaker: { failureThreshold: 3 } });
  const f = new OpFactory(uniquePrefix('restart'));
  const op = f.op([['api_key', 'r']], { requestsPerUnit: 100, unit: 'hour' });
  await store.apply([op]);
  await node.kill('SIGKILL');
  const down = await rejection(Promise.resolve(store.apply([op])));
  t.type(down.error, StoreUnavailableError);
  t.notMatch((down.error as Error).message, /deadline/, `a dead Redis fails at once, from the closed connection: ${(down.error as Error).message}`);
  t.equal(counts['timeout'] ?? 0, 0, 'no call waited for its deadline (nothing queued for a Redis that is gone)');
  t.comment(`a dead Redis failed in ${down.ms.toFixed(1)} ms`);
  for (let i = 0; i < 3; i++) await Promise.resolve(store.apply([op])).catch(() => undefined);
  t.equal(store.health().ready, false);
  await node.restart();
  const start = performance.now();
  await waitFor('decisions again', async () => (await store.apply([op])).fallback === undefined, 5_000, 50);
  t.ok(true, `recovered ${(performance.now() - start).toFixed(0)} ms after restart`);
  t.equal(store.health().ready, true);
});

t.test('a Redis unreachable at start: the policy decides at once, then Redis once it starts', async (t) => {
  const port = await freePort();
  const { store, counts } = redisStoreFor(t, { redis: `redis://127.0.0.1:${port}`, policy: 'local' });
  const f = new OpFactory(uniquePrefix('late-start'));
  const op = f.op([['api_key', 'l']], { requestsPerUnit: 100, unit: 'hour' });
  const start = performance.now();
  // Redis is started only after this answer: a request held until Redis is up would hang here.
  const early = await unlessHung(Promise.resolve(store.apply([op])), 'the first decision', HANG_GUARD_MS);
  t.match(early, { fallback: 'local', outcomes: [{ allowed: true }] }, 'decided by the policy while nothing listens');
  t.equal(counts['timeout'] ?? 0, 0, 'decided without waiting for a deadline (nothing queued for a Redis not yet there)');
  t.comment(`decided in ${(performance.now() - start).toFixed(1)} ms`);
  t.match(store.health(), { ready: false });
  await startRedis({ t, port });
  await waitFor('decisions from Redis once it is up', async () => (await store.apply([op])).fallback === undefined, 5_000, 50);
  t.match(store.health(), { ready: true });
});

t.test('two sidecars sharing one Redis enforce one limit', async (t) => {
  const one = await ready(t, redis);
  const two = await ready(t, redis);
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
  const store = await ready(t, secured, { redis: `redis://:s3cret@127.0.0.1:${secured.port}/2` });
  t.match(await store.apply([op]), [{ allowed: true, remaining: 4 }]);
  t.equal(await secured.cli('-a', 's3cret', '-n', '2', 'EXISTS', op.key), '1', 'written to db 2');
  const separate = await ready(t, secured, { redis: `redis://127.0.0.1:${secured.port}`, redisUsername: 'default', redisPassword: 's3cret' });
  t.match(await separate.apply([op]), [{ allowed: true, remaining: 4 }], 'db 0 is another keyspace');

  const base = { redisTimeoutMs: 50, onStoreFailure: 'deny', fallbackDivisor: 1, redisKeyPrefix: 'rl:', local: new MemoryStore({ maxKeys: 10 }), mirror: true } as const;
  t.throws(() => createRedisStore({ ...base }), SettingsError);
  t.throws(() => createRedisStore({ ...base, redis: redis.url, redisCluster: ['127.0.0.1:7000'] }), SettingsError);
  t.throws(() => createRedisStore({ ...base, redis: 'http://127.0.0.1:6379' }), SettingsError);
  t.throws(() => createRedisStore({ ...base, redisCluster: ['127.0.0.1:notaport'] }), SettingsError);
});

t.test('after close, the failure policy decides; close is idempotent', async (t) => {
  const { store } = await ready(t, redis);
  await store.close();
  await store.close();
  const op = new OpFactory(uniquePrefix('closed')).op([['a', 'b']], { requestsPerUnit: 1, unit: 'hour' });
  await t.rejects(Promise.resolve(store.apply([op])), StoreUnavailableError);
});

t.test('regression: values that differ only in invalid UTF-8 bytes are three buckets in Redis, not one', async (t) => {
  const { apply } = await ready(t, redis);
  const f = new OpFactory(uniquePrefix('bytes'));
  const limit = { requestsPerUnit: 10, unit: 'hour' } as const;
  // What the gRPC codec and forward auth make of v\xff, v\xfe and v\xef\xbf\xbd (lossless-text.ts).
  const ops = ['v\udcff', 'v\udcfe', 'v\ufffd'].map((value) => f.op([['api_key', value]], limit));
  t.equal(new Set(ops.map((op) => op.key)).size, 3);
  for (const op of ops) t.match(await apply([op]), [{ allowed: true, remaining: 9 }], 'a bucket of its own');
  const stored = await Promise.all(ops.map((op) => redis.cli('EXISTS', op.key)));
  t.same(stored, ['1', '1', '1'], 'three keys in Redis');
});

t.test('regression: a local-policy denial is a denial (with a divisor, the single-token state must not report allowed)', async (t) => {
  const node = await startRedis({ t });
  const { store } = await ready(t, node, { policy: 'local', fallbackDivisor: 3 });
  await node.kill('SIGKILL');
  const f = new OpFactory(uniquePrefix('divided'));
  const op = f.op([['api_key', 'd']], { requestsPerUnit: 5, unit: 'hour' });
  const decisions = [];
  for (let i = 0; i < 4; i++) decisions.push(await store.apply([op]));
  t.same(decisions.map((d) => d.outcomes[0]!.allowed), [true, false, false, false], 'a third of 5/hour: one request, then denied');
  t.ok(decisions.every((d) => d.fallback === 'local' || !d.outcomes[0]!.allowed), 'decided by the local policy (or denied from its state)');
});
