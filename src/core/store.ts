import type { BucketOp, BucketOutcome } from './types.js';

/** What decides when the store cannot: `--on-store-failure`. */
export type StoreFailurePolicy = 'local' | 'allow' | 'deny';

export interface StoreDecision {
  /** One outcome per op, in the order of the ops. */
  outcomes: BucketOutcome[];
  /** Set when the failure policy decided some ops (a Redis node failed), else undefined. */
  fallback: StoreFailurePolicy | undefined;
  /** Set when the Redis store denied from its local mirror of what Redis last reported, without a call. */
  fromMirror?: true;
}

export interface StoreHealth {
  /** Store usable for decisions right now. */
  ready: boolean;
  detail: string;
}

/**
 * Where bucket state lives. One call per request: the whole batch is decided
 * all-or-nothing (core/bucket.ts `evaluateBatch`): when every non-shadow op
 * is allowed each allowed op takes its tokens, otherwise none does.
 *
 * `apply` never hangs past the store's own deadline. A store that can fail
 * applies its failure policy itself (per Redis node: only a failed node's ops
 * are decided by the policy) and rejects only with StoreUnavailableError
 * under the `deny` policy.
 */
export interface Store {
  readonly kind: 'memory' | 'redis';
  /**
   * The decision at once when the store needs no call for it (the memory
   * store always; the Redis store when what Redis last reported already
   * denies), else its promise. A decision made at once costs no promise and
   * no turn of the loop.
   */
  apply(ops: readonly BucketOp[]): StoreDecision | Promise<StoreDecision>;
  health(): StoreHealth;
  close(): Promise<void>;
}
