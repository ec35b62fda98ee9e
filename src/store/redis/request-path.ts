// One request's way through Redis, top to bottom: group its ops by master,
// send each group as one batch (the write-back of what it owes first), follow
// MOVED, settle, carry out what settlement returns. One group is the short
// case of N: the usual request (one master, nothing owed) costs one promise,
// its decision's, and no async frame; each group is one object whose
// methods are the batcher's callbacks.
import type { StoreDecision } from '../../core/store.js';
import type { BucketOp } from '../../core/types.js';
import { StoreCallError } from '../../errors.js';
import type { Batcher, PendingBatch } from './batcher.js';
import { fateUnknown, timedOut } from './deadline.js';
import type { FailurePolicy } from './failure-policy.js';
import type { LateReplies, LateTicket } from './late-replies.js';
import type { TakeResult } from './library.js';
import type { Mirror } from './mirror.js';
import type { NodeHealth } from './node-health.js';
import type { OpGroup } from './node-groups.js';
import type { StoreEvents } from './options.js';
import { failedShare, settle, type FinalOutcome, type GroupOutcome, type PolicyVerdict, type Settled } from './settlement.js';
import type { Topology } from './topology.js';
import type { WriteBack } from './write-back.js';

/** A MOVED batch is sent again at most this often (a resharding is in progress). */
const MAX_MOVED_ROUNDS = 3;

export interface RequestPathOptions {
  readonly topology: Topology;
  readonly health: NodeHealth;
  readonly batcher: Batcher;
  readonly writeBack: WriteBack;
  readonly mirror: Mirror;
  readonly lateReplies: LateReplies;
  readonly policy: FailurePolicy;
  readonly events: Partial<StoreEvents>;
  closed(): boolean;
  lastError(): string;
  /** Must not throw. */
  noteError(error: unknown, message: string): void;
}

export class RequestPath {
  constructor(private readonly options: RequestPathOptions) {}

  /** Redis decides `ops` (the failure policy for groups whose node failed). Rejects only as FailurePolicy.decide throws (`deny`). */
  decision(ops: readonly BucketOp[]): Promise<StoreDecision> {
    return new Promise<StoreDecision>((resolve, reject) => {
      new RedisRequest(this.options, ops, resolve, reject).sendRound(this.options.topology.groups(ops));
    });
  }
}

class RedisRequest {
  private round = 0;
  /** This round's outcomes, by the position of their group. */
  private current: GroupOutcome[] = [];
  private waiting = 0;
  /** Outcomes of earlier rounds (groups that were not MOVED). */
  private earlier: FinalOutcome[] | undefined;
  /** Calls that failed: their replies may still come (late replies). */
  private failedCalls: GroupCall[] | undefined;

  constructor(
    private readonly options: RequestPathOptions,
    private readonly ops: readonly BucketOp[],
    private readonly resolve: (decision: StoreDecision) => void,
    private readonly reject: (error: unknown) => void,
  ) {}

  /** One round: every group out at once; the round ends when each has an outcome. */
  sendRound(groups: readonly OpGroup[]): void {
    this.round++;
    this.current = new Array<GroupOutcome>(groups.length);
    this.waiting = groups.length;
    for (let slot = 0; slot < groups.length; slot++) this.sendGroup(groups[slot]!, slot);
  }

  private sendGroup(group: OpGroup, slot: number): void {
    const { options } = this;
    const ops = group.indices.length === this.ops.length ? this.ops : group.indices.map((i) => this.ops[i]!);
    if (options.closed()) {
      this.arrived(slot, { kind: 'failed', group, ops, error: new StoreCallError('redis store is closed', { countsAsFailure: false }) });
      return;
    }
    const { reason, misconfiguration } = options.health.why(group.node);
    if (misconfiguration !== undefined || !options.health.tryAcquire(group.node)) {
      // A misconfigured node's error carries the misconfiguration: the policy refuses it (failure-policy.ts).
      const error = misconfiguration !== undefined
        ? new StoreCallError(misconfiguration.words, { countsAsFailure: false, cause: misconfiguration })
        : new StoreCallError(`redis ${group.node} unavailable (circuit open; last error: ${reason === '' ? options.lastError() : reason})`, { countsAsFailure: false });
      this.arrived(slot, { kind: 'failed', group, ops, error });
      return;
    }
    const call = new GroupCall(this, group, ops, slot);
    // Admissions made locally while this key's master was down: Redis learns them before it decides again.
    const owed = options.writeBack.before(group, ops);
    if (owed === undefined) options.batcher.enqueue(group.queue, call);
    else owed.then(() => options.batcher.enqueue(group.queue, call), (error: unknown) => call.reject(error));
  }

  /** A call's reply, in time. */
  replied(call: GroupCall, result: TakeResult): void {
    if (result.status === 'moved') {
      this.arrived(call.slot, { kind: 'moved', group: call.group, ops: call.ops });
      return;
    }
    let evaluation;
    try {
      evaluation = this.options.mirror.record(call.ops, result);
    } catch (error: unknown) {
      this.failed(call, error);
      return;
    }
    this.arrived(call.slot, { kind: 'decided', group: call.group, ops: call.ops, evaluation });
  }

  /** A call failed, missed its deadline, or its reply could not be read: the policy decides its group. */
  failed(call: GroupCall, error: unknown): void {
    this.options.noteError(error, 'redis call failed; the store-failure policy decided');
    call.error = error;
    (this.failedCalls ??= []).push(call);
    this.arrived(call.slot, { kind: 'failed', group: call.group, ops: call.ops, error });
  }

  late(call: GroupCall, result: TakeResult): void {
    this.options.lateReplies.arrived(call, result);
  }

  lost(call: GroupCall, error: unknown): void {
    this.options.lateReplies.lostCall(call, error);
  }

  private arrived(slot: number, outcome: GroupOutcome): void {
    this.current[slot] = outcome;
    if (--this.waiting > 0) return;
    const round = this.current;
    if (round.every(isFinal)) {
      this.finish(this.earlier === undefined ? round : this.earlier.concat(round));
      return;
    }
    const moved = round.filter(isMoved);
    const kept = (this.earlier ?? []).concat(round.filter(isFinal));
    if (this.round >= MAX_MOVED_ROUNDS) {
      for (const { group, ops } of moved) kept.push({ kind: 'failed', group, ops, error: new StoreCallError('redis: keys still moving after retries (resharding)') });
      this.finish(kept);
      return;
    }
    this.earlier = kept;
    // Slot by slot to their new owners: ioredis follows MOVED/ASK for the declared key, the only slot such a batch touches.
    const { topology } = this.options;
    void topology.refresh().then(() => {
      try {
        this.sendRound(moved.flatMap((o) => topology.groupsBySlot(this.ops, o.group.indices)));
      } catch (error: unknown) {
        this.reject(error);
      }
    });
  }

  private finish(outcomes: readonly FinalOutcome[]): void {
    try {
      this.carryOut(settle(this.ops, outcomes, this.verdictOn(outcomes)));
    } catch (error: unknown) {
      this.reject(error);
    }
  }

  /** The failure policy on the failed groups' share (only reporting, without taking, when Redis denied). */
  private verdictOn(outcomes: readonly FinalOutcome[]): PolicyVerdict | undefined {
    const share = failedShare(outcomes);
    if (share === undefined) return undefined;
    const { policy } = this.options.policy;
    this.options.events.fallbackDecision?.(policy);
    if (share.deniedByRedis) return { kind: 'untaken', policy, outcomes: this.options.policy.untaken(share.ops) };
    try {
      const decided = this.options.policy.decide(share.ops, share.error, share.late);
      for (let k = 0; k < decided.staticShares; k++) this.options.events.staticShare?.();
      return { kind: 'decided', policy, commits: decided.commits, outcomes: decided.outcomes };
    } catch (error: unknown) {
      return { kind: 'refused', policy, error };
    }
  }

  /**
   * The debits whose fate is known now. A call abandoned at its deadline is
   * still with Redis: the policy's admissions for its group wait for its late
   * reply (late-replies.ts), so a take Redis applied late is not written back
   * as well. A call whose connection closed in flight may have been applied:
   * its debits are written back and the call is counted as uncertain.
   */
  private holdDebits(debits: readonly BucketOp[]): readonly BucketOp[] {
    if (this.failedCalls === undefined) return debits;
    let rest = debits;
    for (const call of this.failedCalls) {
      if (timedOut(call.error)) {
        const mine = new Set(call.ops);
        call.held = rest.filter((op) => mine.has(op));
        this.options.mirror.hold(call.held);
        rest = rest.filter((op) => !mine.has(op));
      } else if (fateUnknown(call.error)) {
        this.options.events.uncertainCall?.();
      }
    }
    return rest;
  }

  /** Debits to write back, late replies to judge, refunds to make, then the answer. */
  private carryOut(settled: Settled): void {
    const { writeBack, lateReplies } = this.options;
    const allowed = settled.kind === 'answered' && settled.allowed;
    if (settled.debits.length > 0) writeBack.debits.add(this.holdDebits(settled.debits));
    if (this.failedCalls !== undefined) for (const call of this.failedCalls) lateReplies.settled(call, allowed);
    const answer = (): void => {
      if (settled.kind === 'answered') this.resolve(settled.decision);
      else this.reject(settled.error);
    };
    if (settled.refunds.length === 0) answer();
    else void writeBack.giveBack(settled.refunds).then(answer);
  }
}

function isFinal(outcome: GroupOutcome): outcome is FinalOutcome {
  return outcome.kind !== 'moved';
}

function isMoved(outcome: GroupOutcome): outcome is Extract<GroupOutcome, { kind: 'moved' }> {
  return outcome.kind === 'moved';
}

/** One group's batch: the batcher's callbacks, and the ticket for its late reply. */
class GroupCall implements PendingBatch, LateTicket {
  readonly node: string;
  readonly routingKey: string;
  final: LateTicket['final'] = undefined;
  pending: TakeResult | undefined = undefined;
  lostLate: LateTicket['lostLate'] = undefined;
  held: LateTicket['held'] = undefined;
  /** Why the call failed, when it did. */
  error: unknown = undefined;

  constructor(
    private readonly request: RedisRequest,
    readonly group: OpGroup,
    readonly ops: readonly BucketOp[],
    readonly slot: number,
  ) {
    this.node = group.node;
    this.routingKey = group.routingKey;
  }

  resolve(result: TakeResult): void {
    this.request.replied(this, result);
  }

  reject(error: unknown): void {
    this.request.failed(this, error);
  }

  late(result: TakeResult): void {
    this.request.late(this, result);
  }

  lost(error: unknown): void {
    this.request.lost(this, error);
  }
}
