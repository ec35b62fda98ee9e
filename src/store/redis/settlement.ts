// A request's answer from what became of its groups: all-or-nothing across
// Redis masters, the failure policy's verdict for the groups whose node
// failed, and what the store must still write (refunds, debits). Pure: no
// Redis, no clock, no local buckets; the store carries out what it returns.
import { chargesAlways, takes, type BatchEvaluation } from '../../core/bucket.js';
import type { StoreDecision, StoreFailurePolicy } from '../../core/store.js';
import type { BucketOp, BucketOutcome } from '../../core/types.js';
import { timedOut } from './deadline.js';
import { misconfigurationOf } from './misconfiguration.js';
import type { OpGroup } from './node-groups.js';

/** What became of one group of a request (`ops`: the group's ops, in the order of `group.indices`). */
export type GroupOutcome =
  /** Redis decided the batch; the reference model's reading of its reply. */
  | { readonly kind: 'decided'; readonly group: OpGroup; readonly ops: readonly BucketOp[]; readonly evaluation: BatchEvaluation }
  /** A resharding moved a slot: Redis wrote nothing, the batch goes to the new owner. */
  | { readonly kind: 'moved'; readonly group: OpGroup; readonly ops: readonly BucketOp[] }
  /** The call failed, missed its deadline, or the node's breaker is open: the failure policy decides. */
  | { readonly kind: 'failed'; readonly group: OpGroup; readonly ops: readonly BucketOp[]; readonly error: unknown };

/** A group's outcome once no MOVED is left to follow. */
export type FinalOutcome = Exclude<GroupOutcome, { kind: 'moved' }>;

/** The failed groups' share of a request, for the failure policy. */
export interface FailedShare {
  /** Their ops, group after group. */
  readonly ops: BucketOp[];
  /**
   * What the policy judges the share by: the first misconfigured group's
   * error when any group's node is misconfigured (refused under every
   * policy), else the first group's (what a `deny` answer names).
   */
  readonly error: unknown;
  /** Per op (as `ops`): its group's call only missed its deadline (Redis still has it). */
  readonly late: readonly boolean[];
  /** A group Redis decided denied: the request is denied whatever the policy says, so it only reports. */
  readonly deniedByRedis: boolean;
}

/** What the failure policy made of a request's failed share (its outcomes in FailedShare.ops order). */
export type PolicyVerdict =
  | { readonly kind: 'decided'; readonly policy: StoreFailurePolicy; readonly commits: boolean; readonly outcomes: readonly BucketOutcome[] }
  /** Redis denied the request: the policy took nothing; what the local state says. */
  | { readonly kind: 'untaken'; readonly policy: StoreFailurePolicy; readonly outcomes: readonly BucketOutcome[] }
  /** `deny`: the request is refused with this error. */
  | { readonly kind: 'refused'; readonly policy: StoreFailurePolicy; readonly error: unknown };

/** Tokens a committed group took, to give back (lua/openclaw.lua `refund`). */
export interface Refund {
  readonly routingKey: string;
  readonly ops: BucketOp[];
  /** Per op, the state timestamp its take wrote (the refund undoes only that take). */
  readonly chargedStartUs: number[];
}

export type Settled =
  | {
    readonly kind: 'answered';
    readonly decision: StoreDecision;
    readonly allowed: boolean;
    /** What committed groups took, when the request is denied. */
    readonly refunds: readonly Refund[];
    /**
     * What the `local` policy admitted, and every charge that is recorded
     * whatever the decision (token budgets, reports) of a failed group under
     * any policy, for Redis to learn when the node answers again.
     */
    readonly debits: readonly BucketOp[];
  }
  | { readonly kind: 'refused'; readonly error: unknown; readonly refunds: readonly Refund[]; readonly debits: readonly BucketOp[] };

const NONE: readonly never[] = Object.freeze([]);

/** The failed groups' share, or undefined when no group failed (the usual case: one pass, nothing built). */
export function failedShare(outcomes: readonly FinalOutcome[]): FailedShare | undefined {
  let ops: BucketOp[] | undefined;
  let late: boolean[] | undefined;
  let first: unknown;
  let misconfigured: unknown;
  let deniedByRedis = false;
  for (const outcome of outcomes) {
    if (outcome.kind === 'decided') {
      if (!outcome.evaluation.commits) deniedByRedis = true;
      continue;
    }
    if (ops === undefined) {
      ops = [];
      late = [];
      first = outcome.error;
    }
    const groupLate = timedOut(outcome.error);
    for (const op of outcome.ops) {
      ops.push(op);
      late!.push(groupLate);
    }
    if (misconfigured === undefined && misconfigurationOf(outcome.error) !== undefined) misconfigured = outcome.error;
  }
  return ops === undefined ? undefined : { ops, error: misconfigured ?? first, late: late!, deniedByRedis };
}

/**
 * The request's answer: allowed only when every group Redis decided committed
 * and the policy (for the failed groups) committed too. A denied request
 * takes from no limit: its committed groups are refunded, and each op reports
 * its untaken state.
 */
export function settle(ops: readonly BucketOp[], outcomes: readonly FinalOutcome[], verdict: PolicyVerdict | undefined): Settled {
  if (verdict?.kind === 'refused') return { kind: 'refused', error: verdict.error, refunds: refundsOf(outcomes), debits: alwaysCharges(outcomes) };
  const allowed = verdict?.kind === 'decided' ? verdict.commits : !outcomes.some((o) => o.kind === 'decided' && !o.evaluation.commits);
  const sole = outcomes.length === 1 ? outcomes[0]! : undefined;
  if (sole?.kind === 'decided' && sole.ops === ops) {
    // The usual request: one group, every op, Redis decided; its outcomes are the answer as they are.
    const { evaluation } = sole;
    const answer = allowed ? evaluation.outcomes : evaluation.evaluations.map((e) => e.untaken);
    return { kind: 'answered', decision: { outcomes: answer, fallback: undefined }, allowed, refunds: NONE, debits: NONE };
  }
  const localDebits = allowed && verdict?.kind === 'decided' && verdict.policy === 'local';
  const answer: BucketOutcome[] = new Array(ops.length);
  let debits: BucketOp[] | undefined;
  let at = 0;
  for (const outcome of outcomes) {
    const { indices } = outcome.group;
    if (outcome.kind === 'decided') {
      const { evaluation } = outcome;
      for (let k = 0; k < indices.length; k++) answer[indices[k]!] = allowed ? evaluation.outcomes[k]! : evaluation.evaluations[k]!.untaken;
      continue;
    }
    for (let k = 0; k < indices.length; k++) {
      const decided = verdict!.outcomes[at++]!;
      answer[indices[k]!] = decided;
      const op = outcome.ops[k]!;
      // A charge that is always recorded is owed to Redis whatever the policy and the answer.
      if ((localDebits && op.cost > 0 && decided.allowed) || chargesAlways(op)) (debits ??= []).push(op);
    }
  }
  return {
    kind: 'answered',
    decision: { outcomes: answer, fallback: verdict?.policy },
    allowed,
    refunds: allowed ? NONE : refundsOf(outcomes),
    debits: debits ?? NONE,
  };
}

/**
 * What one committed batch took, or undefined when it took nothing to give
 * back. A charge recorded whatever the decision (`always`: token budgets,
 * reports) is never given back: the work it pays for was done.
 */
export function refundOf(group: OpGroup, ops: readonly BucketOp[], evaluation: BatchEvaluation): Refund | undefined {
  if (!evaluation.commits) return undefined;
  let refund: { routingKey: string; ops: BucketOp[]; chargedStartUs: number[] } | undefined;
  for (let k = 0; k < ops.length; k++) {
    const op = ops[k]!;
    if (op.cost <= 0 || evaluation.evaluations[k]!.always === true || !takes(evaluation.plan, evaluation.evaluations, k)) continue;
    refund ??= { routingKey: group.routingKey, ops: [], chargedStartUs: [] };
    refund.ops.push(op);
    refund.chargedStartUs.push(evaluation.evaluations[k]!.next?.tsUs ?? 0);
  }
  return refund;
}

/** The failed groups' charges that are recorded whatever the decision. */
function alwaysCharges(outcomes: readonly FinalOutcome[]): BucketOp[] {
  const charges: BucketOp[] = [];
  for (const outcome of outcomes) {
    if (outcome.kind === 'failed') for (const op of outcome.ops) if (chargesAlways(op)) charges.push(op);
  }
  return charges;
}

function refundsOf(outcomes: readonly FinalOutcome[]): Refund[] {
  const refunds: Refund[] = [];
  for (const outcome of outcomes) {
    if (outcome.kind !== 'decided') continue;
    const refund = refundOf(outcome.group, outcome.ops, outcome.evaluation);
    if (refund !== undefined) refunds.push(refund);
  }
  return refunds;
}
