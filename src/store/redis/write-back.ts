// Writes that follow a decision: what the local failure policy admitted while
// a master was unreachable (written back once it answers), and what a denied
// request's groups took (given back).
import type { BucketOp } from '../../core/types.js';
import { fateUnknown, timedOut, withRedisDeadline } from './deadline.js';
import type { RedisLibrary } from './library.js';
import type { OpGroup } from './node-groups.js';
import type { NodeHealth } from './node-health.js';
import type { Refund } from './settlement.js';
import { KeyCounts } from './key-counts.js';
import type { Topology } from './topology.js';

/** Most keys remembered; beyond it the oldest are dropped (they only under-count what was admitted). */
const MAX_KEYS = 100_000;
/** How often pending debits are tried on masters that answer again. */
const INTERVAL_MS = 200;
/** At shutdown: how long to wait before trying again (a late reply, a failed write-back). */
const CLOSE_RETRY_MS = 10;

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Admissions Redis did not see, summed per key. When the shard returns (its
 * replica promoted, or the master back), writing them back (lua/openclaw.lua
 * `debit`) keeps Redis from granting those tokens a second time: the
 * over-admission of a failover is then what the sidecars admitted locally
 * beyond what Redis had left, plus the writes the dead master had not yet
 * replicated. Admissions for a call that missed its deadline are added only
 * once its late reply shows Redis did not apply it (late-replies.ts).
 */
class LocalDebits {
  private readonly pending = new Map<string, BucketOp>();

  get size(): number {
    return this.pending.size;
  }

  has(key: string): boolean {
    return this.pending.size > 0 && this.pending.has(key);
  }

  add(ops: readonly BucketOp[]): void {
    for (const op of ops) {
      if (op.cost <= 0) continue;
      const known = this.pending.get(op.key);
      this.pending.delete(op.key);
      this.pending.set(op.key, known === undefined ? op : { ...known, cost: known.cost + op.cost });
      if (this.pending.size > MAX_KEYS) this.pending.delete(this.pending.keys().next().value!);
    }
  }

  /** Removes and returns the pending debits of these keys' ops (none in the usual case: one size check). */
  takeFor(ops: readonly BucketOp[]): BucketOp[] {
    if (this.pending.size === 0) return [];
    const found: BucketOp[] = [];
    for (const op of ops) {
      const known = this.pending.get(op.key);
      if (known === undefined) continue;
      this.pending.delete(op.key);
      found.push(known);
    }
    return found;
  }

  /** Removes and returns everything pending. */
  drain(): BucketOp[] {
    const ops = [...this.pending.values()];
    this.pending.clear();
    return ops;
  }
}

export interface WriteBackOptions {
  library: RedisLibrary;
  topology: Topology;
  health: NodeHealth;
  timeoutMs: number;
  /** Whether calls may go out now (connected, not closed). */
  usable(): boolean;
  onError(error: unknown, message: string): void;
  /** A write-back call lost its connection in flight: it may have been applied. */
  uncertain(): void;
  /** A debit found its buckets `tokens` short of what the failure policy admitted: over-admission, seen now. */
  overAdmitted(tokens: number): void;
}

/**
 * Sends pending debits to the masters that serve their keys: in the
 * background every 200 ms, and before a key's next decision (`before`), so
 * Redis knows them before it decides that key again. Best effort: what fails
 * stays pending. Also gives back what settlement found to refund.
 */
export class WriteBack {
  readonly debits = new LocalDebits();
  /** Keys with a debit call on its way (count of calls). */
  private readonly sending = new KeyCounts();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: WriteBackOptions) {
    this.timer = setInterval(() => void this.flush(), INTERVAL_MS);
    this.timer.unref();
  }

  /**
   * Writes back what is owed for these ops' keys, on their group's node. A
   * promise (that never rejects) only when something is owed: the decision
   * path waits for nothing otherwise.
   */
  before(group: OpGroup, ops: readonly BucketOp[]): Promise<void> | undefined {
    if (this.debits.size === 0) return undefined;
    const owed = this.debits.takeFor(ops);
    return owed.length > 0 ? this.send(group, owed) : undefined;
  }

  /** Gives back what committed groups of a denied request took (best effort: a failed refund only under-admits). Never rejects. */
  giveBack(refunds: readonly Refund[]): Promise<void> {
    return Promise.all(refunds.map((refund) =>
      withRedisDeadline(this.options.library.refund(refund.routingKey, refund.ops, refund.chargedStartUs), this.options.timeoutMs, 'refund')
        .catch((error: unknown) => this.options.onError(error, 'redis refund failed; tokens stay taken')))).then(() => undefined);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * At shutdown: sends everything owed (whatever the breakers say: a node
   * that is still down fails fast or at its deadline) until nothing is owed
   * or on its way and `waiting()` (calls whose late reply may still add
   * debits) is false, or `budgetMs` has passed. Resolves with the number of
   * keys still owed (lost with this process; the caller logs them).
   */
  async flushOnClose(budgetMs: number, waiting: () => boolean): Promise<number> {
    const end = performance.now() + budgetMs;
    while (performance.now() < end) {
      if (this.debits.size > 0) {
        const ops = this.debits.drain();
        const sent = this.options.topology.groups(ops).map((group) => this.send(group, group.indices.map((i) => ops[i]!)));
        await Promise.race([Promise.all(sent), pause(Math.max(0, end - performance.now()))]);
        if (this.debits.size > 0) await pause(Math.min(CLOSE_RETRY_MS, Math.max(0, end - performance.now())));
      } else if (this.sending.size > 0 || waiting()) {
        await pause(CLOSE_RETRY_MS);
      } else {
        return 0;
      }
    }
    return this.debits.size + this.sending.size;
  }

  /** Whether admissions on `key` are owed to Redis: pending, or on their way in a debit call. */
  owes(key: string): boolean {
    return this.debits.has(key) || this.sending.has(key);
  }

  private async flush(): Promise<void> {
    if (this.debits.size === 0 || !this.options.usable()) return;
    const ops = this.debits.drain();
    await Promise.all(this.options.topology.groups(ops).map(async (group) => {
      const groupOps = group.indices.map((i) => ops[i]!);
      if (this.options.health.stateOf(group.node) !== 'closed') {
        this.debits.add(groupOps); // still down: keep them for later
        return;
      }
      await this.send(group, groupOps);
    }));
  }

  /**
   * One `debit` call. What failed is owed again, except a call abandoned at
   * its deadline: Redis still has it, so it is owed again only if it then
   * fails (Redis refused it, or its connection closed — then it may have
   * been applied, and is counted as uncertain). Re-adding a debit that Redis
   * applied late would count it twice.
   */
  private async send(group: OpGroup, ops: BucketOp[]): Promise<void> {
    const call = this.options.library.debit(group.routingKey, ops);
    this.sending.add(ops);
    // Settled either way (applied, refused, or its fate decided below): no longer on its way.
    void call.then(({ shortfall }) => {
      this.sending.remove(ops);
      if (shortfall > 0) this.options.overAdmitted(shortfall);
    }, () => this.sending.remove(ops));
    try {
      await withRedisDeadline(call, this.options.timeoutMs, 'debit');
    } catch (error: unknown) {
      this.options.onError(error, 'redis write-back of local admissions failed; retrying');
      if (!timedOut(error)) {
        this.debits.add(ops);
        return;
      }
      call.catch((lateError: unknown) => {
        if (fateUnknown(lateError)) this.options.uncertain();
        this.debits.add(ops);
      });
    }
  }
}
