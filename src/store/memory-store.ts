import { commitPlan, evaluate, type BucketState, type Evaluation } from '../core/bucket.js';
import type { BucketOp, BucketOutcome } from '../core/types.js';
import { monotonicClockUs, type ClockUs } from './clock.js';
import type { Store, StoreHealth } from './store.js';

export const DEFAULT_MEMORY_MAX_KEYS = 1_000_000;
const SWEEP_INTERVAL_MS = 1_000;
const SWEEP_ENTRIES_PER_TICK = 20_000;

interface Entry {
  state: BucketState;
  expiresAtUs: number;
}

export interface MemoryStoreOptions {
  /** Most buckets kept; beyond it the least recently written are evicted. */
  maxKeys?: number;
  clock?: ClockUs;
  /** Sweep expired buckets in the background (off in core tests with a fake clock). */
  sweep?: boolean;
}

/**
 * In-process buckets. Memory stays bounded: a bucket that is full again is
 * deleted at once (absent = full), expired entries are swept in small slices,
 * and past `maxKeys` the least recently written bucket is evicted. Evicting a
 * bucket that was not full forgets its debt — the trade-off for bounded memory
 * under a spray of unique keys (documented in the README).
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly buckets = new Map<string, Entry>();
  private readonly maxKeys: number;
  private readonly clock: ClockUs;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepCursor: IterableIterator<[string, Entry]> | undefined;

  constructor(options: MemoryStoreOptions = {}) {
    this.maxKeys = options.maxKeys ?? DEFAULT_MEMORY_MAX_KEYS;
    this.clock = options.clock ?? monotonicClockUs();
    if (options.sweep !== false) {
      this.sweepTimer = setInterval(() => this.sweepSlice(), SWEEP_INTERVAL_MS);
      this.sweepTimer.unref();
    }
  }

  get size(): number {
    return this.buckets.size;
  }

  apply(ops: readonly BucketOp[]): Promise<BucketOutcome[]> {
    return Promise.resolve(this.applySync(ops));
  }

  /** The same decision synchronously (the local fallback and tests use it). */
  applySync(ops: readonly BucketOp[]): BucketOutcome[] {
    const now = this.clock();
    const evaluations: Evaluation[] = new Array(ops.length);
    const outcomes: BucketOutcome[] = new Array(ops.length);
    // Ops on the same key within one batch see each other's tentative takes.
    let tentative: Map<string, BucketState | null> | undefined;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      const state = tentative?.has(op.key) ? tentative.get(op.key)! : this.read(op.key, now);
      const evaluation = evaluate(op.limit, state, now, op.cost);
      evaluations[i] = evaluation;
      outcomes[i] = evaluation.outcome;
      if (evaluation.outcome.allowed && ops.length > 1) {
        (tentative ??= new Map()).set(op.key, evaluation.next);
      }
    }
    const plan = commitPlan(ops, outcomes);
    if (plan === 'none') {
      return evaluations.map((evaluation) => evaluation.untaken);
    }
    for (let i = 0; i < ops.length; i++) {
      const evaluation = evaluations[i]!;
      if (!evaluation.outcome.allowed) continue;
      if (plan !== 'allowed' && !plan[i]) {
        // Allowed on its own, but its quota descriptor is over: it takes nothing.
        outcomes[i] = evaluation.untaken;
        continue;
      }
      if (ops[i]!.cost > 0) this.write(ops[i]!.key, evaluation, now);
    }
    return outcomes;
  }

  health(): StoreHealth {
    return { ready: true, fallbackActive: false, detail: `memory store, ${this.buckets.size} buckets` };
  }

  close(): Promise<void> {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.buckets.clear();
    return Promise.resolve();
  }

  private read(key: string, now: number): BucketState | null {
    const entry = this.buckets.get(key);
    if (entry === undefined) return null;
    if (entry.expiresAtUs <= now) {
      this.buckets.delete(key);
      return null;
    }
    return entry.state;
  }

  private write(key: string, evaluation: Evaluation, now: number): void {
    this.buckets.delete(key); // re-insert: Map order is our LRU order
    if (evaluation.next === null) return;
    this.buckets.set(key, { state: evaluation.next, expiresAtUs: now + evaluation.ttlUs });
    if (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next();
      if (oldest.done !== true) this.buckets.delete(oldest.value);
    }
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
