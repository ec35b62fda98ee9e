import type { BucketOp, BucketOutcome } from '../core/types.js';

export interface StoreHealth {
  /** Store usable for decisions right now. */
  ready: boolean;
  /** Decisions are currently made by the failure policy instead of this store. */
  fallbackActive: boolean;
  detail: string;
}

/**
 * Where bucket state lives. One call per request: the whole batch is decided
 * all-or-nothing (see core/bucket.ts `commitPlan`): when every ordinary op is
 * allowed (and, with quota-mode ops, one quota group wholly is) each allowed
 * op takes its tokens, otherwise none does.
 * Outcomes come back in the order of `ops`.
 *
 * `apply` rejects with StoreCallError when the backend fails; it never hangs
 * past the store's own deadline.
 */
export interface Store {
  readonly kind: 'memory' | 'redis';
  apply(ops: readonly BucketOp[]): Promise<BucketOutcome[]>;
  health(): StoreHealth;
  close(): Promise<void>;
}
