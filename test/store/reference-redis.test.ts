/**
 * The JavaScript reference model (core/bucket.ts) and lua/openclaw.lua decide
 * identically: one random sequence of batches (every algorithm, costs around
 * the capacity, shadow ops, quota groups, several ops on one key) runs
 * through Redis; for every batch the model, given the states Redis read and
 * Redis's own clock, must reach the same commit decision, and the state Redis
 * wrote must be exactly the state the model computes.
 */
import { Redis } from 'ioredis';
import t from 'tap';
import { evaluateBatch, takes, type BucketState } from '../../src/core/bucket.js';
import type { BucketOp } from '../../src/core/types.js';
import { RedisLibrary } from '../../src/store/redis/library.js';
import { startRedis } from '../helpers/redis.js';
import { OpFactory, uniquePrefix, type LimitInput } from './contract.js';

const redis = await startRedis({ t });
const client = new Redis({ host: redis.host, port: redis.port, lazyConnect: true });
await client.connect();
t.teardown(() => client.quit());
const library = new RedisLibrary(client);

let seed = 20261201;
const random = (n: number): number => {
  seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
  return seed % n;
};

const LIMITS: LimitInput[] = [
  { requestsPerUnit: 10, unit: 'second', burst: 20 },
  { requestsPerUnit: 3, unit: 'second', burst: 1 },
  { requestsPerUnit: 7, unit: 'minute', burst: 13 },
  { requestsPerUnit: 5, unit: 'second', algorithm: 'fixed_window' },
  { requestsPerUnit: 4, unit: 'second', algorithm: 'sliding_window' },
  { requestsPerUnit: 9, unit: 'second', unitMultiplier: 2, algorithm: 'sliding_window' },
  { requestsPerUnit: 0, unit: 'hour' },
  // Windows longer than the run: exact boundaries (count + cost = limit) are met in every run.
  { requestsPerUnit: 6, unit: 'minute', algorithm: 'sliding_window' },
  { requestsPerUnit: 6, unit: 'minute', algorithm: 'fixed_window' },
];

function parseState(text: string | null): BucketState | null {
  if (text === null) return null;
  const [level, tsUs, prevLevel] = text.split(':').map(Number) as [number, number, number | undefined];
  return prevLevel === undefined ? { level, tsUs } : { level, tsUs, prevLevel };
}

t.test('3000 random batches: Redis and the reference model agree on every decision and every stored state', async (t) => {
  const f = new OpFactory(uniquePrefix('ref'));
  // A small pool of keys, each with its own limit, so batches keep meeting earlier state.
  const pool = Array.from({ length: 2 * LIMITS.length }, (_, i) => ({ entries: [['k', `key-${i}`]] as [string, string][], limit: LIMITS[i % LIMITS.length]! }));
  let decisions = 0;
  const mismatches: string[] = [];
  for (let step = 0; step < 3_000 && mismatches.length < 5; step++) {
    const size = 1 + random(4);
    const ops: BucketOp[] = [];
    for (let i = 0; i < size; i++) {
      const { entries, limit } = pool[random(pool.length)]!;
      const capacity = limit.burst ?? limit.requestsPerUnit;
      const group = random(4) === 0 ? random(2) : undefined;
      ops.push(f.op(entries, limit, random(capacity + 3), random(10) === 0, group));
    }
    const [result] = await library.take(ops[0]!.key, [ops]);
    const model = evaluateBatch(ops, (i) => result!.states[i]!, result!.nowUs);
    decisions++;
    const luaCommitted = result!.status === 'committed';
    if (luaCommitted !== model.commits) {
      mismatches.push(`step ${step}: Redis ${result!.status}, model ${model.commits ? 'commits' : 'denies'}`);
      continue;
    }
    // The state each key holds now: the last take's next state, else what Redis read.
    const expected = new Map<string, BucketState | null>();
    ops.forEach((op, i) => {
      if (!expected.has(op.key)) expected.set(op.key, result!.states[i]!);
      if (model.commits && op.cost > 0 && takes(model.plan, model.evaluations, i)) expected.set(op.key, model.evaluations[i]!.next);
    });
    const keys = [...expected.keys()];
    const stored = await client.mget(...keys);
    keys.forEach((key, i) => {
      const want = expected.get(key)!;
      const have = parseState(stored[i] ?? null);
      // A state that expired in between (full again) is deleted by its TTL: only compare what is there.
      if (have === null && want !== null) return;
      if (JSON.stringify(have) !== JSON.stringify(want === null ? null : { ...want })) {
        mismatches.push(`step ${step} key ${key}: Redis ${stored[i]}, model ${JSON.stringify(want)}`);
      }
    });
  }
  t.same(mismatches, [], `${decisions} batches decided alike`);
});
