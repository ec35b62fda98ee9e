import t from 'tap';
import { clusterSlot } from '../../../src/store/redis/cluster-slot.js';
import { LIBRARY_SHA } from '../../../src/store/redis/library.js';
import { sleep, startRedisCluster, unlessHung, waitFor } from '../../helpers/redis.js';
import { OpFactory, storeContract, uniquePrefix } from '../../helpers/store-contract.js';
import { redisStoreFor } from './redis-helper.js';

// 3 masters + 3 replicas; cluster-node-timeout 1 s keeps the failover quick.
const cluster = await startRedisCluster({ t, masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });
const seeds = cluster.seeds.split(',');
// Default 50 ms deadline throughout.
const { store, apply } = redisStoreFor(t, { redisCluster: seeds });
await waitFor('cluster store ready', () => store.health().ready);

await t.test('contract', async (t) => {
  await storeContract(t, store, { label: 'cluster', quotaAcrossSlots: false });
});

await t.test('ops spread over every master decide in one call each, with refunds on denial', async (t) => {
  const f = new OpFactory(uniquePrefix('spread'));
  const ops = Array.from({ length: 12 }, (_, i) => f.op([['client', `c${i}`]], { requestsPerUnit: 5, unit: 'hour' }));
  t.ok(new Set(ops.map((op) => op.slotTag)).size >= 6, 'many slots');
  t.match(await apply(ops), ops.map(() => ({ allowed: true, remaining: 4 })));
  const blocked = f.op([['client', 'blocked']], { requestsPerUnit: 0, unit: 'hour' });
  const denied = await apply([...ops, blocked]);
  t.match(denied.slice(0, 12), ops.map(() => ({ allowed: true, remaining: 4 })), 'the untaken buckets');
  t.match(await apply(ops.map((op) => ({ ...op, cost: 0 }))), ops.map(() => ({ remaining: 4 })), 'every group was given back');
});

await t.test('a cross-slot denial gives back exactly what the other slot groups took', async (t) => {
  const { apply } = redisStoreFor(t, { redisCluster: seeds, mirror: false });
  const f = new OpFactory(uniquePrefix('refund'));
  const cli = (...args: string[]): Promise<string> => cluster.nodes[0]!.cli('-c', ...args);
  const wide = f.op([['remote_address', '10.1.1.1']], { requestsPerUnit: 5, unit: 'hour' });
  const fw = f.op([['user', 'u1']], { requestsPerUnit: 5, unit: 'hour', algorithm: 'fixed_window' });
  const narrow = f.op([['api_key', 'r']], { requestsPerUnit: 1, unit: 'hour' });
  t.equal(new Set([wide.slotTag, fw.slotTag, narrow.slotTag]).size, 3, 'three slots');
  await waitFor('store ready', async () => (await apply([narrow])).length === 1);
  t.match(await apply([wide, fw, narrow]), [{ allowed: true, remaining: 5 }, { allowed: true, remaining: 5 }, { allowed: false }]);
  t.equal(await cli('EXISTS', wide.key), '0', 'token bucket full again: key deleted');
  t.equal(await cli('EXISTS', fw.key), '0', 'window count back to 0: key deleted');

  await apply([wide, fw]);
  const level = await cli('GET', wide.key);
  const count = await cli('GET', fw.key);
  await apply([wide, fw, narrow]);
  // The same bucket: the level at a common instant (level - ts * refill / tick) is unchanged.
  const timeless = (value: string): number => {
    const [l, ts] = value.split(':').map(Number) as [number, number];
    return l - (ts * wide.limit.refillPerTick) / wide.limit.tickUs;
  };
  t.equal(timeless(await cli('GET', wide.key)), timeless(level), 'level restored exactly');
  t.equal(await cli('GET', fw.key), count, 'window count restored');
  const pttl = Number(await cli('PTTL', wide.key));
  t.ok(pttl > 0 && pttl <= 720_000, `PTTL ${pttl} ms: one token of 5/hour`);
  t.match(await apply([{ ...wide, cost: 0 }, { ...fw, cost: 0 }]), [{ remaining: 4 }, { remaining: 4 }]);
});

await t.test('quota_mode in a Cluster: groups on one master decide exactly; groups spread over masters never over-admit', async (t) => {
  const f = new OpFactory(uniquePrefix('quota'));
  const hour = (requestsPerUnit: number) => ({ requestsPerUnit, unit: 'hour' as const });
  const slotsText = await cluster.nodes[0]!.cli('--json', 'CLUSTER', 'SLOTS');
  const ranges = JSON.parse(slotsText) as [number, number, [string, number, string]][];
  const masterOf = (op: { key: string }): number => {
    const slot = clusterSlot(op.key);
    return ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
  };
  // One quota descriptor over its limit, another wholly allowed, on the SAME master: exactly quota_mode.
  const over = f.op([['team', 'over']], hour(0), 1, false, 1);
  let fine = f.op([['team', 'fine-0']], hour(5), 1, false, 2);
  for (let i = 1; masterOf(fine) !== masterOf(over); i++) fine = f.op([['team', `fine-${i}`]], hour(5), 1, false, 2);
  t.match(await apply([over, fine]), [{ allowed: false }, { allowed: true, remaining: 4 }], 'one wholly allowed group admits the request');
  // The same on different masters: each master judges its own groups, so the request is denied (never admitted wrongly).
  let far = f.op([['team', 'far-0']], hour(5), 1, false, 2);
  for (let i = 1; masterOf(far) === masterOf(over); i++) far = f.op([['team', `far-${i}`]], hour(5), 1, false, 2);
  const spread = await apply([over, far]);
  t.match(spread, [{ allowed: false }, { allowed: true }], 'the allowed group reports its tokens');
  t.match(await apply([{ ...far, cost: 0, quotaGroup: undefined }]), [{ remaining: 5 }], 'and took nothing: denied conservatively');
});

await t.test('live resharding under load, default deadline: MOVED/ASK followed, every key allowed exactly its limit', async (t) => {
  // Default settings: a starved CPU may send some decisions to the policy (printed), never past the limit.
  const { store, counts } = redisStoreFor(t, { redisCluster: seeds, policy: 'local' });
  await waitFor('store ready', () => store.health().ready);
  const f = new OpFactory(uniquePrefix('reshard'));
  const limit = { requestsPerUnit: 20, unit: 'hour' } as const;
  const ops = Array.from({ length: 200 }, (_, i) => f.op([['api_key', `reshard-${i}`]], limit));
  const masters = (await cluster.topology()).filter((n) => n.role === 'master' && n.node.running);
  const before = await cluster.mastersOf(ops.map((op) => op.key));
  const from = masters[0]!;
  const to = masters[1]!;
  let resharding = true;
  const reshard = cluster.reshard(from.id, to.id, 2_000).finally(() => { resharding = false; });
  const allowed = new Map<string, number>();
  let decisions = 0;
  let fallbacks = 0;
  // 30 requests per key, sent in waves of 200 concurrent decisions while slots move.
  for (let wave = 0; wave < 30; wave++) {
    const results = await Promise.all(ops.map((op) => store.apply([op])));
    results.forEach((decision, i) => {
      decisions++;
      if (decision.fallback !== undefined) fallbacks++;
      if (decision.outcomes[0]!.allowed) allowed.set(ops[i]!.key, (allowed.get(ops[i]!.key) ?? 0) + 1);
    });
    if (!resharding && wave >= 10) break;
    await sleep(20);
  }
  await reshard;
  const after = await cluster.mastersOf(ops.map((op) => op.key));
  const moved = ops.filter((_, i) => before[i]!.id !== after[i]!.id).length;
  t.ok(moved > 0, `${moved} of ${ops.length} keys changed masters during the load`);
  t.comment(`${decisions} decisions, ${fallbacks} by the failure policy (${counts['timeout'] ?? 0} deadlines missed)`);
  const over = ops.filter((op) => (allowed.get(op.key) ?? 0) > 20);
  t.same(over.map((op) => `${op.key}: ${allowed.get(op.key) ?? 0}`), [], 'no key allowed more than 20');
  // Also where the policy decided: what it admitted is Redis's late take or is written back, what it
  // denied while Redis took is given back.
  const under = ops.filter((op) => (allowed.get(op.key) ?? 0) < 20);
  t.same(under.map((op) => `${op.key}: ${allowed.get(op.key) ?? 0}`), [], 'every key allowed exactly 20');
  const left = await Promise.all(ops.map((op) => store.apply([{ ...op, cost: 0 }])));
  t.ok(left.every((d) => d.outcomes[0]!.remaining === 0), 'every bucket empty after the load, wherever it lives now');
});

await t.test('a master is SIGKILLed: only its keys go to the policy; keys on healthy masters stay exact', async (t) => {
  const { store, counts } = redisStoreFor(t, { redisCluster: seeds, policy: 'local' });
  await waitFor('store ready', () => store.health().ready);
  const f = new OpFactory(uniquePrefix('failover'));
  // Big enough never to deny, slow enough (per year) that refill does not blur the count.
  const limit = { requestsPerUnit: 1_000_000, unit: 'year' } as const;
  const doomed = f.op([['api_key', 'on-victim']], limit);
  const victimInfo = await cluster.masterOf(doomed.key);
  let healthy = f.op([['api_key', 'elsewhere-0']], limit);
  for (let i = 1; (await cluster.masterOf(healthy.key)).id === victimInfo.id; i++) healthy = f.op([['api_key', `elsewhere-${i}`]], limit);
  await store.apply([doomed, healthy]);

  const victim = await cluster.killMaster(doomed.key);
  const killedAt = performance.now();
  let doomedFallbacks = 0;
  let fallbacksBeforeRecovery = 0;
  let healthyFallbacks = 0;
  let healthyAllowed = 0;
  let slowestMs = 0;
  let recoveredMs = -1;
  while (performance.now() - killedAt < 15_000) {
    const start = performance.now();
    // A hang detector (100x the 50 ms deadline), not a speed check: every call is cut at its deadline,
    // so only a broken deadline could hold a decision until the failover ends.
    const [alone, mixed] = await unlessHung(Promise.all([store.apply([healthy]), store.apply([doomed])]), 'a decision during the failover', 5_000);
    slowestMs = Math.max(slowestMs, performance.now() - start);
    if (alone.fallback !== undefined) healthyFallbacks++;
    if (alone.outcomes[0]!.allowed) healthyAllowed++;
    if (mixed.fallback !== undefined) {
      doomedFallbacks++;
      if (recoveredMs < 0) fallbacksBeforeRecovery++;
    } else if (recoveredMs < 0) recoveredMs = performance.now() - killedAt;
    if (recoveredMs >= 0 && performance.now() - killedAt > recoveredMs + 1_000) break;
    await sleep(20);
  }
  // Answered by the policy before Redis decided it again: no decision waited for the failover.
  t.ok(fallbacksBeforeRecovery > 0, `the failed shard's key went to the policy ${fallbacksBeforeRecovery} times before Redis decided it again (${doomedFallbacks} in all)`);
  t.ok(recoveredMs > 0, `its decisions came from Redis again ${recoveredMs.toFixed(0)} ms after the kill`);
  // Within its deadline every time: a call to a healthy master held up by the dead one would have gone to the policy.
  t.equal(healthyFallbacks, 0, 'a key on a healthy master was never decided by the policy');
  t.comment(`slowest round (both decisions) ${slowestMs.toFixed(0)} ms`);
  const [left] = (await store.apply([{ ...healthy, cost: 0 }])).outcomes;
  t.equal(left!.remaining, 1_000_000 - 1 - healthyAllowed, 'the healthy key counted every request exactly');
  t.equal(victim.running, false);
  const owner = await cluster.masterOf(doomed.key);
  t.equal(await owner.node.cli('SCRIPT', 'EXISTS', LIBRARY_SHA), '1', 'the script was loaded on the promoted replica');
  t.ok(store.health().ready, `healthy again: ${store.health().detail}`);
  t.ok((counts['fallbackDecision'] ?? 0) >= doomedFallbacks);
});
