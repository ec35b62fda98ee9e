import { algorithmOf } from './algorithms/table.js';
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
  /** Anything taken: every ordinary op allowed (and a quota group, if any, wholly). */
  commits: boolean;
  evaluations: Evaluation[];
  /** What each op reports: `outcome` when it takes or is denied, `untaken` when it was allowed but takes nothing. */
  outcomes: BucketOutcome[];
}

/** Whether op `index` takes its tokens under `plan` (an allowed op, and its quota group wholly allowed). */
export function takes(plan: CommitPlan, evaluations: readonly Evaluation[], index: number): boolean {
  if (plan === 'none') return false;
  return plan === 'allowed' ? evaluations[index]!.outcome.allowed : plan[index]!;
}

/**
 * Decides a batch at `nowUs`. `stateAt(i)` is the stored state of op i's key
 * when the batch begins; ops on one key see each other's tentative takes (a
 * check-only op changes nothing). The memory store, the local mirror and the
 * Redis store (from the states lua/openclaw.lua returns) all decide with this.
 */
export function evaluateBatch(ops: readonly BucketOp[], stateAt: (index: number) => BucketState | null, nowUs: number): BatchEvaluation {
  const evaluations: Evaluation[] = new Array(ops.length);
  const outcomes: BucketOutcome[] = new Array(ops.length);
  let tentative: Map<string, BucketState | null> | undefined;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const state = tentative !== undefined && tentative.has(op.key) ? tentative.get(op.key)! : stateAt(i);
    const evaluation = evaluate(op.limit, state, nowUs, op.cost);
    evaluations[i] = evaluation;
    outcomes[i] = evaluation.outcome;
    if (evaluation.outcome.allowed && op.cost > 0 && ops.length > 1) (tentative ??= new Map()).set(op.key, evaluation.next);
  }
  const plan = commitPlan(ops, outcomes);
  for (let i = 0; i < ops.length; i++) {
    if (evaluations[i]!.outcome.allowed && !takes(plan, evaluations, i)) outcomes[i] = evaluations[i]!.untaken;
    else if (plan === 'none') outcomes[i] = evaluations[i]!.untaken;
  }
  return { plan, commits: plan !== 'none', evaluations, outcomes };
}
