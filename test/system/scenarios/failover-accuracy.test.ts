/**
 * What a master's death costs in accuracy, at default settings (issue 20:
 * healthy shards exact through failovers). 3 sidecars share a Redis Cluster (3 masters + 3 replicas); 48
 * clients on a 10/hour limit each send a request every ~30 ms, spread over
 * the sidecars, while the master serving a third of them is SIGKILLed in the
 * middle of their bursts and its replica is promoted. Three runs, a different
 * master each time (the killed one rejoins as a replica between runs).
 *
 * Expected and asserted:
 * - every answer is a decision (200/429);
 * - clients on the healthy masters are never allowed more than 10 (on a
 *   quiet machine exactly 10: their keys never reach the failure policy);
 * - clients on the failed master over-admit at most one bucket's worth each
 *   (local decisions start from the last state Redis reported; what the
 *   promoted replica had not yet received can be granted again).
 * The measured over-admission is printed (docs/redis.md "Failures, resharding and failover" quotes it).
 */
import tap, { type Test } from 'tap';
import { clusterSlot } from '../../../src/store/redis/cluster-slot.js';
import { slotTagFor } from '../../../src/core/keys.js';
import { startRedisCluster } from '../../helpers/redis.js';
import { check, flat, sleep, startSidecar, tally, until, warmUp, writeConfig, type Answer, type Sidecar } from './lib.js';

tap.setTimeout(300_000);

const config = writeConfig(tap);
const cluster = await startRedisCluster({ t: tap, masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });
const sidecars: Sidecar[] = [];
for (const name of ['a', 'b', 'c']) sidecars.push(await startSidecar(tap, { name, config, cluster }));
await warmUp(sidecars);

/** The same failover three times over (a different master each time), so one lucky run proves nothing. */
const RUNS = 3;

for (let run = 1; run <= RUNS; run++) {
  await tap.test(`run ${run} of ${RUNS}: a master SIGKILLed mid-burst: healthy shards exact, the failed shard over-admits at most one bucket per key`, async (t) => {
    await failoverRun(t, run);
  });
}

async function failoverRun(t: Test, run: number): Promise<void> {
  const topology = await cluster.topology();
  const masters = topology.filter((n) => n.role === 'master' && n.node.running);
  const slotsText = await masters[0]!.node.cli('--json', 'CLUSTER', 'SLOTS');
  const ranges = JSON.parse(slotsText) as [number, number, [string, number, string]][];
  const portOfSlot = (slot: number): number => ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
  const victimPort = masters[0]!.node.port;
  // 16 clients per master, chosen by where their bucket's slot lives.
  const clients: { name: string; onVictim: boolean }[] = [];
  const perMaster = new Map<number, number>();
  for (let i = 0; clients.length < 48; i++) {
    const name = `fo-r${run}-client-${i}`;
    const port = portOfSlot(clusterSlot(`{${slotTagFor([{ key: 'api_key', value: name }])}}`));
    if ((perMaster.get(port) ?? 0) >= 16) continue;
    perMaster.set(port, (perMaster.get(port) ?? 0) + 1);
    clients.push({ name, onVictim: port === victimPort });
  }

  const answers = new Map<string, Answer[]>(clients.map((c) => [c.name, []]));
  const started = performance.now();
  const loadMs = 6_000;
  const loops = clients.map(async (client, c) => {
    let i = 0;
    await sleep((c * 7) % 30);
    while (performance.now() - started < loadMs) {
      answers.get(client.name)!.push(await check(sidecars[(c + i++) % 3]!, [flat('api_key', client.name)], 5_000));
      await sleep(30);
    }
  });
  // Kill while the buckets are still draining (each client spends its 10 within the first ~0.4 s).
  await sleep(150);
  const victim = await cluster.killMaster();
  t.equal(victim.port, victimPort, 'the chosen master was killed');
  await Promise.all(loops);
  await cluster.waitHealthy(30_000);

  const all = [...answers.values()].flat();
  const counts = tally(all);
  t.same(Object.keys(counts).filter((s) => s !== '200' && s !== '429'), [], `every answer is 200 or 429: ${JSON.stringify(counts)}`);
  const allowed = (name: string): number => answers.get(name)!.filter((a) => a.status === 200).length;
  const healthy = clients.filter((c) => !c.onVictim);
  const failed = clients.filter((c) => c.onVictim);
  // Never more than the limit on a healthy master. Fewer is possible on a starved machine: a call that
  // misses its deadline is decided by the policy, and when the policy denies while Redis took, the
  // refund is best effort (SPEC: transient under-admission is acceptable, over-admission is not).
  t.same(healthy.filter((c) => allowed(c.name) > 10).map((c) => `${c.name}: ${allowed(c.name)}`), [],
    `no client on a healthy master was allowed more than 10`);
  const under = healthy.filter((c) => allowed(c.name) < 10).map((c) => `${c.name}: ${allowed(c.name)}`);
  t.comment(`healthy masters: ${healthy.length - under.length} of ${healthy.length} clients allowed exactly 10${under.length > 0 ? `; under: ${under.join(', ')}` : ''}`);
  const over = failed.map((c) => allowed(c.name) - 10);
  const total = over.reduce((a, b) => a + Math.max(0, b), 0);
  t.comment(`failed shard: ${failed.length} clients, over-admitted ${total} in all (per client: ${over.join(' ')})`);
  t.ok(over.every((n) => n <= 10), `each key of the failed shard over-admitted at most one bucket (10): max ${Math.max(...over)}`);
  // The killed master comes back as a replica of the one that replaced it, ready for the next run.
  await victim.restart();
  await cluster.waitHealthy(30_000);
  await waitReplicasAttached();
}

async function waitReplicasAttached(): Promise<void> {
  await until('every master has its replica again', async () => {
    const nodes = await cluster.topology();
    const masters = nodes.filter((n) => n.role === 'master' && n.node.running).length;
    const replicas = nodes.filter((n) => n.role === 'replica' && n.node.running).length;
    return masters === 3 && replicas === 3;
  }, 30_000, 200);
}
