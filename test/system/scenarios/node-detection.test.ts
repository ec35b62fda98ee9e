/**
 * Detection and noise (issue 20 items 4, 6, 7, 8, 9), on real sidecars:
 * - a master of a Cluster without replicas SIGKILLed is named by /readyz and
 *   ratelimit_redis_node_unavailable without any decision traffic, and its
 *   keys are then answered by the policy without waiting for a deadline;
 * - an outage of a few seconds under traffic writes one warn line (down) and
 *   one info line (back): no open/half_open pairs, no per-request lines;
 * - a Redis that may evict (allkeys-lru with a memory limit) and has evicted
 *   keys is a warning in /readyz (still ready), the log and the metrics.
 */
import tap from 'tap';
import { Redis } from 'ioredis';
import { startRedis, startRedisCluster } from '../../helpers/redis.js';
import { check, flat, getText, metric, sleep, startSidecar, tally, until, writeConfig, type Answer, type Sidecar } from './lib.js';

tap.setTimeout(200_000);

const HANG_GUARD_MS = 30_000;

/** One labelled series' value on /metrics (NaN when absent). */
async function series(s: Sidecar, name: string, labels: string): Promise<number> {
  const { text } = await getText(s, '/metrics');
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

function logLines(s: Sidecar, from = 0): { level: number; msg: string }[] {
  return s.proc.output().slice(from).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string });
}

async function decidesWithStore(s: Sidecar): Promise<boolean> {
  const { status, text } = await getText(s, '/readyz');
  return status === 200 && text.includes('deciding with: store"');
}

await tap.test('a dead master of a Cluster without replicas is named at once, without decision traffic, and its keys wait for no deadline', async (t) => {
  const cluster = await startRedisCluster({ t, masters: 3, replicasPerMaster: 0 });
  const config = writeConfig(t);
  const sidecar = await startSidecar(t, { name: 'local', config, cluster, policy: 'local' });
  await until('the sidecar decides with Redis', () => decidesWithStore(sidecar), HANG_GUARD_MS, 50);
  const victim = await cluster.killMaster();
  const node = `127.0.0.1:${victim.port}`;
  const killedAt = performance.now();
  // Only /readyz and /metrics are read now: no decision reaches the sidecar.
  let last = '';
  await until(`/readyz names ${node}`, async () => {
    last = (await getText(sidecar, '/readyz')).text;
    return last.includes(`unavailable: ${node}`) || last.includes(`, ${node}`);
  }, HANG_GUARD_MS, 50).catch((error: unknown) => { throw new Error(`${String(error)}; last /readyz: ${last}`); });
  t.comment(`named by /readyz ${(performance.now() - killedAt).toFixed(0)} ms after the SIGKILL, with no decision traffic`);
  t.match(last, /"status":"ready".*deciding with: store-failure policy/, `local: still ready, the policy decides the dead master's keys: ${last}`);
  t.equal(await series(sidecar, 'ratelimit_redis_node_unavailable', `node="${node}"`), 1, 'ratelimit_redis_node_unavailable names it');
  const timeoutsBefore = await metric(sidecar, 'ratelimit_redis_timeouts_total');
  const errorsBefore = await metric(sidecar, 'ratelimit_store_failure_decisions_total');
  const answers: Answer[] = [];
  for (let i = 0; i < 30; i++) answers.push(await check(sidecar, [flat('api_key', `dead-master-${i}`)]));
  t.same(tally(answers), { 200: 30 }, 'every key answered: Redis or the local policy');
  t.ok(await metric(sidecar, 'ratelimit_store_failure_decisions_total') > errorsBefore, 'some of the 30 keys live on the dead master: the policy decided them');
  t.equal(await metric(sidecar, 'ratelimit_redis_timeouts_total'), timeoutsBefore,
    'no decision waited for a Redis deadline: the dead master\'s keys went to the policy from the first request');
});

await tap.test('an outage of a few seconds under traffic: one line down, one line back, nothing per request or per probe', async (t) => {
  const redis = await startRedis({ t });
  const config = writeConfig(t);
  const sidecar = await startSidecar(t, { name: 'local', config, redis, policy: 'local' });
  await until('the sidecar decides with Redis', () => decidesWithStore(sidecar), HANG_GUARD_MS, 50);
  const from = sidecar.proc.output().length;
  await redis.kill('SIGKILL');
  // About 4 s of outage under light traffic: decisions, and several probe and reconnect rounds.
  for (let i = 0; i < 40; i++) {
    await check(sidecar, [flat('api_key', `outage-${i % 5}`)]);
    await sleep(100);
  }
  t.match((await getText(sidecar, '/readyz')).text, /unavailable: 127\.0\.0\.1/, '/readyz names the node while it is down');
  await redis.restart();
  await until('decides with Redis again', () => decidesWithStore(sidecar), HANG_GUARD_MS, 50);
  const lines = logLines(sidecar, from);
  const loud = lines.filter((l) => l.level >= 40);
  t.equal(loud.length, 1, `one warn line over the outage (${lines.length} lines in all): ${loud.map((l) => l.msg).join(' | ')}`);
  t.match(loud[0]?.msg, /^redis circuit open for 127\.0\.0\.1:\d+: redis (connection closed|unreachable)/, 'it says the node is down and why');
  t.equal(lines.filter((l) => /redis circuit closed/.test(l.msg)).length, 1, 'one line when it is back');
  t.equal(lines.filter((l) => /half_open|redis call failed|connection error/.test(l.msg)).length, 0, 'no probe pairs, no per-call lines');
});

await tap.test('eviction: allkeys-lru with a memory limit, keys evicted: a warning in /readyz (still ready), the log and the metrics', async (t) => {
  const redis = await startRedis({ t, args: ['--maxmemory', '3mb', '--maxmemory-policy', 'allkeys-lru'] });
  // Fill past the limit so that Redis evicts.
  const client = new Redis({ host: redis.host, port: redis.port, lazyConnect: true });
  await client.connect();
  const filler = 'x'.repeat(2_000);
  for (let batch = 0; batch < 10; batch++) {
    const pipeline = client.pipeline();
    for (let i = 0; i < 500; i++) pipeline.set(`filler:${batch}:${i}`, filler);
    await pipeline.exec();
  }
  const evicted = Number(/evicted_keys:(\d+)/.exec(await client.info('stats'))?.[1]);
  client.disconnect();
  t.ok(evicted > 0, `Redis evicted ${evicted} keys`);
  const config = writeConfig(t);
  const sidecar = await startSidecar(t, { name: 'local', config, redis, policy: 'local' });
  const node = `127.0.0.1:${redis.port}`;
  let last = '';
  await until('/readyz warns of eviction', async () => {
    last = (await getText(sidecar, '/readyz')).text;
    return last.includes('evicted');
  }, HANG_GUARD_MS, 50).catch((error: unknown) => { throw new Error(`${String(error)}; last /readyz: ${last}`); });
  t.match(last, /"status":"ready"/, 'still ready: the limits hold for every bucket Redis keeps');
  t.match(last, /may evict buckets \(maxmemory-policy allkeys-lru; run it with noeviction\)/, `the policy named: ${last}`);
  // Redis goes on evicting as the sidecar connects (its own keys take memory too): at least what the filler caused.
  const counted = Number(new RegExp(`redis ${node} evicted (\\d+) keys`).exec(last)?.[1]);
  t.ok(counted >= evicted, `the evictions counted: ${counted} >= ${evicted}`);
  t.equal(await series(sidecar, 'ratelimit_redis_eviction_possible', `node="${node}"`), 1, 'ratelimit_redis_eviction_possible 1');
  t.ok(await series(sidecar, 'ratelimit_redis_evicted_keys_total', `node="${node}"`) >= evicted, 'ratelimit_redis_evicted_keys_total counts them');
  const warnings = logLines(sidecar).filter((l) => l.level === 40).map((l) => l.msg);
  t.equal(warnings.filter((m) => /may evict rate-limit buckets \(maxmemory-policy allkeys-lru\)/.test(m)).length, 1, 'one log line for the policy');
  t.equal(warnings.filter((m) => /evicted \d+ keys: rate-limit buckets among them start full again/.test(m)).length, 1, 'one log line for the evictions');
  t.same(tally([await check(sidecar, [flat('api_key', 'evicting')])]), { 200: 1 }, 'decisions go on');
});
