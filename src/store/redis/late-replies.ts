// Replies that come after their call's deadline, when the failure policy has
// already decided their group: what Redis did after all still counts.
import type { BucketOp } from '../../core/types.js';
import { StoreCallError } from '../../errors.js';
import { fateUnknown } from './deadline.js';
import type { TakeResult } from './library.js';
import type { Mirror } from './mirror.js';
import type { OpGroup } from './node-groups.js';
import type { StoreEvents } from './options.js';
import { refundOf } from './settlement.js';
import { takes, type BatchEvaluation } from '../../core/bucket.js';
import type { WriteBack } from './write-back.js';

/** One group's call whose reply may come late; judged against what its request finally got. */
export interface LateTicket {
  readonly group: OpGroup;
  readonly ops: readonly BucketOp[];
  /** The request's answer, once known. */
  final: 'allowed' | 'denied' | undefined;
  /** A late reply that came before the answer was known. */
  pending: TakeResult | undefined;
  /** The call failed after its deadline before the answer was known (connection closed, or an error reply). */
  lostLate: { error: unknown } | undefined;
  /**
   * What the `local` policy admitted for this group while its call was still
   * with Redis: written back only once the call's fate says Redis did not
   * apply it (so no take is counted twice).
   */
  held: readonly BucketOp[] | undefined;
}

/** A late reply that came back MOVED: Redis applied nothing (not an uncertain call). */
const MOVED_LATE = new StoreCallError('redis: the late batch came back MOVED; nothing was applied');

export interface LateRepliesOptions {
  readonly mirror: Mirror;
  readonly writeBack: WriteBack;
  readonly events: Partial<StoreEvents>;
  closed(): boolean;
  /** Must not throw. */
  noteError(error: unknown, message: string): void;
}

/**
 * A late reply teaches the mirror what Redis holds (so the `local` policy
 * never grants again what Redis spent), counts an over-admission when the
 * policy allowed what Redis denied, cancels the write-back of admissions that
 * Redis applied after all (no charge counted twice), and gives back what a
 * late group took for a request that was denied (a denial takes nothing).
 */
export class LateReplies {
  constructor(private readonly options: LateRepliesOptions) {}

  /** The reply of a call that missed its deadline. Never throws (the batcher's callbacks must not). */
  arrived(ticket: LateTicket, result: TakeResult): void {
    try {
      if (this.options.closed()) return;
      // MOVED: the batch wrote nothing, as a refused call.
      if (result.status === 'moved') return this.lostCall(ticket, MOVED_LATE);
      if (ticket.final === undefined) ticket.pending = result;
      else this.judge(ticket, result);
    } catch (error: unknown) {
      this.options.noteError(error, 'a late redis reply could not be read');
    }
  }

  /** A call that missed its deadline failed after all. Never throws. */
  lostCall(ticket: LateTicket, error: unknown): void {
    try {
      if (this.options.closed()) return;
      if (ticket.final === undefined) ticket.lostLate = { error };
      else this.judgeLost(ticket, error);
    } catch (caught: unknown) {
      this.options.noteError(caught, 'a lost redis call could not be judged');
    }
  }

  /** The ticket's request was answered: a reply (or failure) that came early is judged now. */
  settled(ticket: LateTicket, allowed: boolean): void {
    ticket.final = allowed ? 'allowed' : 'denied';
    if (ticket.pending !== undefined) this.judge(ticket, ticket.pending);
    else if (ticket.lostLate !== undefined) this.judgeLost(ticket, ticket.lostLate.error);
  }

  /**
   * Redis never answered: when Redis refused the call it took nothing, so
   * what the policy admitted is written back; when the connection closed
   * with the call in flight nobody can know, so it is written back (it may
   * count twice) and counted as uncertain.
   */
  private judgeLost(ticket: LateTicket, error: unknown): void {
    ticket.lostLate = undefined;
    const held = ticket.held;
    ticket.held = undefined;
    if (fateUnknown(error)) this.options.events.uncertainCall?.();
    if (held !== undefined) {
      this.options.writeBack.debits.add(held);
      this.options.mirror.release(held);
    }
  }

  private judge(ticket: LateTicket, result: TakeResult): void {
    ticket.pending = undefined;
    const { ops } = ticket;
    const evaluation = this.options.mirror.record(ops, result);
    const allowed = ticket.final === 'allowed';
    if (allowed && !evaluation.commits) this.options.events.fallbackOverAdmitted?.(1);
    // The policy's admissions wait for this reply: Redis took them after all (nothing to write back),
    // or it did not (write them back, as for a node that was down).
    const held = ticket.held;
    ticket.held = undefined;
    if (held !== undefined) {
      const missed = notApplied(ops, evaluation, held);
      if (missed.length > 0) this.options.writeBack.debits.add(missed);
      this.options.mirror.release(held);
    }
    if (!allowed) {
      const refund = refundOf(ticket.group, ops, evaluation);
      if (refund !== undefined) void this.options.writeBack.giveBack([refund]);
    }
  }
}

/**
 * The held admissions Redis did not apply: an op took in Redis when its
 * batch committed and it took there, or (a budget's charge, a report's) in
 * any case; the rest is owed.
 */
function notApplied(ops: readonly BucketOp[], evaluation: BatchEvaluation, held: readonly BucketOp[]): readonly BucketOp[] {
  const applied = new Set<BucketOp>();
  for (let k = 0; k < ops.length; k++) if (takes(evaluation.plan, evaluation.evaluations, k)) applied.add(ops[k]!);
  return applied.size === 0 ? held : held.filter((op) => !applied.has(op));
}
