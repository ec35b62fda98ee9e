/**
 * Multi-process scenarios: several `serve` processes share one Redis Cluster.
 * Needs a built dist/main.js (npm test builds it); fails without one.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { freePort, sleep, startRedisCluster, waitFor } from '../../helpers/redis.js';

const MAIN = new URL('../../../dist/main.js', import.meta.url).pathname;
if (!existsSync(MAIN)) {
  t.fail('dist/main.js is not built: run npm run build (npm test does) — nothing here could be checked');
} else {
  await scenarios();
}

interface Server { port: number; child: ChildProcess; stop(): Promise<void> }

async function scenarios(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rl-scenario-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'openclaw.yaml');
  writeFileSync(config, [
    'domain: scenario',
    'descriptors:',
    '  - key: api_key',
    '    rate_limit: { unit: hour, requests_per_unit: 20 }',
    '',
  ].join('\n'));
  const cluster = await startRedisCluster({ t, masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });

  const serve = async (policy: 'local' | 'allow' | 'deny'): Promise<Server> => {
    const port = await freePort();
    const child = spawn(process.execPath, [MAIN, 'serve', '--config', config, '--http-port', String(port),
      '--grpc-port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--redis-cluster', cluster.seeds, '--on-store-failure', policy],
    { stdio: ['ignore', 'ignore', 'inherit'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const stop = async (): Promise<void> => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(3_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    t.teardown(stop);
    process.once('exit', () => child.kill('SIGKILL'));
    await waitFor(`serve on ${port} ready`, async () => {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(500) });
      return response.status === 200;
    }, 15_000, 100);
    return { port, child, stop };
  };

  const check = async (server: Server, key: string): Promise<number> => {
    const response = await fetch(`http://127.0.0.1:${server.port}/v1/check`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ domain: 'scenario', descriptors: [{ entries: [{ key: 'api_key', value: key }] }] }),
      // A hang guard, not a speed check (200x the 50 ms Redis deadline): the answers below are counted, not timed.
      signal: AbortSignal.timeout(10_000),
    });
    await response.arrayBuffer();
    return response.status;
  };

  const policyDecisions = async (server: Server): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    return Number(/^ratelimit_store_failure_decisions_total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
  };

  const servers = [await serve('local'), await serve('local'), await serve('deny')];

  // Warm up (JIT, first EVAL per connection): cold first calls can pass the 50 ms deadline here.
  for (const server of servers) for (let i = 0; i < 5; i++) await check(server, `warm-${i}`);

  await t.test('three servers sharing the cluster enforce one global limit', async (t) => {
    const statuses = await Promise.all(Array.from({ length: 45 }, (_, i) => check(servers[i % 3]!, 'global')));
    t.equal(statuses.filter((s) => s === 200).length, 20, 'exactly requests_per_unit pass');
    t.equal(statuses.filter((s) => s === 429).length, 25, `the rest is denied: ${JSON.stringify(statuses)}`);
  });

  await t.test('a restarted server still sees the state written before', async (t) => {
    t.equal(await check(servers[0]!, 'sticky'), 200);
    for (let i = 0; i < 19; i++) await check(servers[1]!, 'sticky');
    await servers[0]!.stop();
    servers[0] = await serve('local');
    t.equal(await check(servers[0], 'sticky'), 429, 'still exhausted after the restart');
  });

  await t.test('SIGKILL of a master under load: every request is answered, the dead shard\'s by the policy', async (t) => {
    const errorsBefore = await Promise.all(servers.map(policyDecisions));
    const load = servers.map(async (server, index) => {
      const seen = new Map<number, number>();
      let slowestMs = 0;
      const until = performance.now() + 6_000;
      let i = 0;
      while (performance.now() < until) {
        const start = performance.now();
        const status = await check(server, `load-${index}-${i++ % 50}`);
        slowestMs = Math.max(slowestMs, performance.now() - start);
        seen.set(status, (seen.get(status) ?? 0) + 1);
        await sleep(5);
      }
      return { seen, slowestMs };
    });
    await sleep(500);
    await cluster.killMaster();
    const results = await Promise.all(load);
    const errorsAfter = await Promise.all(servers.map(policyDecisions));
    results.forEach(({ seen, slowestMs }, index) => {
      const policy = index === 2 ? 'deny' : 'local';
      t.comment(`${policy} server: slowest answer ${slowestMs.toFixed(0)} ms`);
      // Its 50 keys span every master: failed calls to the dead one were answered by the policy, not held for the failover.
      t.ok(errorsAfter[index]! > errorsBefore[index]!, `${policy} server: ${errorsAfter[index]! - errorsBefore[index]!} decisions by the policy`);
      const allowed = [200, 429, ...(policy === 'deny' ? [503] : [])];
      t.same([...seen.keys()].filter((s) => !allowed.includes(s)), [], `${policy} server answered ${JSON.stringify([...seen])}`);
    });
    t.ok((results[2]!.seen.get(503) ?? 0) > 0, 'the deny server failed closed during the failover');
    await cluster.waitHealthy(15_000);
    await waitFor('decisions from Redis again', async () => (await check(servers[2]!, 'after-failover')) === 200, 15_000, 200);
  });

  for (const server of servers) await server.stop();
}
