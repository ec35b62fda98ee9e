/**
 * --redis-sentinel on real `redis-server --sentinel` processes (SPEC §15):
 * exact on the master the Sentinels name, every answer a decision while a
 * failover moves the master, exact again on the new master. The sidecar
 * scenario runs `node dist/main.js serve` (npm test builds it).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { spawnServer } from '../../helpers/process.js';
import { sleep, startSentinelGroup, waitFor, type RedisNode, type SentinelGroupHandle } from '../../helpers/redis.js';
import { OpFactory, uniquePrefix } from '../../helpers/store-contract.js';
import { redisStoreFor } from '../../integration/store/redis-helper.js';

const HOUR_10 = { requestsPerUnit: 10, unit: 'hour' } as const;

function sentinelOptions(group: SentinelGroupHandle): { redisSentinel: string[]; redisSentinelMaster: string } {
  return { redisSentinel: group.sentinelAddresses.split(','), redisSentinelMaster: group.name };
}

await t.test('through the Sentinels the store decides exactly on the master they name', async (t) => {
  const group = await startSentinelGroup({ t, replicas: 1 });
  const { store, apply, states } = redisStoreFor(t, sentinelOptions(group));
  await waitFor('sentinel store ready', () => store.health().ready);
  const f = new OpFactory(uniquePrefix('exact'));
  const op = f.op([['api_key', 'k']], HOUR_10);
  const outcomes = await Promise.all(Array.from({ length: 25 }, () => apply([op])));
  t.equal(outcomes.filter(([outcome]) => outcome!.allowed).length, 10, 'exactly 10 of 25 concurrent requests admitted');
  t.equal(await group.cli(await group.master(), 'EXISTS', op.key), '1', 'the bucket lives on the master the Sentinels name');
  t.same([...states.keys()], [], 'no breaker ever left closed');
});

await t.test('regression (envoyproxy/ratelimit #184): the data password reaches the master, the Sentinel password the Sentinels', async (t) => {
  const group = await startSentinelGroup({ t, replicas: 1, password: 'data-secret', sentinelPassword: 'sentinel-secret' });
  const both = redisStoreFor(t, { ...sentinelOptions(group), redisPassword: 'data-secret', redisSentinelPassword: 'sentinel-secret' });
  await waitFor('store with both passwords ready', () => both.store.health().ready);
  const f = new OpFactory(uniquePrefix('auth'));
  const op = f.op([['api_key', 'k']], HOUR_10);
  const outcomes = await Promise.all(Array.from({ length: 12 }, () => both.apply([op])));
  t.equal(outcomes.filter(([outcome]) => outcome!.allowed).length, 10, 'authenticated on both, decisions exact');

  // Each password is needed where it belongs: without one, the store never becomes ready and says why.
  const noSentinelPassword = redisStoreFor(t, { ...sentinelOptions(group), redisPassword: 'data-secret', policy: 'local' });
  const noDataPassword = redisStoreFor(t, { ...sentinelOptions(group), redisSentinelPassword: 'sentinel-secret', policy: 'local' });
  t.equal(await noSentinelPassword.store.waitUntilConnected(1_500), false, 'the Sentinels refuse a client without their password');
  t.equal(await noDataPassword.store.waitUntilConnected(1_500), false, 'the master refuses a client without its password');
  t.match(noSentinelPassword.store.health(), { ready: false, detail: /sentinel/i });
  t.match(noDataPassword.store.health(), { ready: false, detail: /password/i });
  // A missing password is a misconfiguration, not an outage: refused under every policy (docs/failure.md), never admitted locally.
  t.match(noDataPassword.store.health(), { misconfigured: /requires a password and none was given/ });
  await t.rejects(Promise.resolve(noDataPassword.store.apply([f.op([['api_key', 'refused']], HOUR_10)])),
    { code: 'RL_ERR_STORE_UNAVAILABLE', message: /requires a password and none was given/ }, 'refused with the cause, although the policy is local');
});

await t.test('a master name the Sentinels do not watch is a misconfiguration named as such, not "unreachable"', async (t) => {
  const group = await startSentinelGroup({ t, replicas: 0 });
  const wrong = redisStoreFor(t, { redisSentinel: group.sentinelAddresses.split(','), redisSentinelMaster: `${group.name}-typo`, policy: 'local' });
  t.equal(await wrong.store.waitUntilConnected(1_500), false, 'no master to connect to');
  await waitFor('the cause is known', () => wrong.store.health().misconfigured !== undefined, 10_000);
  t.match(wrong.store.health(), { ready: false, misconfigured: /watch no master of that name: check --redis-sentinel-master/ });
  t.notMatch(wrong.store.health().detail, /unreachable/, 'the Sentinels answered: not called unreachable');
  await t.rejects(Promise.resolve(wrong.store.apply([new OpFactory(uniquePrefix('name')).op([['api_key', 'k']], HOUR_10)])),
    { code: 'RL_ERR_STORE_UNAVAILABLE', message: /watch no master of that name/ }, 'refused with the cause, although the policy is local');
});

await t.test('SENTINEL FAILOVER: the store follows the new master; replicated state is kept, a fresh key exact', async (t) => {
  const group = await startSentinelGroup({ t, replicas: 2 });
  const { store, apply } = redisStoreFor(t, { ...sentinelOptions(group), policy: 'local' });
  await waitFor('sentinel store ready', () => store.health().ready);
  const f = new OpFactory(uniquePrefix('graceful'));
  const kept = f.op([['api_key', 'kept']], HOUR_10);
  for (let i = 0; i < 4; i++) await apply([kept]);
  await group.waitReplicated();
  const before = await group.master();

  // Load on other keys while the Sentinels switch masters: each answer is a decision, from Redis or the policy.
  const busy = f.op([['api_key', 'busy']], { requestsPerUnit: 1_000_000, unit: 'year' });
  let failingOver = true;
  let decisions = 0;
  let fallbacks = 0;
  let denied = 0;
  const load = (async () => {
    while (failingOver) {
      const decision = await store.apply([busy]);
      decisions++;
      if (decision.fallback !== undefined) fallbacks++;
      if (decision.outcomes[0]?.allowed !== true) denied++;
      // A policy decision settles without I/O: let timers and sockets run between requests.
      await sleep(2);
    }
  })();
  const after = await group.failover();
  t.not(after, before, 'a replica was promoted');
  // The old master still takes writes until Sentinel demotes it, seconds later; a take that went there would be lost.
  const probe = f.op([['api_key', 'probe']], { requestsPerUnit: 1_000_000, unit: 'year' });
  await waitFor('a take decided by Redis', async () => (await store.apply([probe])).fallback === undefined, 15_000, 50);
  t.equal(await group.cli(after, 'EXISTS', probe.key), '1', 'the first take after the switch went to the new master (+switch-master followed)');
  failingOver = false;
  await load;
  const fresh = f.op([['api_key', 'fresh']], HOUR_10);
  t.ok(decisions > 0, `${decisions} decisions during the failover, ${fallbacks} of them by the local policy`);
  t.equal(denied, 0, 'every one admitted (a limit of a million a year)');

  const outcomes = await Promise.all(Array.from({ length: 25 }, () => apply([fresh])));
  t.equal(outcomes.filter(([outcome]) => outcome!.allowed).length, 10, 'a fresh key admits exactly 10 on the new master');
  t.equal(await group.cli(after, 'EXISTS', fresh.key), '1', 'its bucket is on the new master');
  // A store that has never seen the key reads it from Redis alone (no mirror).
  const reader = redisStoreFor(t, { ...sentinelOptions(group), mirror: false });
  await waitFor('second store ready', () => reader.store.health().ready);
  t.match(await reader.apply([{ ...kept, cost: 0 }]), [{ remaining: 6 }], 'the key replicated before the failover kept its 4 takes');
  const more = await Promise.all(Array.from({ length: 10 }, () => reader.apply([kept])));
  t.equal(more.filter(([outcome]) => outcome!.allowed).length, 6, 'and admits exactly the 6 it had left');
  t.ok(store.health().ready, `healthy: ${store.health().detail}`);
});

await t.test('a sidecar process: exact, then a SIGKILLed master under load answers only decisions, then exact again', async (t) => {
  const group = await startSentinelGroup({ t, replicas: 2 });
  const dir = mkdtempSync(join(tmpdir(), 'rl-sentinel-serve-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'sentinel.yaml');
  writeFileSync(config, [
    'domain: sentinel',
    'descriptors:',
    '  - key: api_key',
    '    rate_limit: { unit: hour, requests_per_unit: 10 }',
    '  - key: load',
    '    rate_limit: { unit: year, requests_per_unit: 1000000 }',
    '',
  ].join('\n'));
  // Default policy (local), default deadline; the store's node is the master role, whatever its address.
  const server = await spawnServer(['--config', config, '--redis-sentinel', group.sentinelAddresses,
    '--redis-sentinel-master', group.name]);
  t.teardown(() => server.stop());
  const check = async (key: string, value: string): Promise<number> => {
    const response = await fetch(`${server.httpUrl}/v1/check`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ domain: 'sentinel', descriptors: [{ entries: [{ key, value }] }] }),
      signal: AbortSignal.timeout(5_000),
    });
    await response.arrayBuffer();
    return response.status;
  };
  const admitted = async (value: string, requests: number): Promise<number> =>
    (await Promise.all(Array.from({ length: requests }, () => check('api_key', value)))).filter((status) => status === 200).length;
  await waitFor('sidecar ready', async () => (await fetch(`${server.httpUrl}/readyz`)).status === 200, 15_000, 100);

  t.equal(await admitted('before', 25), 10, 'exactly 10 of 25 on the first master');
  for (let i = 0; i < 4; i++) t.equal(await check('api_key', 'kept'), 200);
  await group.waitReplicated();

  const victim = await group.master();
  const statuses = new Map<string, number>();
  let failingOver = true;
  const load = Promise.all(Array.from({ length: 2 }, async (_, worker) => {
    for (let i = 0; failingOver; i++) {
      let status: string;
      try {
        status = String(await check('load', `w${worker}-${i % 20}`));
      } catch (error: unknown) {
        status = error instanceof Error ? error.message : String(error);
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      await sleep(5);
    }
  }));
  let promoted: RedisNode;
  try {
    await victim.kill('SIGKILL');
    promoted = await group.waitForNewMaster(victim);
    await waitFor('the sidecar decides from the new master', async () => {
      const readyz = await (await fetch(`${server.httpUrl}/readyz`, { signal: AbortSignal.timeout(2_000) })).text();
      if (!readyz.includes('deciding with: store"')) throw new Error(readyz);
      return true;
    }, 20_000, 100);
  } finally {
    failingOver = false;
    await load;
  }
  t.same([...statuses.keys()].filter((status) => status !== '200'), [], `every answer a decision: ${JSON.stringify([...statuses])}`);
  const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
  const policyDecisions = Number(/^ratelimit_store_failure_decisions_total (\d+)/m.exec(metrics)?.[1] ?? 0);
  t.ok(policyDecisions > 0, `the local policy decided ${policyDecisions} requests while no master served`);
  t.match(metrics, /ratelimit_redis_node_unavailable\{node="sentinel:rl-master"\} 0/, 'one breaker, named for the master role, closed again');
  t.notMatch(metrics, /ratelimit_redis_node_unavailable\{node="127\.0\.0\.1:/, 'no breaker named for an address');

  t.equal(await admitted('after', 25), 10, 'a fresh key admits exactly 10 on the new master');
  t.equal(await admitted('kept', 10), 6, 'the key replicated before the kill admits exactly the 6 it had left');
  t.match(server.output(), new RegExp(`"server":"127\\.0\\.0\\.1:${promoted.port}"[^\\n]*"redis store connected"`),
    'the log names the new master it connected to');
});
