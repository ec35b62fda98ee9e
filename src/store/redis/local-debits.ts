// What the local failure policy admitted while a master was unreachable, to write back once it answers.
import type { BucketOp } from '../../core/types.js';

/** Most keys remembered; beyond it the oldest are dropped (they only under-count what was admitted). */
const MAX_KEYS = 100_000;

/**
 * Admissions Redis did not see, summed per key. When the shard returns (its
 * replica promoted, or the master back), writing them back (lua/openclaw.lua
 * `debit`) keeps Redis from granting those tokens a second time: the
 * over-admission of a failover is then what the sidecars admitted locally
 * beyond what Redis had left, plus the writes the dead master had not yet
 * replicated. A call that timed out may still have run on Redis: when its late
 * reply shows it committed, `cancel` removes its ops again.
 */
export class LocalDebits {
  private readonly pending = new Map<string, BucketOp>();

  get size(): number {
    return this.pending.size;
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

  cancel(ops: readonly BucketOp[]): void {
    for (const op of ops) {
      const known = this.pending.get(op.key);
      if (known === undefined) continue;
      if (known.cost <= op.cost) this.pending.delete(op.key);
      else this.pending.set(op.key, { ...known, cost: known.cost - op.cost });
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
