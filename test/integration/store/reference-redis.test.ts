/**
 * The JavaScript reference model (core/algorithms/, core/bucket.ts) and
 * lua/openclaw.lua decide identically: one random sequence of calls (one to
 * four batches each, as coalescing sends them; every algorithm, costs around
 * the capacity, shadow ops, quota groups, several ops on one key, token
 * budgets below zero, reports) runs
 * through Redis; for every batch the model, given the states Redis read and
 * Redis's own clock, must reach the same commit decision, a batch must read
 * what the batches before it in the call committed, and the state Redis
 * wrote must be exactly the state the model computes. Refunds and debits
 * are held to each algorithm's `refund` and `debit` the same way.
 */
import { Redis } from 'ioredis';
import t from 'tap';
import { parseStoredState } from '../../../src/core/algorithms/algorithm.js';
import { algorithmOf } from '../../../src/core/algorithms/table.js';
import { evaluateBatch, takes, type BucketState } from '../../../src/core/bucket.js';
import type { BucketOp } from '../../../src/core/types.js';
import { RedisLibrary } from '../../../src/store/redis/library.js';
import { startRedis } from '../../helpers/redis.js';
import { OpFactory, uniquePrefix, type LimitInput } from '../../helpers/store-contract.js';

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
  // Token budgets: charges recorded whatever the batch decides, balances below zero.
  { requestsPerUnit: 10, unit: 'second', burst: 20, overdraft: true },
  { requestsPerUnit: 7, unit: 'minute', burst: 13, overdraft: true },
];

function storedState(op: BucketOp, text: string | null): BucketState | null {
  const fields = parseStoredState(text);
  return fields === null ? null : algorithmOf(op.limit).fromStored(fields);
}

/** A random request's batch; one in six is a report (every op a charge recorded whatever the batch decides). */
function randomBatch(f: OpFactory, pool: readonly { entries: [string, string][]; limit: LimitInput }[]): BucketOp[] {
  const size = 1 + random(4);
  const report = random(6) === 0;
  const ops: BucketOp[] = [];
  for (let i = 0; i < size; i++) {
    const { entries, limit } = pool[random(pool.length)]!;
    const capacity = limit.burst ?? limit.requestsPerUnit;
    const group = random(4) === 0 ? random(2) : undefined;
    // Budgets: checks and charges up to twice the burst.
    const cost = limit.overdraft === true ? (random(3) === 0 ? 0 : random(2 * capacity + 3)) : random(capacity + 3);
    const op = f.op(entries, limit, cost, random(10) === 0, group);
    if (report) op.report = true;
    ops.push(op);
  }
  return ops;
}

const same = (a: BucketState | null, b: BucketState | null): boolean => JSON.stringify(a) === JSON.stringify(b);

t.test('3000 random calls: Redis and the reference model agree on every decision and every stored state', async (t) => {
  const f = new OpFactory(uniquePrefix('ref'));
  // A small pool of keys, each with its own limit, so batches keep meeting earlier state.
  const pool = Array.from({ length: 2 * LIMITS.length }, (_, i) => ({ entries: [['k', `key-${i}`]] as [string, string][], limit: LIMITS[i % LIMITS.length]! }));
  let decisions = 0;
  let budgetsInDebt = 0;
  const mismatches: string[] = [];
  for (let step = 0; step < 3_000 && mismatches.length < 5; step++) {
    const batches = Array.from({ length: random(3) === 0 ? 2 + random(3) : 1 }, () => randomBatch(f, pool));
    const results = await library.take(batches[0]![0]!.key, batches);
    // The state each key holds now: the last take's next state, else what Redis read.
    const expected = new Map<string, BucketState | null>();
    const limitOf = new Map<string, BucketOp>();
    batches.forEach((ops, b) => {
      const result = results[b]!;
      const model = evaluateBatch(ops, (i) => result.states[i]!, result.nowUs);
      decisions++;
      if ((result.status === 'committed') !== model.commits) {
        mismatches.push(`step ${step} batch ${b}: Redis ${result.status}, model ${model.commits ? 'commits' : 'denies'}`);
      }
      ops.forEach((op, i) => {
        limitOf.set(op.key, op);
        if (expected.has(op.key) && !same(expected.get(op.key)!, result.states[i]!)) {
          mismatches.push(`step ${step} batch ${b}: read ${JSON.stringify(result.states[i])} of ${op.key}, earlier batches left ${JSON.stringify(expected.get(op.key))}`);
        }
        if (!expected.has(op.key)) expected.set(op.key, result.states[i]!);
      });
      ops.forEach((op, i) => {
        // A denied batch takes nothing but its `always` charges (takes() says which).
        if (op.cost > 0 && takes(model.plan, model.evaluations, i)) expected.set(op.key, model.evaluations[i]!.next);
      });
    });
    const keys = [...expected.keys()];
    const stored = await client.mget(...keys);
    keys.forEach((key, i) => {
      const want = expected.get(key)!;
      const have = storedState(limitOf.get(key)!, stored[i] ?? null);
      // A state that expired in between (full again) is deleted by its TTL: only compare what is there.
      if (have === null && want !== null) return;
      if (!same(have, want)) mismatches.push(`step ${step} key ${key}: Redis ${stored[i]}, model ${JSON.stringify(want)}`);
      if (have !== null && have.level < 0) budgetsInDebt++;
    });
  }
  t.same(mismatches, [], `${decisions} batches decided alike`);
  t.ok(budgetsInDebt > 20, `budget states below zero met: ${budgetsInDebt}`);
});

t.test('500 random refunds and debits: Redis changes each state exactly as its algorithm refund and debit say', async (t) => {
  const f = new OpFactory(uniquePrefix('adjust'));
  const pool = Array.from({ length: LIMITS.length }, (_, i) => ({ entries: [['k', `key-${i}`]] as [string, string][], limit: LIMITS[i]! }));
  const mismatches: string[] = [];
  const changed = { refund: 0, debit: 0 };
  for (let step = 0; step < 500 && mismatches.length < 5; step++) {
    const { entries, limit } = pool[random(pool.length)]!;
    const capacity = limit.burst ?? limit.requestsPerUnit;
    const op = f.op(entries, limit, 1 + random(capacity + 2));
    // Take first (so there is something to give back), then refund what the take wrote, or debit.
    const [taken] = await library.take(op.key, [[{ ...op, cost: random(capacity + 1) }]]);
    // The state, its expiry and Redis's time, read at once: a state that expires before the refund or debit runs is not compared.
    const read = await client.multi().get(op.key).pttl(op.key).time().exec();
    const before = storedState(op, read?.[0]?.[1] as string | null);
    const [seconds, micros] = read?.[2]?.[1] as [string, string];
    const expiresAtUs = Number(seconds) * 1_000_000 + Number(micros) + (read?.[1]?.[1] as number) * 1_000;
    const refunding = random(3) > 0; // (the generator's low bit alternates: no random(2) here)
    const chargedStartUs = refunding && random(4) > 0 ? (before?.tsUs ?? 0) : taken!.nowUs;
    const nowUs = refunding
      ? await library.refund(op.key, [op], [chargedStartUs])
      : (await library.debit(op.key, [op])).nowUs;
    const algorithm = algorithmOf(op.limit);
    const change = refunding
      ? algorithm.refund(op.limit, before, nowUs, op.cost, chargedStartUs)
      : algorithm.debit(op.limit, before, nowUs, op.cost);
    const want = change === undefined ? before : change;
    const have = storedState(op, await client.get(op.key));
    if (change !== undefined) changed[refunding ? 'refund' : 'debit']++;
    if (before !== null && nowUs >= expiresAtUs - 1_000) continue; // expired in between (or as good as)
    if (!same(have, want)) {
      mismatches.push(`step ${step} ${refunding ? 'refund' : 'debit'} of ${op.cost} on ${JSON.stringify(before)}: Redis ${JSON.stringify(have)}, model ${JSON.stringify(want)}`);
    }
  }
  t.same(mismatches, [], 'every refund and debit alike');
  t.ok(changed.refund > 25 && changed.debit > 100, `refunds and debits that changed a state: ${JSON.stringify(changed)}`);
});
