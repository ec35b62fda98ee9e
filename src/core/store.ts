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
  /** Set when the Redis store decided from this sidecar's local leases, without a call. */
  fromLease?: true;
}

export interface StoreHealth {
  /** Store usable for decisions right now. */
  ready: boolean;
  detail: string;
  /**
   * Set while the store is misconfigured (a wrong password, an ACL that
   * forbids what decisions need, no scripting): what is wrong, in our words.
   * Not an outage: the server is not ready under any failure policy.
   */
  misconfigured?: string;
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
  /** The config was reloaded (limits may have changed): what the store holds ahead of need for the old limits goes back. */
  configChanged?(): void;
  close(): Promise<void>;
}

/**
 * An operator's view of the buckets (the admin listener, the inspect and
 * reset commands). Never decides and never takes: it reads what the store
 * itself holds (for Redis: Redis, not this process's mirror of it) and
 * deletes state. Rejects with StoreUnavailableError (its message in our
 * words) when the store cannot answer within its deadline: no failure policy
 * applies to an operator's call.
 */
export interface BucketAdmin {
  /**
   * Each op's bucket as it is now, evaluated for the op's cost with nothing
   * taken: `allowed` says whether that cost would pass now, `remaining` what
   * the bucket holds.
   */
  inspect(ops: readonly BucketOp[]): BucketOutcome[] | Promise<BucketOutcome[]>;
  /** Deletes the state of each op's bucket (a bucket without state is full); resolves with how many had state. */
  reset(ops: readonly BucketOp[]): number | Promise<number>;
}
