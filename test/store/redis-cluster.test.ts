import t from 'tap';
import { StoreCallError } from '../../src/errors.js';
import { TOKEN_BUCKET_SHA, createRedisStore } from '../../src/store/redis-store.js';
import { sleep, startRedisCluster, waitFor } from '../helpers/redis.js';
import { OpFactory, storeContract, uniquePrefix } from './contract.js';

// 3 masters + 3 replicas; cluster-node-timeout 1 s keeps the failover quick.
const cluster = await startRedisCluster({ t, masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });
const store = createRedisStore({ cluster: cluster.seeds, timeoutMs: 1_000 });
t.teardown(() => store.close());
await waitFor('cluster store ready', () => store.health().ready);

await t.test('contract', async (t) => {
  await storeContract(t, store, { label: 'cluster' });
});

await t.test('ops spread over every master decide in one call each, with refunds on denial', async (t) => {
  const f = new OpFactory(uniquePrefix('spread'));
  const ops = Array.from({ length: 12 }, (_, i) => f.op([['client', `c${i}`]], { requestsPerUnit: 5, unit: 'hour' }));
  t.ok(new Set(ops.map((op) => op.slotTag)).size >= 6, 'many slots');
  t.match(await store.apply(ops), ops.map(() => ({ allowed: true, remaining: 4 })));
  const blocked = f.op([['client', 'blocked']], { requestsPerUnit: 0, unit: 'hour' });
  const denied = await store.apply([...ops, blocked]);
  t.match(denied.slice(0, 12), ops.map(() => ({ allowed: true, remaining: 4 })), 'the untaken buckets');
  t.match(await store.apply(ops.map((op) => ({ ...op, cost: 0 }))), ops.map(() => ({ remaining: 4 })), 'every group was given back');
});

await t.test('a cross-slot denial gives back exactly what the other slot groups took', async (t) => {
  const f = new OpFactory(uniquePrefix('refund'));
  const cli = (...args: string[]): Promise<string> => cluster.nodes[0]!.cli('-c', ...args);
  const wide = f.op([['remote_address', '10.1.1.1']], { requestsPerUnit: 5, unit: 'hour' });
  const fw = f.op([['user', 'u1']], { requestsPerUnit: 5, unit: 'hour', algorithm: 'fixed_window' });
  const narrow = f.op([['api_key', 'r']], { requestsPerUnit: 1, unit: 'hour' });
  t.equal(new Set([wide.slotTag, fw.slotTag, narrow.slotTag]).size, 3, 'three slots');
  await store.apply([narrow]);
  t.match(await store.apply([wide, fw, narrow]), [{ allowed: true, remaining: 5 }, { allowed: true, remaining: 5 }, { allowed: false }]);
  t.equal(await cli('EXISTS', wide.key), '0', 'token bucket full again: key deleted');
  t.equal(await cli('EXISTS', fw.key), '0', 'window count back to 0: key deleted');

  await store.apply([wide, fw]);
  const level = await cli('GET', wide.key);
  const count = await cli('GET', fw.key);
  await store.apply([wide, fw, narrow]);
  // The same bucket: the level at a common instant (level - ts * refill / tick) is unchanged.
  const timeless = (value: string): number => {
    const [l, ts] = value.split(':').map(Number) as [number, number];
    return l - (ts * wide.limit.refillPerTick) / wide.limit.tickUs;
  };
  t.equal(timeless(await cli('GET', wide.key)), timeless(level), 'level restored exactly');
  t.equal(await cli('GET', fw.key), count, 'window count restored');
  const pttl = Number(await cli('PTTL', wide.key));
  t.ok(pttl > 0 && pttl <= 720_000, `PTTL ${pttl} ms: one token of 5/hour`);
  t.match(await store.apply([{ ...wide, cost: 0 }, { ...fw, cost: 0 }]), [{ remaining: 4 }, { remaining: 4 }]);
});

await t.test('a master is SIGKILLed: calls fail fast, then decisions resume on the promoted replica', async (t) => {
  const f = new OpFactory(uniquePrefix('failover'));
  const op = f.op([['api_key', 'failover']], { requestsPerUnit: 1_000_000, unit: 'hour' });
  await store.apply([op]);
  const fast = createRedisStore({ cluster: cluster.seeds, timeoutMs: 50 });
  t.teardown(() => fast.close());
  await waitFor('fast store ready', () => fast.health().ready);
  await fast.apply([op]);

  const victim = await cluster.killMaster(op.key);
  const killedAt = performance.now();
  let failed = 0;
  let slowestMs = 0;
  let recoveredMs = -1;
  let okAfterRecovery = 0;
  let failedAfterRecovery = 0;
  while (performance.now() - killedAt < 15_000 && okAfterRecovery < 50) {
    const start = performance.now();
    try {
      await fast.apply([op]);
      if (recoveredMs < 0) recoveredMs = performance.now() - killedAt;
      okAfterRecovery++;
    } catch (error: unknown) {
      t.type(error, StoreCallError);
      if (recoveredMs >= 0) failedAfterRecovery++;
      failed++;
    }
    slowestMs = Math.max(slowestMs, performance.now() - start);
    await sleep(20);
  }
  t.ok(recoveredMs > 0, `decisions resumed ${recoveredMs.toFixed(0)} ms after the kill (${failed} calls failed before)`);
  t.ok(slowestMs < 200, `no call took longer than ${slowestMs.toFixed(0)} ms (deadline 50 ms)`);
  t.equal(failedAfterRecovery, 0, 'no failed decision after recovery');
  t.equal(victim.running, false);
  const promoted = (await cluster.topology()).filter((n) => n.role === 'master' && n.node.running);
  const owner = [];
  for (const info of promoted) {
    if (!(await info.node.cli('EXISTS', op.key)).includes('MOVED')) owner.push(info.node);
  }
  t.equal(owner.length, 1, 'one live master owns the key');
  t.equal(await owner[0]!.cli('SCRIPT', 'EXISTS', TOKEN_BUCKET_SHA), '1', 'the script was loaded on the promoted replica');
  t.equal(fast.breakerState, 'closed');
});
