import { algorithmOf } from './algorithms/table.js';
import { heldAt } from './algorithms/token-bucket.js';
import type { BucketState, Evaluation } from './algorithms/algorithm.js';
import type { BucketOp, BucketOutcome, LimitSpec } from './types.js';

export type { BucketState, Evaluation } from './algorithms/algorithm.js';

/**
 * Evaluates one bucket at `nowUs` without deciding whether to commit: the
 * limit's algorithm (core/algorithms/), whose entry in lua/openclaw.lua
 * mirrors it. Pure and exact: integer arithmetic below 2^53 only.
 */
export function evaluate(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation {
  return algorithmOf(limit).evaluate(limit, state, nowUs, cost);
}

/**
 * What a bucket holds for `cost` at `nowUs`, nothing taken (the admin's
 * inspect), and what leases hold of it (`leased`). A token budget is
 * inspected as a check (cost 0): its charges are recorded whatever they
 * answer, so its evaluation at a cost would report the balance after a
 * charge that inspecting does not make.
 */
export function inspectBucket(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): BucketOutcome {
  const outcome = evaluate(limit, state, nowUs, limit.overdraft ? 0 : cost).untaken;
  // Tokens moved out into leases are not in the bucket: said, so that remaining plus leased adds up to the burst.
  const held = heldAt(state, nowUs);
  return held > 0 ? { ...outcome, leased: Math.floor(held / limit.levelPerToken) } : outcome;
}

/**
 * Whether `op` is recorded whatever its batch decides: a charge (cost > 0) on
 * a token budget, or any charge of a report. Such a charge is never given
 * back, and a store must send it to Redis even when it could deny locally.
 */
export function chargesAlways(op: BucketOp): boolean {
  return op.cost > 0 && (op.limit.overdraft || op.report === true);
}

/**
 * One op at `nowUs`. A report's charge on an ordinary limit is recorded as
 * far as the limit has tokens: taken whole when it fits, else its
 * algorithm's `debit` (never below empty, a window never above its maximum),
 * reported as denied with the state it leaves.
 */
function evaluateOp(op: BucketOp, state: BucketState | null, nowUs: number): Evaluation {
  const evaluation = evaluate(op.limit, state, nowUs, op.cost);
  if (op.report !== true || op.cost <= 0 || evaluation.always === true) return evaluation;
  if (evaluation.outcome.allowed) return { ...evaluation, untaken: evaluation.outcome, always: true };
  const debited = algorithmOf(op.limit).debit(op.limit, state, nowUs, op.cost);
  if (debited === undefined) return evaluation; // nothing to record (requests_per_unit 0)
  const left = evaluate(op.limit, debited, nowUs, 0);
  const outcome = { ...left.outcome, allowed: false, retryAfterUs: evaluation.outcome.retryAfterUs };
  return { outcome, untaken: outcome, next: debited, ttlUs: left.ttlUs, always: true };
}

/**
 * What a batch commits: 'none' (nothing is taken anywhere), 'allowed' (every
 * op that is itself allowed takes its tokens), or, with quota groups, for
 * each op whether it takes.
 */
export type CommitPlan = 'none' | 'allowed' | readonly boolean[];

/**
 * The all-or-nothing rule of a batch. It commits when every ordinary op
 * (neither shadow nor quota) is allowed and, if it has quota-mode ops, at
 * least one quota group (the ops of one quota descriptor) has all its ops
 * allowed: envoyproxy/ratelimit's quota_mode, where a request is over only
 * when every quota descriptor is. Then an op takes when it is itself allowed
 * and, for a quota op, its whole group is (a descriptor that is over takes
 * from none of its limits); a shadow op that would deny takes nothing.
 */
function commitPlan(ops: readonly BucketOp[], outcomes: readonly BucketOutcome[]): CommitPlan {
  let groups: Map<number, boolean> | undefined;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.shadow) continue;
    const allowed = outcomes[i]!.allowed;
    if (op.quotaGroup === undefined) {
      if (!allowed) return 'none';
    } else {
      groups ??= new Map();
      groups.set(op.quotaGroup, (groups.get(op.quotaGroup) ?? true) && allowed);
    }
  }
  if (groups === undefined) return 'allowed';
  if (![...groups.values()].some((whole) => whole)) return 'none';
  return ops.map((op, i) => outcomes[i]!.allowed
    && (op.shadow || op.quotaGroup === undefined || groups.get(op.quotaGroup) === true));
}

/** One store batch decided: the rule every store follows (see lua/openclaw.lua `take`). */
export interface BatchEvaluation {
  /** What the batch takes (`commitPlan`). */
  plan: CommitPlan;
  /**
   * The batch is allowed: every ordinary op allowed (and a quota group, if
   * any, wholly). Ops marked `always` are recorded even when it is not.
   */
  commits: boolean;
  evaluations: Evaluation[];
  /** What each op reports: `outcome` when it takes or is denied, `untaken` when it was allowed but takes nothing. */
  outcomes: BucketOutcome[];
}

/** Whether op `index` takes its tokens under `plan` (an allowed op, and its quota group wholly allowed; an `always` op in any case). */
export function takes(plan: CommitPlan, evaluations: readonly Evaluation[], index: number): boolean {
  if (evaluations[index]!.always === true) return true;
  if (plan === 'none') return false;
  return plan === 'allowed' ? evaluations[index]!.outcome.allowed : plan[index]!;
}

/**
 * Decides a batch at `nowUs`. `stateAt(i)` is the stored state of op i's key
 * when the batch begins; ops on one key see each other's tentative takes (a
 * check-only op changes nothing). An op whose evaluation is `always` (a
 * budget's charge, a report's) takes whatever the plan says; its `allowed`
 * still counts in the plan (a charge on a budget in debt denies the request). The memory store, the local mirror and the
 * Redis store (from the states lua/openclaw.lua returns) all decide with this.
 */
export function evaluateBatch(ops: readonly BucketOp[], stateAt: (index: number) => BucketState | null, nowUs: number): BatchEvaluation {
  const evaluations: Evaluation[] = new Array(ops.length);
  const outcomes: BucketOutcome[] = new Array(ops.length);
  let tentative: Map<string, BucketState | null> | undefined;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const state = tentative !== undefined && tentative.has(op.key) ? tentative.get(op.key)! : stateAt(i);
    const evaluation = evaluateOp(op, state, nowUs);
    evaluations[i] = evaluation;
    outcomes[i] = evaluation.outcome;
    if ((evaluation.outcome.allowed || evaluation.always === true) && op.cost > 0 && ops.length > 1) {
      (tentative ??= new Map()).set(op.key, evaluation.next);
    }
  }
  const plan = commitPlan(ops, outcomes);
  for (let i = 0; i < ops.length; i++) {
    if (evaluations[i]!.outcome.allowed && !takes(plan, evaluations, i)) outcomes[i] = evaluations[i]!.untaken;
    else if (plan === 'none') outcomes[i] = evaluations[i]!.untaken;
  }
  return { plan, commits: plan !== 'none', evaluations, outcomes };
}
