// Puts a request's answer together from its groups (all-or-nothing across
// Redis masters, the failure policy for failed ones), judges replies that
// came after their deadline, and gives back what a denied request's other
// groups took. See redis-store.ts for the whole design.
import { takes, type BatchEvaluation } from '../../core/bucket.js';
import type { StoreDecision } from '../../core/store.js';
import type { BucketOp, BucketOutcome } from '../../core/types.js';
import type { MemoryStore } from '../memory-store.js';
import { withRedisDeadline } from './deadline.js';
import type { FailurePolicy } from './failure-policy.js';
import type { RedisLibrary, TakeResult } from './library.js';
import type { WriteBack } from './local-debits.js';
import { modelOfReply, rememberBatch } from './mirror.js';
import type { OpGroup } from './node-groups.js';
import type { StoreEvents, StoreLogger } from './options.js';

/** One group of a request, as it came back. */
export interface GroupResult {
  ops: readonly BucketOp[];
  group: OpGroup;
  /** Set when Redis decided the batch. */
  decided?: { result: TakeResult; evaluation: BatchEvaluation };
  /** Set when the call failed, missed its deadline or the node's breaker is open. */
  error?: unknown;
  late: LateReplies;
}

/** How a late reply is judged: against what the request finally got. */
export interface LateReplies {
  final: 'allowed' | 'denied' | undefined;
  pending: TakeResult | undefined;
}

/** A MOVED batch's stand-in evaluation: nothing was decided. */
export const NOTHING_DECIDED: BatchEvaluation = Object.freeze({ plan: 'none', commits: false, evaluations: [], outcomes: [] }) as unknown as BatchEvaluation;

export interface SettlementOptions {
  readonly policy: FailurePolicy;
  readonly local: MemoryStore;
  readonly mirror: boolean;
  readonly logger: StoreLogger;
  readonly events: Partial<StoreEvents>;
  readonly writeBack: WriteBack;
  readonly library: RedisLibrary;
  readonly timeoutMs: number;
  closed(): boolean;
  noteError(error: unknown, msg: string): void;
}

export class Settlement {
  constructor(private readonly o: SettlementOptions) {}

  /** Recomputes a batch's outcomes from the states Redis read, records them in the mirror. */
  evaluateReply(ops: readonly BucketOp[], result: TakeResult): BatchEvaluation {
    const evaluation = modelOfReply(ops, result, (model) =>
      this.o.logger.error({ status: result.status, model }, 'lua/openclaw.lua and core/bucket.ts disagree'));
    if (this.o.mirror) rememberBatch(this.o.local, ops, result, evaluation);
    return evaluation;
  }

  /** Puts a request together from its groups: all-or-nothing across them, the policy for failed ones. */
  async combine(ops: readonly BucketOp[], results: readonly GroupResult[]): Promise<StoreDecision> {
    const outcomes: BucketOutcome[] = new Array(ops.length);
    const committed = results.filter((r) => r.decided?.evaluation.commits === true);
    const failed = results.filter((r) => r.decided === undefined);
    const deniedByRedis = results.some((r) => r.decided !== undefined && !r.decided.evaluation.commits);
    const fallback = failed.length > 0 ? this.o.policy.policy : undefined;
    if (fallback !== undefined) this.o.events.fallbackDecision?.(fallback);
    let allowed = !deniedByRedis;
    let failedOutcomes: BucketOutcome[] | undefined;
    if (allowed && failed.length > 0) {
      const failedOps = failed.flatMap((r) => r.ops);
      let decision;
      try {
        decision = this.o.policy.decide(failedOps, failed[0]!.error);
      } catch (error: unknown) {
        this.settle(results, false);
        await this.refund(committed);
        throw error;
      }
      allowed = decision.commits;
      failedOutcomes = decision.outcomes;
      for (let k = 0; k < decision.staticShares; k++) this.o.events.staticShare?.();
      if (allowed && this.o.policy.policy === 'local') {
        this.o.writeBack.debits.add(failedOps.filter((op, k) => op.cost > 0 && decision.outcomes[k]!.allowed));
      }
    }
    // Redis denied, so the policy did not run: the failed ops report what the local state says (nothing taken).
    failedOutcomes ??= this.o.policy.untaken(failed.flatMap((r) => r.ops));
    let at = 0;
    for (const r of failed) {
      for (const i of r.group.indices) outcomes[i] = failedOutcomes![at++]!;
    }
    for (const r of results) {
      if (r.decided === undefined) continue;
      const { evaluation } = r.decided;
      r.group.indices.forEach((i, k) => {
        outcomes[i] = allowed ? evaluation.outcomes[k]! : evaluation.evaluations[k]!.untaken;
      });
    }
    this.settle(results, allowed);
    if (!allowed) await this.refund(committed);
    return { outcomes, fallback };
  }

  /** The request's final answer is known: judge replies that came late. */
  private settle(results: readonly GroupResult[], allowed: boolean): void {
    for (const r of results) {
      r.late.final = allowed ? 'allowed' : 'denied';
      if (r.late.pending !== undefined) this.judgeLateReply(r.ops, r.group, r.late, r.late.pending);
    }
  }

  onLateReply(ops: readonly BucketOp[], group: OpGroup, late: LateReplies, result: TakeResult): void {
    if (result.status === 'moved' || this.o.closed()) return;
    if (late.final === undefined) late.pending = result;
    else this.judgeLateReply(ops, group, late, result);
  }

  /** Redis decided a batch whose call had missed its deadline: learn from it, count over-admission, give back. */
  private judgeLateReply(ops: readonly BucketOp[], group: OpGroup, late: LateReplies, result: TakeResult): void {
    late.pending = undefined;
    const evaluation = this.evaluateReply(ops, result);
    if (late.final === 'allowed' && !evaluation.commits) this.o.events.fallbackOverAdmitted?.();
    // Redis took these after all: nothing to write back for them.
    if (late.final === 'allowed' && evaluation.commits) this.o.writeBack.debits.cancel(ops);
    if (late.final === 'denied' && evaluation.commits) {
      void this.refund([{ ops: [...ops], group, decided: { result, evaluation }, late }]);
    }
  }

  /** Gives back what committed groups took (best effort: a failed refund only under-admits). */
  private async refund(groups: readonly GroupResult[]): Promise<void> {
    const calls: Promise<void>[] = [];
    for (const r of groups) {
      const evaluation = r.decided?.evaluation;
      if (evaluation === undefined) continue;
      const took = (op: BucketOp, k: number): boolean => op.cost > 0 && takes(evaluation.plan, evaluation.evaluations, k);
      const taken = r.ops.filter(took);
      if (taken.length === 0) continue;
      const chargedStartUs = r.ops.flatMap((op, k) => (took(op, k) ? [evaluation.evaluations[k]!.next?.tsUs ?? 0] : []));
      calls.push(withRedisDeadline(this.o.library.refund(r.group.routingKey, taken, chargedStartUs), this.o.timeoutMs, 'refund')
        .catch((error: unknown) => this.o.noteError(error, 'redis refund failed; tokens stay taken')));
    }
    await Promise.all(calls);
  }
}
