// --on-store-failure: what decides the ops of a Redis node that failed.
import type { StoreFailurePolicy } from '../../core/store.js';
import type { BucketOp, BucketOutcome } from '../../core/types.js';
import { StoreUnavailableError } from '../../errors.js';
import { redisErrorWords } from './error-words.js';
import type { MemoryStore } from '../memory-store.js';

export interface PolicyDecision {
  /** Every op allowed by the policy (all-or-nothing, like a store batch). */
  commits: boolean;
  outcomes: BucketOutcome[];
}

/**
 * `local`: the sidecar's own buckets decide — the same MemoryStore that
 * mirrors what Redis last reported, so a local decision starts from the state
 * Redis was known to have and never grants tokens Redis reported spent.
 * With a divisor N each request costs N tokens (at most the bucket's
 * capacity, so a small limit still admits one per sidecar): each of N
 * sidecars then admits about 1/N of what Redis had left. `--fallback-divisor
 * auto` (the default) sets N to the number of sidecars that share this Redis,
 * counted by their heartbeats (see redis-store.ts).
 * `allow`: fail open, statuses report a full bucket (the real state is unknown).
 * `deny`: fail closed, StoreUnavailableError (HTTP 503, gRPC UNAVAILABLE).
 */
export class FailurePolicy {
  constructor(
    readonly policy: StoreFailurePolicy,
    private readonly local: MemoryStore,
    private divisor: number,
  ) {}

  /** The automatic divisor's latest count of sidecars (at least 1). */
  setDivisor(divisor: number): void {
    this.divisor = Math.max(1, Math.floor(divisor));
  }

  get currentDivisor(): number {
    return this.divisor;
  }

  /** Decides `ops` (a failed node's share of one request); throws StoreUnavailableError under `deny`. */
  decide(given: readonly BucketOp[], error: unknown): PolicyDecision {
    const ops = given.some((op) => op.fallback !== undefined) ? given.map((op) => op.fallback ?? op) : given;
    switch (this.policy) {
      case 'deny':
        throw new StoreUnavailableError(`store unavailable: ${redisErrorWords(error)}`, { cause: error });
      case 'allow':
        return { commits: true, outcomes: ops.map((op) => ({ allowed: true, remaining: op.limit.burst, resetUs: 0, retryAfterUs: 0 })) };
      case 'local':
        return this.divisor > 1 ? this.decideDivided(ops) : this.decideLocally(ops);
    }
  }

  /** What the local buckets say about `ops` without taking anything (for ops of a request Redis denied). */
  untaken(ops: readonly BucketOp[]): BucketOutcome[] {
    return this.local.peek(ops.map((op) => op.fallback ?? op)).evaluations.map((evaluation) => evaluation.untaken);
  }

  private decideLocally(ops: readonly BucketOp[]): PolicyDecision {
    const { commits, outcomes } = this.local.commit(ops);
    return { commits, outcomes };
  }

  private decideDivided(ops: readonly BucketOp[]): PolicyDecision {
    const shares = ops.map((op) => this.shareOf(op));
    const scaledOps = ops.map((op, i) => ({ ...op, cost: op.cost * shares[i]! }));
    const decision = this.decideLocally(scaledOps);
    return {
      commits: decision.commits,
      outcomes: decision.outcomes.map((outcome, i) => ({ ...outcome, remaining: Math.floor(outcome.remaining / shares[i]!) })),
    };
  }

  /** How many of the global bucket's tokens one request costs here: the divisor, at most the capacity. */
  private shareOf(op: BucketOp): number {
    const capacity = op.limit.algorithm === 'token_bucket' ? op.limit.burst : op.limit.requestsPerUnit;
    return Math.max(1, Math.min(this.divisor, capacity));
  }
}
