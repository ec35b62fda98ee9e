/**
 * The store contract: one suite run against every Store (memory, single
 * Redis, Redis Cluster). The stores must decide identically; values that
 * depend on real time (resetUs, retryAfterUs after the first hit) are compared
 * with a tolerance of the wall time that passed.
 */
import { createHash } from 'node:crypto';
import type { Test } from 'tap';
import { evaluate } from '../../src/core/bucket.js';
import { bucketKey, encodeEntries, slotTagFor } from '../../src/core/keys.js';
import { compileLimit } from '../../src/core/limit.js';
import type { Algorithm, BucketOp, BucketOutcome, Entry, LimitSpec, Unit } from '../../src/core/types.js';
import type { Store } from '../../src/core/store.js';

const SECOND_US = 1_000_000;
/** Slack for time-dependent values: scheduling on a shared 2-core machine. */
const SLACK_US = 250_000;

const sha1 = (text: string): string => createHash('sha1').update(text).digest('hex');

export interface LimitInput {
  requestsPerUnit: number;
  unit: Unit;
  unitMultiplier?: number;
  burst?: number;
  algorithm?: Algorithm;
  overdraft?: boolean;
}

/** Builds BucketOps the way the limiter does (compileLimit + bucketKey). */
export class OpFactory {
  private readonly limits = new Map<string, LimitSpec>();
  constructor(readonly prefix: string) {}

  limit(input: LimitInput): LimitSpec {
    const id = JSON.stringify(input);
    let limit = this.limits.get(id);
    if (limit === undefined) {
      limit = compileLimit(input);
      this.limits.set(id, limit);
    }
    return limit;
  }

  /** `entries` as [key, value] pairs; the last one picks the slot. */
  op(entries: [string, string][], input: LimitInput, cost = 1, shadow = false, quotaGroup?: number): BucketOp {
    const list: Entry[] = entries.map(([key, value]) => ({ key, value }));
    const limit = this.limit(input);
    const tag = slotTagFor(list);
    const op: BucketOp = { key: bucketKey(this.prefix, tag, `contract_${limit.fingerprint}`, encodeEntries(list, sha1)), slotTag: tag, limit, cost, shadow };
    if (quotaGroup !== undefined) op.quotaGroup = quotaGroup;
    return op;
  }
}

export function uniquePrefix(label: string): string {
  return `ct:${label}:${process.pid}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}:`;
}

/** What a single-op batch on a bucket that was never seen must return, exactly. */
function freshOutcome(limit: LimitSpec, cost: number, shadow = false): BucketOutcome {
  const evaluation = evaluate(limit, null, 1_700_000_000 * SECOND_US, cost);
  return evaluation.outcome.allowed || shadow ? evaluation.outcome : evaluation.untaken;
}

function near(t: Test, actual: number, expected: number, slackUs: number, what: string): void {
  t.ok(Math.abs(actual - expected) <= slackUs, `${what}: ${actual} within ${slackUs} of ${expected}`);
}

const elapsedUs = (startMs: number): number => Math.ceil((performance.now() - startMs) * 1000);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface ContractOptions {
  /** A label for key prefixes. */
  label: string;
  /**
   * False for a Redis Cluster: its masters judge the quota groups they hold,
   * so groups spread over masters are decided conservatively (tested in
   * redis-cluster.test.ts instead).
   */
  quotaAcrossSlots?: boolean;
}

/** Runs the whole contract against `store` (created and closed by the caller). */
export async function storeContract(t: Test, store: Store, options: ContractOptions): Promise<void> {
  let n = 0;
  const factory = (): OpFactory => new OpFactory(uniquePrefix(`${options.label}${n++}`));
  // A healthy store decides every op itself: a fallback here is a failure of the contract.
  const apply = async (ops: readonly BucketOp[]): Promise<BucketOutcome[]> => {
    const decision = await store.apply(ops);
    if (decision.fallback !== undefined) throw new Error(`the ${options.label} store fell back to ${decision.fallback}`);
    return decision.outcomes;
  };
  const one = async (op: BucketOp): Promise<BucketOutcome> => (await apply([op]))[0]!;

  await t.test('an empty batch decides nothing', async (t) => {
    t.same(await apply([]), []);
  });

  await t.test('a bucket never seen decides exactly as evaluate() on a full bucket', async (t) => {
    const f = factory();
    const limits: LimitInput[] = [
      { requestsPerUnit: 10, unit: 'second', burst: 20 },
      { requestsPerUnit: 7, unit: 'second', burst: 13 },
      { requestsPerUnit: 5, unit: 'minute' },
      { requestsPerUnit: 600, unit: 'minute' },
      { requestsPerUnit: 1000, unit: 'hour', burst: 1 },
      { requestsPerUnit: 100_000, unit: 'day' },
      { requestsPerUnit: 3, unit: 'week' },
      { requestsPerUnit: 2, unit: 'month', burst: 9 },
      { requestsPerUnit: 1, unit: 'year' },
      { requestsPerUnit: 1_000_000, unit: 'second', burst: 5_000_000 },
    ];
    let k = 0;
    for (const input of limits) {
      const limit = f.limit(input);
      for (const cost of [0, 1, 3, limit.burst, limit.burst + 1]) {
        const op = f.op([['client', `c${k++}`]], input, cost);
        t.same(await one(op), freshOutcome(limit, cost), `${limit.fingerprint} cost ${cost}`);
      }
    }
  });

  await t.test('a burst passes, then the next request is denied and reports the untaken bucket', async (t) => {
    const f = factory();
    const input = { requestsPerUnit: 5, unit: 'minute' as const };
    const op = f.op([['api_key', 'k1']], input);
    const start = performance.now();
    for (let i = 4; i >= 0; i--) {
      const outcome = await one(op);
      t.equal(outcome.allowed, true);
      t.equal(outcome.remaining, i, `remaining ${i}`);
    }
    const denied = await one(op);
    const slack = elapsedUs(start) + SLACK_US;
    t.equal(denied.allowed, false);
    t.equal(denied.remaining, 0);
    t.ok(denied.retryAfterUs > 0 && denied.retryAfterUs <= 12 * SECOND_US, `retryAfterUs ${denied.retryAfterUs} <= 12 s`);
    near(t, denied.retryAfterUs, 12 * SECOND_US, slack, 'retryAfterUs');
    near(t, denied.resetUs, 60 * SECOND_US, slack, 'resetUs');
  });

  await t.test('a cost takes that many tokens; a cost above the burst is always denied and takes nothing', async (t) => {
    const f = factory();
    const input = { requestsPerUnit: 5, unit: 'hour' as const };
    const three = f.op([['api_key', 'k']], input, 3);
    t.match(await one(three), { allowed: true, remaining: 2 });
    t.match(await one(three), { allowed: false, remaining: 2 }, 'denied: nothing taken');
    t.match(await one(f.op([['api_key', 'k']], input, 2)), { allowed: true, remaining: 0 });
    const big = f.op([['api_key', 'other']], input, 6);
    t.match(await one(big), { allowed: false, remaining: 5 });
    t.match(await one(f.op([['api_key', 'other']], input, 1)), { allowed: true, remaining: 4 }, 'the big cost took nothing');
  });

  for (const sameSlot of [true, false]) {
    await t.test(`a denied request takes no tokens from its other limits (${sameSlot ? 'same slot' : 'different slots'})`, async (t) => {
      const f = factory();
      const wide = { requestsPerUnit: 5, unit: 'hour' as const };
      const narrow = { requestsPerUnit: 1, unit: 'hour' as const };
      const a = sameSlot ? f.op([['path', '/rating'], ['api_key', 'k']], wide) : f.op([['remote_address', '10.0.0.1']], wide);
      const b = f.op([['api_key', 'k']], narrow);
      t.equal(a.slotTag === b.slotTag, sameSlot, 'slot layout as intended');
      t.match(await one(b), { allowed: true, remaining: 0 });
      const [oa, ob] = await apply([a, b]);
      t.match(oa, { allowed: true, remaining: 5 }, 'the allowed limit reports its untaken bucket');
      t.match(ob, { allowed: false, remaining: 0 });
      t.ok(ob!.retryAfterUs > 0, 'retry after > 0');
      t.match(await one({ ...a, cost: 0 }), { allowed: true, remaining: 5 }, 'nothing was taken from the other limit');
      t.match(await one(a), { allowed: true, remaining: 4 });
    });
  }

  await t.test('a batch where every limit allows takes from each', async (t) => {
    const f = factory();
    const a = f.op([['remote_address', '10.0.0.2']], { requestsPerUnit: 5, unit: 'hour' });
    const b = f.op([['api_key', 'k2']], { requestsPerUnit: 3, unit: 'hour' });
    const c = f.op([['path', '/x'], ['api_key', 'k2']], { requestsPerUnit: 10, unit: 'hour' }, 2);
    const outcomes = await apply([a, b, c]);
    t.match(outcomes, [{ allowed: true, remaining: 4 }, { allowed: true, remaining: 2 }, { allowed: true, remaining: 8 }]);
  });

  await t.test('shadow ops never deny; a shadow op over its limit takes nothing, an allowed one takes', async (t) => {
    const f = factory();
    const normal = f.op([['api_key', 'k']], { requestsPerUnit: 5, unit: 'hour' });
    const shadowInput = { requestsPerUnit: 1, unit: 'hour' as const };
    const shadow = f.op([['path', '/s'], ['api_key', 'k']], shadowInput, 1, true);
    t.match(await apply([normal, shadow]), [{ allowed: true, remaining: 4 }, { allowed: true, remaining: 0 }], 'shadow allowed takes');
    const [on, os] = await apply([normal, shadow]);
    t.match(on, { allowed: true, remaining: 3 }, 'the batch commits despite the shadow op');
    t.match(os, { allowed: false, remaining: 0 });
    t.ok(os!.retryAfterUs > 0);
    const otherSlotShadow = f.op([['remote_address', '10.9.9.9']], shadowInput, 1, true);
    t.match(await one(otherSlotShadow), { allowed: true });
    t.match(await apply([normal, otherSlotShadow]), [{ allowed: true, remaining: 2 }, { allowed: false }], 'also across slots');
  });

  await t.test('check-only (cost 0) passes and takes nothing, even on an empty bucket', async (t) => {
    const f = factory();
    const input = { requestsPerUnit: 2, unit: 'hour' as const };
    const check = f.op([['api_key', 'k']], input, 0);
    t.same(await one(check), freshOutcome(f.limit(input), 0));
    t.match(await one(f.op([['api_key', 'k']], input, 2)), { allowed: true, remaining: 0 });
    t.match(await one(check), { allowed: true, remaining: 0, retryAfterUs: 0 });
    t.match(await one(f.op([['api_key', 'k']], input, 1)), { allowed: false, remaining: 0 });
  });

  await t.test('requests_per_unit 0 is always over; check-only still passes', async (t) => {
    const f = factory();
    for (const algorithm of ['token_bucket', 'fixed_window'] as const) {
      const input = { requestsPerUnit: 0, unit: 'minute' as const, algorithm };
      const outcome = await one(f.op([['blocked', algorithm]], input));
      t.equal(outcome.allowed, false, `${algorithm} denies`);
      t.equal(outcome.remaining, 0);
      if (algorithm === 'token_bucket') t.equal(outcome.retryAfterUs, 60 * SECOND_US);
      else t.ok(outcome.retryAfterUs > 0 && outcome.retryAfterUs <= 60 * SECOND_US);
      t.match(await one(f.op([['blocked', algorithm]], input, 0)), { allowed: true, remaining: 0 }, `${algorithm} check-only`);
    }
  });

  await t.test('fixed window counts hits in a window aligned to the Unix epoch', async (t) => {
    const f = factory();
    const input = { requestsPerUnit: 3, unit: 'minute' as const, algorithm: 'fixed_window' as const };
    const unitUs = 60 * SECOND_US;
    const untilBoundaryUs = unitUs - ((Date.now() * 1000) % unitUs);
    if (untilBoundaryUs < 3 * SECOND_US) await sleep(untilBoundaryUs / 1000 + 100);
    const op = f.op([['api_key', 'fw']], input);
    for (let i = 2; i >= 0; i--) {
      const outcome = await one(op);
      t.match(outcome, { allowed: true, remaining: i, retryAfterUs: 0 });
      const phaseUs = (Date.now() * 1000 + outcome.resetUs) % unitUs;
      t.ok(Math.min(phaseUs, unitUs - phaseUs) < SECOND_US, `window ends on a minute boundary (phase ${phaseUs} µs)`);
    }
    const denied = await one(op);
    t.match(denied, { allowed: false, remaining: 0 });
    t.equal(denied.retryAfterUs, denied.resetUs, 'retry at the window end');
    // A fixed-window limit next to a denying limit is not counted.
    const fw = f.op([['path', '/p'], ['api_key', 'fw2']], input);
    const blocked = f.op([['api_key', 'fw2']], { requestsPerUnit: 0, unit: 'hour' });
    t.match(await apply([fw, blocked]), [{ allowed: true, remaining: 3 }, { allowed: false }]);
    t.match(await one(fw), { allowed: true, remaining: 2 }, 'the denied request was not counted');
    t.match(await one(f.op([['path', '/p'], ['api_key', 'fw2']], input, 5)), { allowed: false, remaining: 2 }, 'cost above the rest is denied');
  });

  await t.test('tokens refill: after retryAfter the request passes again', async (t) => {
    const f = factory();
    const op = f.op([['api_key', 'fast']], { requestsPerUnit: 10, unit: 'second', burst: 2 });
    t.match(await one(op), { allowed: true, remaining: 1 });
    t.match(await one(op), { allowed: true, remaining: 0 });
    const denied = await one(op);
    t.equal(denied.allowed, false);
    t.ok(denied.retryAfterUs > 0 && denied.retryAfterUs <= 100_000, `retryAfterUs ${denied.retryAfterUs} <= 100 ms`);
    t.ok(denied.resetUs > 100_000 && denied.resetUs <= 200_000, `resetUs ${denied.resetUs} <= 200 ms`);
    await sleep(denied.retryAfterUs / 1000 + 15);
    t.match(await one(op), { allowed: true, remaining: 0 });
    await sleep(250);
    t.match(await one({ ...op, cost: 0 }), { allowed: true, remaining: 2 }, 'full again after resetUs');
  });

  await t.test('ops on the same key in one batch see each other\'s takes', async (t) => {
    const f = factory();
    const input = { requestsPerUnit: 3, unit: 'hour' as const };
    const op = f.op([['api_key', 'dup']], input);
    t.match(await apply([op, op]), [{ allowed: true, remaining: 2 }, { allowed: true, remaining: 1 }]);
    const two = f.op([['api_key', 'dup']], input, 2);
    const [first, second] = await apply([op, two]);
    t.match(first, { allowed: true }, 'the first fits');
    t.match(second, { allowed: false }, 'the second does not fit after the first');
    t.match(await one({ ...op, cost: 0 }), { allowed: true, remaining: 1 }, 'the denied batch took nothing');
  });

  await t.test('a period of unit × unit_multiplier: windows of 5 minutes, buckets refilled over 5 minutes', async (t) => {
    const f = factory();
    const bucket = f.op([['api_key', 'm']], { requestsPerUnit: 10, unit: 'minute', unitMultiplier: 5 });
    t.same(await one(bucket), freshOutcome(f.limit({ requestsPerUnit: 10, unit: 'minute', unitMultiplier: 5 }), 1));
    const window = f.op([['api_key', 'm']], { requestsPerUnit: 10, unit: 'minute', unitMultiplier: 5, algorithm: 'fixed_window' }, 10);
    const outcome = await one(window);
    t.match(outcome, { allowed: true, remaining: 0 });
    const phaseUs = (Date.now() * 1000 + outcome.resetUs) % (300 * SECOND_US);
    t.ok(Math.min(phaseUs, 300 * SECOND_US - phaseUs) < SECOND_US, `the window ends on a 5-minute boundary (phase ${phaseUs} µs)`);
  });

  await t.test('sliding window: counts in an epoch-aligned window, weighs the previous one, denials count nothing', async (t) => {
      const f = factory();
      const input = { requestsPerUnit: 10, unit: 'second' as const, algorithm: 'sliding_window' as const };
      const limit = f.limit(input);
      for (const cost of [0, 1, 10, 11]) {
        // The reset of a fresh window depends on the time into it: compared as a range.
        const { resetUs, ...rest } = await one(f.op([['fresh', `c${cost}`]], input, cost));
        const { resetUs: _, ...expected } = freshOutcome(limit, cost);
        t.same(rest, expected, `fresh, cost ${cost}`);
        t.ok(cost === 0 || cost > 10 ? resetUs === 0 : resetUs > SECOND_US && resetUs <= 2 * SECOND_US, `fresh, cost ${cost}: reset ${resetUs} µs`);
      }
      // Start early in a second so the window does not end under the burst.
      const intoSecondMs = Date.now() % 1000;
      if (intoSecondMs > 300) await sleep(1000 - intoSecondMs + 20);
      const op = f.op([['api_key', 'sw']], input);
      t.match(await one({ ...op, cost: 10 }), { allowed: true, remaining: 0 });
      const denied = await one(op);
      t.match(denied, { allowed: false, remaining: 0 });
      t.ok(denied.retryAfterUs > 0 && denied.retryAfterUs <= 1_100_000, `retry in the next window (${denied.retryAfterUs} µs)`);
      t.ok(denied.resetUs > SECOND_US && denied.resetUs <= 2 * SECOND_US, `reset when the next window ends (${denied.resetUs} µs)`);
      // Half-way through the next second the 10 weigh about 5.
      await sleep(1000 - (Date.now() % 1000) + 500);
      const half = await one({ ...op, cost: 0 });
      t.ok(half.remaining >= 3 && half.remaining <= 6, `about half the limit is back (${half.remaining})`);
      const rest = await one({ ...op, cost: half.remaining });
      t.ok(rest.allowed && rest.remaining <= 1, `what was left could be taken (${rest.remaining} left after)`);
    });

  await t.test('quota groups: ordinary ops must pass; one wholly passing quota group is enough; an over group takes nothing',
    {
      skip: options.quotaAcrossSlots === false ? 'quota groups on several masters: redis-cluster.test.ts tests what a Cluster decides' : false,
    }, async (t) => {
      const f = factory();
      const hour = (requestsPerUnit: number) => ({ requestsPerUnit, unit: 'hour' as const });
      const ordinary = f.op([['remote_address', '10.1.1.1']], hour(5));
      const free = f.op([['plan', 'free']], hour(1), 1, false, 1);
      const teamA = f.op([['plan', 'team'], ['limit', 'a']], hour(10), 1, false, 2);
      const teamB = f.op([['plan', 'team'], ['limit', 'b']], hour(1), 1, false, 2);
      t.match(await apply([ordinary, free, teamA, teamB]), [{ allowed: true, remaining: 4 }, { allowed: true, remaining: 0 },
        { allowed: true, remaining: 9 }, { allowed: true, remaining: 0 }], 'all pass: all take');
      t.match(await apply([ordinary, free, teamA, teamB]), [{ allowed: true, remaining: 4 }, { allowed: false }, { allowed: true, remaining: 9 }, { allowed: false }],
        'every quota group over (team over by its limit b): nothing is taken, the allowed ops report their untaken state');
      t.match(await one({ ...ordinary, cost: 0 }), { remaining: 4 }, 'the ordinary op took nothing');
      const teamC = f.op([['plan', 'team'], ['limit', 'c']], hour(3), 1, false, 3);
      t.match(await apply([ordinary, free, teamA, teamB, teamC]),
        [{ allowed: true, remaining: 3 }, { allowed: false }, { allowed: true, remaining: 9 }, { allowed: false }, { allowed: true, remaining: 2 }],
        'one quota group wholly passes: the batch commits; the over group (a and b) takes nothing, not even a');
      const blocked = f.op([['api_key', 'blocked']], { requestsPerUnit: 0, unit: 'hour' });
      t.match(await apply([blocked, teamC]), [{ allowed: false }, { allowed: true, remaining: 2 }], 'an ordinary denial denies whatever the quota groups');
    });

  await t.test('a token budget: checks pass above zero, a charge is always recorded and goes below zero, refills pay the debt', async (t) => {
    const f = factory();
    const budget = { requestsPerUnit: 3600, unit: 'hour' as const, overdraft: true };
    const check = f.op([['tenant', 't1']], budget, 0);
    const charge = (cost: number): BucketOp => ({ ...check, cost });
    t.match(await one(check), { allowed: true, remaining: 3600 });
    t.match(await one(charge(5000)), { allowed: true, remaining: 0, debt: 1400 }, 'the charge was made while the balance was above zero: OK, now in debt');
    const start = performance.now();
    const denied = await one(check);
    const slack = elapsedUs(start) + SLACK_US;
    t.match(denied, { allowed: false, remaining: 0 });
    t.ok(denied.debt! >= 1399 && denied.debt! <= 1400, `the debt is owed (${denied.debt})`);
    near(t, denied.retryAfterUs, 1400 * SECOND_US, slack, 'Retry-After: until the balance is above zero again');
    t.ok(denied.retryAfterUs > 1399 * SECOND_US - slack, 'the wait covers the debt');
    const again = await one(charge(100));
    t.match(again, { allowed: false, remaining: 0 }, 'a charge in debt is OVER_LIMIT');
    t.ok(again.debt! >= 1499 && again.debt! <= 1500, `and recorded all the same (${again.debt})`);
  });

  for (const sameSlot of [true, false]) {
    await t.test(`a budget's charge is recorded when another limit of the request denies (${sameSlot ? 'same slot' : 'different slots'})`, async (t) => {
      const f = factory();
      const budget = { requestsPerUnit: 100, unit: 'hour' as const, overdraft: true };
      const narrow = { requestsPerUnit: 1, unit: 'hour' as const };
      const charge = sameSlot ? f.op([['path', '/llm'], ['tenant', 't2']], budget, 30) : f.op([['model', 'm1']], budget, 30);
      const other = f.op([['tenant', 't2']], narrow);
      t.equal(charge.slotTag === other.slotTag, sameSlot, 'slot layout as intended');
      t.match(await one(other), { allowed: true, remaining: 0 });
      const [oc, oo] = await apply([charge, other]);
      t.match(oo, { allowed: false }, 'the request is denied by the other limit');
      t.match(oc, { allowed: true, remaining: 70 }, 'the charge is reported taken');
      t.match(await one({ ...charge, cost: 0 }), { allowed: true, remaining: 70 }, 'and it was recorded (never given back)');
      t.match(await one({ ...other, cost: 0 }), { remaining: 0 }, 'the other limit is as it was');
    });
  }

  await t.test('a report records every charge: an ordinary limit as far as it has tokens, a budget in full', async (t) => {
    const f = factory();
    const report = (op: BucketOp): BucketOp => ({ ...op, report: true });
    const ordinary = f.op([['api_key', 'rep']], { requestsPerUnit: 10, unit: 'hour' }, 4);
    const budget = f.op([['tenant', 'rep']], { requestsPerUnit: 10, unit: 'hour', overdraft: true }, 25);
    t.match(await apply([report(ordinary), report(budget)]), [{ allowed: true, remaining: 6 }, { allowed: true, remaining: 0, debt: 15 }]);
    t.match(await apply([report({ ...ordinary, cost: 8 }), report(budget)]), [{ allowed: false, remaining: 0 }, { allowed: false, remaining: 0, debt: 40 }],
      'over: the ordinary limit is emptied (never below zero), the budget goes deeper');
    t.match(await one({ ...ordinary, cost: 0 }), { allowed: true, remaining: 0 });
    t.match(await one({ ...budget, cost: 0 }), { allowed: false, debt: 40 });
    const window = f.op([['api_key', 'rep']], { requestsPerUnit: 5, unit: 'hour', algorithm: 'fixed_window' }, 7);
    t.match(await one(report(window)), { allowed: false, remaining: 0 }, 'a window is filled to its maximum');
    t.match(await one({ ...window, cost: 1 }), { allowed: false, remaining: 0 });
  });

  await t.test('concurrent budget charges sum exactly', async (t) => {
    const f = factory();
    const charge = f.op([['tenant', 'crowd']], { requestsPerUnit: 1000, unit: 'day', overdraft: true }, 37);
    await Promise.all(Array.from({ length: 60 }, () => one(charge)));
    const after = await one({ ...charge, cost: 0 });
    // 60 × 37 = 2220 charged on 1000: 1220 owed (a day's refill of the elapsed second is below one token).
    t.match(after, { allowed: false, remaining: 0 });
    t.ok(after.debt === 1220 || after.debt === 1219, `every charge counted once: debt ${after.debt}`);
  });

  await t.test('concurrent requests never over-admit', async (t) => {
    const f = factory();
    const op = f.op([['api_key', 'crowd']], { requestsPerUnit: 30, unit: 'hour' });
    const outcomes = await Promise.all(Array.from({ length: 100 }, () => one(op)));
    t.equal(outcomes.filter((o) => o.allowed).length, 30, 'exactly the burst passes');
    const remaining = outcomes.filter((o) => o.allowed).map((o) => o.remaining).sort((x, y) => x - y);
    t.same(remaining, Array.from({ length: 30 }, (_, i) => i), 'each remaining value once');
  });
}
