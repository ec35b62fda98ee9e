import { evaluateBatch, inspectBucket, takes, type BatchEvaluation, type BucketState } from '../core/bucket.js';
import type { BucketAdmin, Store, StoreDecision, StoreHealth } from '../core/store.js';
import type { BucketOp, BucketOutcome } from '../core/types.js';
import { monotonicClockUs, type ClockUs } from './clock.js';

const SWEEP_INTERVAL_MS = 1_000;
const SWEEP_ENTRIES_PER_TICK = 20_000;

/** A bucket's state and when it is full again (absent = full): one object per key. */
interface Entry extends BucketState {
  expiresAtUs: number;
}

export interface MemoryStoreOptions {
  /** Most buckets kept; beyond it the least recently written are evicted. */
  maxKeys: number;
  clock?: ClockUs;
  /** Sweep expired buckets in the background (off in core tests with a fake clock). */
  sweep?: boolean;
}

/**
 * In-process buckets: the embedded store, and in front of Redis the local
 * mirror of what Redis last reported (`observe`), which the Redis store peeks
 * to deny without a call and decides from under the `local` failure policy.
 *
 * Memory stays bounded: a bucket that is full again is deleted at once
 * (absent = full), expired entries are swept in small slices, and past
 * `maxKeys` the least recently written bucket is evicted. Evicting a bucket
 * that was not full forgets its debt — the trade-off for bounded memory under
 * a spray of unique keys (documented in docs/operations.md "Memory store").
 */
export class MemoryStore implements Store, BucketAdmin {
  readonly kind = 'memory' as const;
  readonly clock: ClockUs;
  private readonly buckets = new Map<string, Entry>();
  private readonly maxKeys: number;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepCursor: IterableIterator<[string, Entry]> | undefined;

  constructor(options: MemoryStoreOptions) {
    this.maxKeys = options.maxKeys;
    this.clock = options.clock ?? monotonicClockUs();
    if (options.sweep !== false) {
      this.sweepTimer = setInterval(() => this.sweepSlice(), SWEEP_INTERVAL_MS);
      this.sweepTimer.unref();
    }
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Always at once: the memory store never waits. */
  apply(ops: readonly BucketOp[]): StoreDecision {
    return { outcomes: this.applySync(ops), fallback: undefined };
  }

  /** Decides and commits synchronously (tests use it). */
  applySync(ops: readonly BucketOp[]): BucketOutcome[] {
    return this.commit(ops).outcomes;
  }

  /** Decides and writes what the batch takes (the local failure policy uses it). */
  commit(ops: readonly BucketOp[]): BatchEvaluation {
    const now = this.clock();
    const batch = this.peekAt(ops, now);
    // A denied batch takes nothing but its `always` charges (token budgets, reports).
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      const evaluation = batch.evaluations[i]!;
      if (op.cost > 0 && takes(batch.plan, batch.evaluations, i)) this.observe(op.key, evaluation.next, evaluation.ttlUs, now);
    }
    return batch;
  }

  /** Decides without writing: what `applySync` would answer now. */
  peek(ops: readonly BucketOp[]): BatchEvaluation {
    return this.peekAt(ops, this.clock());
  }

  /**
   * Sets a key's state, valid for `ttlUs` from `nowUs` (null = full: deleted).
   * The Redis store records here what Redis reported, on this store's clock.
   */
  observe(key: string, state: BucketState | null, ttlUs: number, nowUs = this.clock()): void {
    this.buckets.delete(key); // re-insert: Map order is our LRU order
    if (state === null || ttlUs <= 0 || this.maxKeys <= 0) return;
    const entry: Entry = { level: state.level, tsUs: state.tsUs, expiresAtUs: nowUs + ttlUs };
    if (state.prevLevel !== undefined) entry.prevLevel = state.prevLevel;
    this.buckets.set(key, entry);
    if (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next();
      if (oldest.done !== true) this.buckets.delete(oldest.value);
    }
  }

  /** Each op's bucket now, for its cost, nothing taken (see BucketAdmin). */
  inspect(ops: readonly BucketOp[]): BucketOutcome[] {
    const now = this.clock();
    return ops.map((op) => inspectBucket(op.limit, this.read(op.key, now), now, op.cost));
  }

  /** Forgets each op's bucket (full again); returns how many held state. */
  reset(ops: readonly BucketOp[]): number {
    const now = this.clock();
    let count = 0;
    for (const key of new Set(ops.map((op) => op.key))) {
      if (this.read(key, now) !== null) count++;
      this.buckets.delete(key);
    }
    return count;
  }

  health(): StoreHealth {
    return { ready: true, detail: `memory store, ${this.buckets.size} buckets` };
  }

  close(): Promise<void> {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.buckets.clear();
    return Promise.resolve();
  }

  private peekAt(ops: readonly BucketOp[], now: number): BatchEvaluation {
    return evaluateBatch(ops, (i) => this.read(ops[i]!.key, now), now);
  }

  private read(key: string, now: number): BucketState | null {
    const entry = this.buckets.get(key);
    if (entry === undefined) return null;
    if (entry.expiresAtUs <= now) {
      this.buckets.delete(key);
      return null;
    }
    return entry;
  }

  /** Deletes expired buckets, a bounded slice per tick, so the loop never stalls. */
  sweepSlice(limit = SWEEP_ENTRIES_PER_TICK): void {
    const now = this.clock();
    this.sweepCursor ??= this.buckets.entries();
    for (let i = 0; i < limit; i++) {
      const next = this.sweepCursor.next();
      if (next.done === true) {
        this.sweepCursor = undefined;
        return;
      }
      const [key, entry] = next.value;
      if (entry.expiresAtUs <= now) this.buckets.delete(key);
    }
  }
}
