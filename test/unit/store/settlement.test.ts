// Settlement without Redis: a request's answer from its groups' outcomes,
// with the refunds and write-back debits the store is to carry out.
import t from 'tap';
import { StoreCallError } from '../../../src/errors.js';
import { evaluateBatch, type BucketState } from '../../../src/core/bucket.js';
import type { BucketOp, BucketOutcome } from '../../../src/core/types.js';
import type { OpGroup } from '../../../src/store/redis/node-groups.js';
import { failedShare, refundOf, settle, type FinalOutcome } from '../../../src/store/redis/settlement.js';
import { OpFactory } from '../../helpers/store-contract.js';

const NOW_US = 1_700_000_000_000_000;
const f = new OpFactory('settle:');
const perHour = { requestsPerUnit: 10, unit: 'hour' } as const;

function group(node: string, indices: number[], ops: readonly BucketOp[]): OpGroup {
  return { node, queue: node, routingKey: ops[indices[0]!]!.key, indices };
}

/** What Redis decides for a group whose keys hold `state` (null: never seen, full). */
function decided(ops: readonly BucketOp[], indices: number[], node: string, state: BucketState | null = null): FinalOutcome {
  const groupOps = indices.map((i) => ops[i]!);
  return { kind: 'decided', group: group(node, indices, ops), ops: groupOps, evaluation: evaluateBatch(groupOps, () => state, NOW_US) };
}

function failed(ops: readonly BucketOp[], indices: number[], node: string): FinalOutcome {
  return { kind: 'failed', group: group(node, indices, ops), ops: indices.map((i) => ops[i]!), error: new Error(`${node} down`) };
}

const allowedBy = (remaining: number): BucketOutcome => ({ allowed: true, remaining, resetUs: 0, retryAfterUs: 0 });
const empty: BucketState = { level: 0, tsUs: NOW_US };

t.test('every group committed: allowed, each op reports its group\'s outcome, nothing to refund or write back', async (t) => {
  const ops = [f.op([['k', 'a']], perHour), f.op([['k', 'b']], perHour), f.op([['k', 'c']], perHour)];
  const settled = settle(ops, [decided(ops, [0, 2], 'n1'), decided(ops, [1], 'n2')], undefined);
  t.equal(settled.kind, 'answered');
  if (settled.kind !== 'answered') return;
  t.equal(settled.allowed, true);
  t.same(settled.decision.outcomes.map((o) => [o.allowed, o.remaining]), [[true, 9], [true, 9], [true, 9]]);
  t.equal(settled.decision.fallback, undefined);
  t.same(settled.refunds, []);
  t.same(settled.debits, []);
});

t.test('a cross-slot denial: denied, every op reports its untaken state, the committed group is refunded', async (t) => {
  const ops = [f.op([['k', 'a']], perHour), f.op([['k', 'b']], perHour)];
  const committed = decided(ops, [0], 'n1');
  const settled = settle(ops, [committed, decided(ops, [1], 'n2', empty)], undefined);
  if (settled.kind !== 'answered') { t.fail('answered'); return; }
  t.equal(settled.allowed, false);
  t.same(settled.decision.outcomes.map((o) => [o.allowed, o.remaining]), [[true, 10], [false, 0]], 'a: as it was (untaken); b: denied');
  t.equal(settled.refunds.length, 1);
  t.same(settled.refunds[0]!.ops.map((op) => op.key), [ops[0]!.key]);
  if (committed.kind !== 'decided') { t.fail('decided'); return; }
  t.same(settled.refunds[0], refundOf(committed.group, committed.ops, committed.evaluation), 'what refundOf finds for the group');
});

t.test('a failed group: the policy\'s verdict decides it; what `local` admitted is written back, check-only ops are not', async (t) => {
  const ops = [f.op([['k', 'a']], perHour), f.op([['k', 'b']], perHour), f.op([['k', 'c']], perHour, 0)];
  const outcomes = [decided(ops, [0], 'n1'), failed(ops, [1, 2], 'n2')];
  const share = failedShare(outcomes);
  t.same(share?.ops.map((op) => op.key), [ops[1]!.key, ops[2]!.key]);
  t.equal(share?.deniedByRedis, false);
  const settled = settle(ops, outcomes, { kind: 'decided', policy: 'local', commits: true, outcomes: [allowedBy(4), allowedBy(5)] });
  if (settled.kind !== 'answered') { t.fail('answered'); return; }
  t.equal(settled.allowed, true);
  t.equal(settled.decision.fallback, 'local');
  t.same(settled.decision.outcomes.map((o) => o.remaining), [9, 4, 5]);
  t.same(settled.debits.map((op) => op.key), [ops[1]!.key], 'the cost-0 op owes nothing');
  const allowPolicy = settle(ops, outcomes, { kind: 'decided', policy: 'allow', commits: true, outcomes: [allowedBy(10), allowedBy(10)] });
  t.same(allowPolicy.kind === 'answered' ? allowPolicy.debits : undefined, [], 'allow admits without writing back');
});

t.test('the policy denies the failed share: the request is denied and the committed groups are refunded', async (t) => {
  const ops = [f.op([['k', 'a']], perHour), f.op([['k', 'b']], perHour)];
  const denied: BucketOutcome = { allowed: false, remaining: 0, resetUs: 1, retryAfterUs: 1 };
  const settled = settle(ops, [decided(ops, [0], 'n1'), failed(ops, [1], 'n2')], { kind: 'decided', policy: 'local', commits: false, outcomes: [denied] });
  if (settled.kind !== 'answered') { t.fail('answered'); return; }
  t.equal(settled.allowed, false);
  t.same(settled.decision.outcomes.map((o) => o.allowed), [true, false], 'a reports its untaken (full) state');
  t.equal(settled.refunds.length, 1);
  t.same(settled.debits, []);
});

t.test('Redis denied while another group failed: the policy only reports, nothing is refunded or owed', async (t) => {
  const ops = [f.op([['k', 'a']], perHour), f.op([['k', 'b']], perHour)];
  const outcomes = [decided(ops, [0], 'n1', empty), failed(ops, [1], 'n2')];
  t.equal(failedShare(outcomes)?.deniedByRedis, true);
  const settled = settle(ops, outcomes, { kind: 'untaken', policy: 'local', outcomes: [allowedBy(10)] });
  if (settled.kind !== 'answered') { t.fail('answered'); return; }
  t.equal(settled.allowed, false);
  t.same(settled.refunds, []);
  t.same(settled.debits, []);
});

t.test('groups that failed differently: the policy sees a misconfiguration wherever it is, and which ops were late', async (t) => {
  const ops = [f.op([['k', 'a']], perHour), f.op([['k', 'b']], perHour), f.op([['k', 'c']], perHour)];
  const late = new StoreCallError('redis: take not answered within its deadline', { timedOut: true });
  const refused = new Error('WRONGPASS invalid username-password pair or user is disabled.');
  const outcomes: FinalOutcome[] = [
    { kind: 'failed', group: group('n1', [0, 1], ops), ops: [ops[0]!, ops[1]!], error: late },
    { kind: 'failed', group: group('n2', [2], ops), ops: [ops[2]!], error: refused },
  ];
  const share = failedShare(outcomes);
  t.equal(share?.error, refused, 'the misconfigured group\'s error, not the first group\'s: refused under every policy');
  t.same(share?.late, [true, true, false], 'per op: its own group\'s call missed its deadline or not');
  const plain = failedShare([outcomes[0]!, failed(ops, [2], 'n3')]);
  t.equal(plain?.error, late, 'no misconfiguration: the first group\'s error, as before');
  t.same(plain?.late, [true, true, false]);
});

t.test('deny policy: refused with its error, and what other groups took is still given back', async (t) => {
  const ops = [f.op([['k', 'a']], perHour), f.op([['k', 'b']], perHour)];
  const error = new Error('store unavailable');
  const settled = settle(ops, [decided(ops, [0], 'n1'), failed(ops, [1], 'n2')], { kind: 'refused', policy: 'deny', error });
  t.equal(settled.kind, 'refused');
  if (settled.kind !== 'refused') return;
  t.equal(settled.error, error);
  t.equal(settled.refunds.length, 1);
});

t.test('the usual request, one group of every op: its outcomes are the answer, no share for the policy', async (t) => {
  const ops = [f.op([['k', 'a']], perHour), f.op([['k', 'b']], perHour)];
  const sole: FinalOutcome = { kind: 'decided', group: group('n1', [0, 1], ops), ops, evaluation: evaluateBatch(ops, () => null, NOW_US) };
  t.equal(failedShare([sole]), undefined);
  const settled = settle(ops, [sole], undefined);
  if (settled.kind !== 'answered' || sole.kind !== 'decided') { t.fail('answered'); return; }
  t.equal(settled.decision.outcomes, sole.evaluation.outcomes, 'the same array, not a copy');
  const denied: FinalOutcome = { ...sole, evaluation: evaluateBatch(ops, () => empty, NOW_US) };
  const deniedSettled = settle(ops, [denied], undefined);
  t.same(deniedSettled.kind === 'answered' ? [deniedSettled.allowed, deniedSettled.refunds.length] : [], [false, 0], 'denied by its own group: nothing taken, nothing to refund');
});
