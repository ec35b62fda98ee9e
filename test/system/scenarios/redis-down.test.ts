/**
 * Scenario 6 of the issue: all of Redis gone, in two shapes — every node of a
 * Redis Cluster stopped, and a single Redis stopped. Three real sidecars with
 * `--on-store-failure local`, `deny` and `allow` (same config):
 * - local keeps enforcing its share of each limit (3 sidecars share Redis: a
 *   fresh 5/hour key → 1, then 429; --fallback-divisor auto) and
 *   answers in < 50 ms once the breaker is open (measured after a warm-up);
 * - deny answers 503 with a JSON error; allow answers 200;
 * - /readyz: 200 for local and allow, 503 for deny;
 * - /metrics: ratelimit_store_fallback_active 1, ratelimit_store_failure_decisions_total > 0.
 * Then Redis comes back (same ports, same dirs: the cluster's nodes.conf brings
 * the cluster back) → shared enforcement resumes and the fallback gauge is 0.
 */
import tap, { type Test } from 'tap';
import { startRedis, startRedisCluster, type RedisClusterHandle, type RedisNode } from '../../helpers/redis.js';
import {
  burst, check, flat, getText, metric, percentile, readyz, sleep, startSidecar, tally, until, warmUp, writeConfig,
  type Policy, type Sidecar, type TestLike,
} from './lib.js';

tap.setTimeout(170_000);

interface Shape {
  name: string;
  start(t: TestLike): Promise<{ nodes: RedisNode[]; target: { cluster?: RedisClusterHandle; redis?: RedisNode } }>;
  /** Waits until Redis serves every slot again after the restart. */
  healthy(nodes: RedisNode[], target: { cluster?: RedisClusterHandle; redis?: RedisNode }): Promise<void>;
}

const shapes: Shape[] = [
  {
    name: 'Redis Cluster (3 masters + 3 replicas), every node stopped',
    async start(t) {
      const cluster = await startRedisCluster({ t, masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });
      return { nodes: cluster.nodes, target: { cluster } };
    },
    async healthy(_nodes, target) {
      await target.cluster!.waitHealthy(30_000);
    },
  },
  {
    name: 'single Redis, stopped',
    async start(t) {
      const redis = await startRedis({ t });
      return { nodes: [redis], target: { redis } };
    },
    async healthy(nodes) {
      await until('redis PONG', async () => (await nodes[0]!.cli('PING')) === 'PONG', 10_000);
    },
  },
];

async function decidesWithStore(sidecar: Sidecar): Promise<boolean> {
  const { status, text } = await getText(sidecar, '/readyz', 1_000);
  return status === 200 && text.includes('deciding with: store"');
}

/**
 * A fresh 5/hour key, 8 requests at once across `sidecars` → exactly 5 allowed, on the first
 * attempt (within 5, 300 ms apart) in which no sidecar's failure policy decided: a decision whose
 * Redis call failed is made by the failure policy (local buckets) and says nothing about the
 * shared limit. Attempts with policy decisions are reported as comments.
 */
async function sharedAgain(t: Test, sidecars: Sidecar[], prefix: string, what: string): Promise<void> {
  for (let attempt = 1; attempt <= 5; attempt++) {
    const errorsBefore = await Promise.all(sidecars.map((s) => metric(s, 'ratelimit_store_failure_decisions_total')));
    const answers = await burst(sidecars, [flat('small', `${prefix}-${attempt}`)], 8);
    const errorsAfter = await Promise.all(sidecars.map((s) => metric(s, 'ratelimit_store_failure_decisions_total')));
    if (errorsAfter.every((e, i) => e === errorsBefore[i])) {
      t.same(tally(answers), { 200: 5, 429: 3 }, `${what}: a fresh 5/hour key allows exactly 5 across ${sidecars.length} sidecars (attempt ${attempt})`);
      return;
    }
    const details = await Promise.all(sidecars.map(async (s) => `${s.name}: ${(await getText(s, '/readyz')).text}`));
    t.comment(`${what}, attempt ${attempt}: failure-policy decisions ${JSON.stringify(errorsBefore)} → ${JSON.stringify(errorsAfter)}, answers ${JSON.stringify(tally(answers))}; ${details.join(' | ')}`);
    await sleep(300);
  }
  t.fail(`${what}: every attempt had failure-policy decisions`);
}

for (const shape of shapes) {
  await tap.test(`6. all of Redis gone — ${shape.name}`, async (t) => {
    t.setTimeout(80_000);
    const config = writeConfig(t);
    const { nodes, target } = await shape.start(t);
    const sidecars = new Map<Policy, Sidecar>();
    for (const policy of ['local', 'deny', 'allow'] as const) {
      sidecars.set(policy, await startSidecar(t, { name: policy, config, ...target, policy }));
    }
    const local = sidecars.get('local')!;
    const deny = sidecars.get('deny')!;
    const allow = sidecars.get('allow')!;
    for (const sidecar of sidecars.values()) await until(`${sidecar.name} decides with Redis`, () => decidesWithStore(sidecar), 15_000, 20);
    await warmUp([...sidecars.values()]);
    await sharedAgain(t, [local, deny, allow], 'before', 'shared 5/hour while Redis is up');
    // --fallback-divisor auto (the default): the local policy divides by the sidecars seen sharing Redis.
    await until('the local sidecar sees all three sidecars', async () => await metric(local, 'ratelimit_sidecars_seen') === 3, 10_000);

    // Stop every node (SIGTERM; the data dirs stay for the restart).
    for (const node of nodes) await node.kill('SIGTERM');
    t.ok(nodes.every((n) => !n.running), `all ${nodes.length} Redis processes stopped`);

    // Warm-up while Redis is gone: the first failures open each breaker.
    for (const sidecar of sidecars.values()) {
      for (let i = 0; i < 8; i++) await check(sidecar, [flat('api_key', `down-warm-${i}`)]);
    }

    // local: this sidecar's share of a fresh 5/hour key: each request costs 3 tokens of it (3 sidecars), so 1, then 429.
    const localAnswers = [];
    for (let i = 0; i < 4; i++) localAnswers.push(await check(local, [flat('small', `down-${shape.name.length}`)]));
    t.same(localAnswers.map((a) => a.status), [200, 429, 429, 429], 'local: its third of 5/hour (one request), then 429');

    // local: once Redis is known to be gone, no answer waits for a Redis deadline (sequential requests, fresh keys).
    const timeoutsBefore = await metric(local, 'ratelimit_redis_timeouts_total');
    const latencies: number[] = [];
    for (let i = 0; i < 100; i++) latencies.push((await check(local, [flat('api_key', `down-fast-${i}`)])).ms);
    t.equal(await metric(local, 'ratelimit_redis_timeouts_total'), timeoutsBefore, 'no decision waited for a Redis deadline: the failure is known at once');
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    const max = Math.max(...latencies);
    t.comment(`local fallback, 100 sequential requests: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${max.toFixed(2)} ms`);

    // deny: 503 with a JSON error.
    const denied = await check(deny, [flat('api_key', 'down-deny')]);
    t.equal(denied.status, 503, 'deny: 503');
    t.match(denied.body, { error: { code: String, message: String } }, `deny: a JSON error ${JSON.stringify(denied.body)}`);
    // allow: 200, even past the limit.
    const allowed = await Promise.all(Array.from({ length: 7 }, () => check(allow, [flat('small', 'down-allow')])));
    t.same(tally(allowed), { 200: 7 }, 'allow: every request passes (fail open)');

    // /readyz and metrics.
    t.equal(await readyz(local), 200, 'local: /readyz 200');
    t.equal(await readyz(allow), 200, 'allow: /readyz 200');
    t.equal(await readyz(deny), 503, 'deny: /readyz 503');
    for (const sidecar of sidecars.values()) {
      t.equal(await metric(sidecar, 'ratelimit_store_fallback_active'), 1, `${sidecar.name}: ratelimit_store_fallback_active 1`);
      const errors = await metric(sidecar, 'ratelimit_store_failure_decisions_total');
      t.ok(errors > 0, `${sidecar.name}: ratelimit_store_failure_decisions_total ${errors} > 0`);
    }

    // Redis back: same ports, same dirs.
    const restartedAt = performance.now();
    for (const node of nodes) await node.restart();
    await shape.healthy(nodes, target);
    // A trickle of requests (throw-away keys) while waiting, as live traffic would be; without any
    // traffic see the "no traffic" test below (the breakers are probed in the background).
    let trickle = 0;
    const backMs = await until('local and deny sidecars decide with Redis again', async () => {
      for (const sidecar of sidecars.values()) await check(sidecar, [flat('api_key', `trickle-${trickle++}`)], 1_000);
      return await decidesWithStore(local) && await decidesWithStore(deny);
    }, 30_000, 100).catch(async (error: unknown) => {
      throw new Error(`${String(error)}; /readyz local: ${(await getText(local, '/readyz')).text}, deny: ${(await getText(deny, '/readyz')).text}`);
    });
    t.comment(`Redis restarted; sidecars decide with it again ${(performance.now() - restartedAt).toFixed(0)} ms after the restart began (${backMs.toFixed(0)} ms after Redis was healthy)`);
    for (const sidecar of [local, deny]) {
      t.equal(await metric(sidecar, 'ratelimit_store_fallback_active'), 0, `${sidecar.name}: ratelimit_store_fallback_active 0`);
    }
    await sharedAgain(t, [local, deny], `back-${shape.name.length}`, 'shared enforcement again after Redis is back');
    await until('allow sidecar decides with Redis again', async () => {
      await check(allow, [flat('api_key', `trickle-${trickle++}`)], 1_000);
      return decidesWithStore(allow);
    }, 30_000, 100);
    t.equal(await metric(allow, 'ratelimit_store_fallback_active'), 0, 'allow: ratelimit_store_fallback_active 0');
  });
}

// Regression: the circuit breaker once probed Redis only when a decision was asked for, and
// /readyz needs the breaker closed. A `deny` sidecar answers /readyz 503 while Redis is down, so
// Kubernetes takes its pod out of the Service and no decision reaches it: it stayed not ready for
// ever after Redis was back. Down masters are now probed in the background (node-health.ts).
await tap.test('6b. a deny sidecar becomes ready again after Redis is back, without any decision traffic', async (t) => {
  t.setTimeout(60_000);
  const config = writeConfig(t);
  const redis = await startRedis({ t });
  const deny = await startSidecar(t, { name: 'deny', config, redis, policy: 'deny' });
  await until('deny decides with Redis', () => decidesWithStore(deny), 15_000, 20);
  await redis.kill('SIGTERM');
  for (let i = 0; i < 8; i++) await check(deny, [flat('api_key', `nt-${i}`)]);
  t.equal(await readyz(deny), 503, 'deny: /readyz 503 while Redis is down');
  await redis.restart();
  // Only /readyz is polled now, as a kubelet would: no decision requests.
  let last = '';
  const ready = await until('deny /readyz 200 after Redis is back', async () => {
    const { status, text } = await getText(deny, '/readyz', 1_000);
    last = text;
    return status === 200;
  }, 15_000, 200).then(() => true, () => false);
  t.ok(ready, `deny sidecar ready again within 15 s of Redis coming back with only /readyz polled (last /readyz: ${last})`);
});
