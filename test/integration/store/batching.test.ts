import t from 'tap';
import { bucketKey, encodeEntries, slotTagFor } from '../../../src/core/keys.js';
import { compileLimit } from '../../../src/core/limit.js';
import type { BucketOp } from '../../../src/core/types.js';
import { clusterSlot } from '../../../src/store/redis/cluster-slot.js';
import { startRedis } from '../../helpers/redis.js';
import { redisStoreFor } from './redis-helper.js';

const limit = compileLimit({ requestsPerUnit: 10, unit: 'minute' });
function op(value: string, cost = 1): BucketOp {
  const entries = [{ key: 'api_key', value }];
  const slotTag = slotTagFor(entries);
  return { key: bucketKey('rl:', slotTag, `1:d:${limit.fingerprint}`, encodeEntries(entries, (x) => x)), slotTag, limit, cost, shadow: false };
}

async function commandCalls(cli: (...args: string[]) => Promise<string>, command: string): Promise<number> {
  const stats = await cli('INFO', 'commandstats');
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
}

t.test('clusterSlot agrees with CLUSTER KEYSLOT for every kind of key', async (t) => {
  const redis = await startRedis({ t, args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'] });
  const keys = ['foo', '123456789', '{user1000}.following', 'a{}b', '{}x{y}', 'x{y}z{w}', '{{a}}', 'ünïcødé{κλειδί}', 'é{ab}c', '{é}x', 'x{é', 'ä{}{b}', op('k1').key];
  for (let i = 0; i < 200; i++) keys.push(op(`client-${i}-${'z'.repeat(i % 7)}`).key);
  for (const key of keys) {
    const expected = Number(await redis.cli('CLUSTER', 'KEYSLOT', key));
    if (clusterSlot(key) !== expected) t.fail(`slot of ${JSON.stringify(key)}`, { found: clusterSlot(key), wanted: expected });
  }
  t.pass(`${keys.length} keys agree`);
});

t.test('concurrent decisions are coalesced into one script call, each decided on its own', async (t) => {
  const redis = await startRedis({ t });
  // mirror off: this counts script calls, and the mirror would answer the hot key's denials locally.
  const { store, apply } = redisStoreFor(t, { redis: redis.url, mirror: false });
  t.ok(await store.waitUntilConnected(5_000));
  await apply([op('warm')]);
  const before = await commandCalls(redis.cli.bind(redis), 'evalsha') + await commandCalls(redis.cli.bind(redis), 'eval');
  // 60 requests at once: 30 on one key (limit 10), 30 on distinct keys; one denied batch in the middle.
  const requests = Array.from({ length: 60 }, (_, i) => apply(i % 2 === 0 ? [op('hot')] : [op(`cold-${i}`), op('hot', 0)]));
  const outcomes = await Promise.all(requests);
  const after = await commandCalls(redis.cli.bind(redis), 'evalsha') + await commandCalls(redis.cli.bind(redis), 'eval');
  t.equal(after - before, 1, '60 decisions, one script call');
  const hotAllowed = outcomes.filter((o, i) => i % 2 === 0 && o[0]!.allowed).length;
  t.equal(hotAllowed, 10, 'batches in one call still share the limit exactly');
  t.ok(outcomes.every((o, i) => i % 2 === 0 || o[0]!.allowed), 'every cold key allowed');
  const final = await apply([op('hot', 0)]);
  t.equal(final[0]!.remaining, 0);
});

t.test('with a batch window, decisions that arrive in separate event-loop turns share script calls', async (t) => {
  const redis = await startRedis({ t });
  const calls = async (): Promise<number> =>
    await commandCalls(redis.cli.bind(redis), 'evalsha') + await commandCalls(redis.cli.bind(redis), 'eval');
  // Ten decisions, each in its own turn of the event loop (as requests spread out in time arrive).
  const spread = async (apply: (ops: readonly BucketOp[]) => Promise<unknown>, label: string): Promise<number> => {
    const before = await calls();
    const decisions: Promise<unknown>[] = [];
    for (let i = 0; i < 10; i++) {
      decisions.push(apply([op(`${label}-${i}`)]));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const outcomes = await Promise.all(decisions) as { allowed: boolean; remaining: number }[][];
    t.ok(outcomes.every((o) => o[0]!.allowed && o[0]!.remaining === 9), `${label}: each decided on its own key`);
    return await calls() - before;
  };
  const plain = redisStoreFor(t, { redis: redis.url, mirror: false });
  const windowed = redisStoreFor(t, { redis: redis.url, mirror: false, redisBatchWindowMs: 20 });
  t.ok(await plain.store.waitUntilConnected(5_000));
  t.ok(await windowed.store.waitUntilConnected(5_000));
  await plain.apply([op('warm')]);
  const without = await spread(plain.apply, 'plain');
  const within = await spread(windowed.apply, 'windowed');
  t.comment(`script calls for 10 decisions in 10 turns: ${without} without a window, ${within} with 20 ms`);
  t.ok(without >= 5, `without a window, a call per turn or nearly (${without})`);
  // Only a stall of this process longer than the 20 ms window splits them: four calls would take three such stalls within ten quick turns.
  t.ok(within <= 3, `with a window, they share calls (${within})`);
});
