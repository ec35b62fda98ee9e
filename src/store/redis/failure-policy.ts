// --on-store-failure: what decides the ops of a Redis node that failed.
import type { StoreFailurePolicy } from '../../core/store.js';
import type { BucketOp, BucketOutcome, LimitSpec } from '../../core/types.js';
import { StoreUnavailableError } from '../../errors.js';
import { timedOut } from './deadline.js';
import { redisErrorWords } from './error-words.js';
import { misconfigurationOf } from './misconfiguration.js';
import type { MemoryStore } from '../memory-store.js';

export interface PolicyDecision {
  /** Every op allowed by the policy (all-or-nothing, like a store batch). */
  commits: boolean;
  outcomes: BucketOutcome[];
  /** Ops of global limits decided from their static share (`op.fallback`). */
  staticShares: number;
}

/** The same limit, always over (requests_per_unit 0): what a global op whose call is still with Redis gets. */
const alwaysOverSpecs = new WeakMap<LimitSpec, LimitSpec>();
function alwaysOver(op: BucketOp): BucketOp {
  let limit = alwaysOverSpecs.get(op.limit);
  if (limit === undefined) {
    limit = Object.freeze({ ...op.limit, refillPerTick: 0 });
    alwaysOverSpecs.set(op.limit, limit);
  }
  return { ...op, limit };
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
 *
 * A misconfiguration (a wrong password, an ACL that forbids our script or
 * keys, no scripting: misconfiguration.ts) is not an outage that passes: its
 * ops are refused as under `deny`, whatever the policy, instead of being
 * admitted locally (or openly) by every sidecar for as long as it lasts.
 *
 * A global limit's op (docs/design.md#one-budget-across-regions; it carries `fallback`, its static share) is
 * never decided from a copy of its home bucket or lease: those tokens move
 * between regions, so no local copy can know them. Under `local`:
 * - its node is unavailable (errors, open breaker): the static share decides,
 *   as in a partition (docs/multi-region.md);
 * - its call only missed its deadline: it is denied. Redis has the call and
 *   decides it; a late commit is refunded, the request having been denied.
 *   Spending the static share here would over-admit with every link healthy
 *   whenever the machine is too busy for the deadline.
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

  /**
   * Decides `ops` (the failed nodes' share of one request); throws
   * StoreUnavailableError under `deny`, and for a misconfiguration. `late`,
   * per op: its call only missed its deadline (default: whether `error` says so).
   */
  decide(given: readonly BucketOp[], error: unknown, late?: readonly boolean[]): PolicyDecision {
    const misconfiguration = misconfigurationOf(error);
    if (misconfiguration !== undefined) throw new StoreUnavailableError(`store unavailable: ${misconfiguration.words}`, { cause: error });
    const allLate = timedOut(error);
    let staticShares = 0;
    const ops = !given.some((op) => op.fallback !== undefined) ? given : given.map((op, i) => {
      if (op.fallback === undefined) return op;
      if (late?.[i] ?? allLate) return alwaysOver(op.fallback);
      staticShares++;
      return op.fallback;
    });
    switch (this.policy) {
      case 'deny':
        throw new StoreUnavailableError(`store unavailable: ${redisErrorWords(error)}`, { cause: error });
      case 'allow':
        return { commits: true, outcomes: ops.map((op) => ({ allowed: true, remaining: op.limit.burst, resetUs: 0, retryAfterUs: 0 })), staticShares: 0 };
      case 'local':
        return { ...(this.divisor > 1 ? this.decideDivided(ops) : this.decideLocally(ops)), staticShares };
    }
  }

  /** What the local buckets say about `ops` without taking anything (for ops of a request Redis denied). */
  untaken(ops: readonly BucketOp[]): BucketOutcome[] {
    return this.local.peek(ops.map((op) => op.fallback ?? op)).evaluations.map((evaluation) => evaluation.untaken);
  }

  private decideLocally(ops: readonly BucketOp[]): Omit<PolicyDecision, 'staticShares'> {
    const { commits, outcomes } = this.local.commit(ops);
    return { commits, outcomes };
  }

  private decideDivided(ops: readonly BucketOp[]): Omit<PolicyDecision, 'staticShares'> {
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
    // A window's burst is its requests_per_unit (config refuses a burst on windows).
    return Math.max(1, Math.min(this.divisor, op.limit.burst));
  }
}
