/**
 * Local leases (docs/leases.md): a sidecar moves a slice of a busy token
 * bucket's tokens from Redis into its own memory ahead of need, and decides
 * requests on that key from them without a Redis call.
 *
 * Tokens are moved, never copied. Redis keeps, per bucket, what each sidecar
 * holds (lua/openclaw.lua `lease_hold`), and the bucket refills only up to
 * the burst less what sidecars hold, so bucket plus leases never exceed the
 * burst and the sidecars together admit at most burst + rate × T over any
 * interval T. A lease lives LEASE_TTL_US in Redis from each call; the sidecar
 * spends it for less (from when it sent the call, less a margin), so Redis
 * never stops counting tokens a sidecar may still spend.
 *
 * Size follows demand: each key's rate at this sidecar is tracked, and its
 * lease is topped up to about HORIZON_S of it. One grant takes at most a
 * quarter of what the bucket holds and nothing below MIN_TARGET, so a bucket
 * running empty stops being leased and is decided in Redis request by
 * request (exact, as without leases). Unspent tokens go back when the key's
 * demand goes away, at reload and at shutdown. A sidecar that dies holds its
 * lease until it ends in Redis (at most LEASE_TTL_US): those tokens are
 * stranded (under-admission, never over-admission) and counted.
 *
 * A request is decided from leases only when every op it has is on a key
 * this sidecar leases, with tokens enough (all-or-nothing as always); else
 * the store behind decides it, as without leases.
 */
import { ceilDiv } from '../../core/algorithms/algorithm.js';
import type { StoreDecision, StoreHealth } from '../../core/store.js';
import type { BucketOp, BucketOutcome, LimitSpec } from '../../core/types.js';
import { withRedisDeadline } from './deadline.js';
import { TickClock, decayedRate } from './demand.js';
import type { LeaseHoldItem, LeaseHoldResult, LeaseTerms, RedisLibrary } from './library.js';
import type { RedisStore } from './options.js';
import type { Topology } from './topology.js';

/** How often leases are topped up, renewed or returned. */
const TICK_MS = 50;
/**
 * Keys without a lease are counted over windows this long; one asked for
 * MIN_TARGET tokens or more a HORIZON_S in two windows in a row gets a lease
 * (a one-off burst does not).
 */
const CANDIDATE_WINDOW_MS = 250;
/**
 * A lease is sized for this much of the sidecar's demand for its key, and
 * topped up when less than a quarter of it is left: a busy key costs Redis
 * about 1.3 lease calls a second, whatever its rate.
 */
const HORIZON_S = 1;
const TOP_UP_BELOW = 0.25;
/**
 * Smallest lease worth its call, tokens (a lease call costs Redis about what
 * three takes do); a key whose demand asks for less is decided in Redis, and
 * so is a bucket holding less than 4 × this (32 tokens).
 */
const MIN_TARGET = 8;
/** How long Redis counts a lease after each call. */
const LEASE_TTL_US = 2_000_000;
/** The sidecar stops spending a lease this long before Redis stops counting it (the call's latency, clock-rate drift). */
const MARGIN_MS = 250;
/** A lease is renewed (or its excess returned) when it ends within this. */
const RENEW_BEFORE_MS = 1_000;
/** Redis grants at most 1/4 of what the bucket holds, and nothing below MIN_TARGET. */
const TERMS: LeaseTerms = { ttlUs: LEASE_TTL_US, share: 4, minimum: MIN_TARGET };
/** After a grant of nothing, the key is not asked again for this long. */
const QUIET_AFTER_REFUSAL_MS = 500;
/** A key not asked for this long gives its lease back. */
const FORGET_AFTER_MS = 2_000;
/** Most keys leased at once by one sidecar. */
const MAX_LEASES = 10_000;
/** Deadline of a lease call (off the request path). */
const CALL_DEADLINE_MS = 1_000;
/** At close, how long giving leases back may take. */
const RETURN_ON_CLOSE_MS = 500;

export interface LocalLeaseEvents {
  /** Tokens moved from a bucket into this sidecar's lease. */
  localLeaseGranted(tokens: number): void;
  /** Unspent tokens given back to their bucket. */
  localLeaseReturned(tokens: number): void;
  /** Tokens neither this sidecar nor the bucket can use until the lease ends in Redis (a failed call, a lease that ran out unspent). */
  localLeaseStranded(tokens: number): void;
}

/** What the layer needs of the store it wraps, besides deciding. */
export interface LeaseParts {
  library: RedisLibrary;
  topology: Topology;
  events: Partial<LocalLeaseEvents>;
  onError(error: unknown, message: string): void;
  /** Whether calls can be made now (connected, not closed). */
  usable(): boolean;
  /** A lease call found the bucket holding `tokens` (after its grant): the store's mirror learns it. */
  observed(op: BucketOp, tokens: number): void;
}

interface Lease {
  /** The key's op as last seen (key, slot tag, limit). */
  op: BucketOp;
  /** Tokens this sidecar may spend until `untilMs` (local clock). */
  tokens: number;
  untilMs: number;
  /** The bucket's tokens at the last call (for the remaining count a lease decision reports). */
  bucketTokens: number;
  /** Tokens asked since the last tick, and the rate they add up to (tokens/s). */
  asked: number;
  rate: number;
  seenMs: number;
  busy: boolean;
  quietUntilMs: number;
}

/** A lease call's item: what is sent, and the lease it is for. */
interface Call {
  lease: Lease;
  item: LeaseHoldItem;
}

/** Whether an op may be decided from a local lease: a plain take or check on a token bucket. */
function leasable(op: BucketOp): boolean {
  const limit = op.limit;
  return limit.algorithm === 'token_bucket' && !limit.overdraft && limit.scope === 'region' && limit.refillPerTick > 0
    && !op.shadow && op.report !== true && op.quotaGroup === undefined;
}

/** The store with local leases around it. */
export function withLocalLeases(store: RedisStore, parts: LeaseParts): RedisStore {
  return new LocalLeasesLayer(store, parts);
}

class LocalLeasesLayer implements RedisStore {
  readonly kind = 'redis' as const;
  private readonly leases = new Map<string, Lease>();
  /** Keys without a lease: tokens asked in the current candidate window, and their op; and the busy keys of the window before. */
  private candidates = new Map<string, { op: BucketOp; asked: number }>();
  private busyBefore = new Set<string>();
  private candidatesSinceMs = performance.now();
  private readonly clock = new TickClock();
  private readonly member = `${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly store: RedisStore,
    private readonly parts: LeaseParts,
  ) {
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  get mode(): RedisStore['mode'] {
    return this.store.mode;
  }

  apply(ops: readonly BucketOp[]): StoreDecision | Promise<StoreDecision> {
    return this.fromLeases(ops) ?? this.store.apply(ops);
  }

  /** The decision from local leases when every op has one with tokens enough; else undefined (demand is counted either way). */
  private fromLeases(ops: readonly BucketOp[]): StoreDecision | undefined {
    if (this.closed) return undefined;
    const nowMs = performance.now();
    let covered = ops.length > 0;
    let only: Lease | undefined; // a one-op request's lease: no second lookup
    for (const op of ops) {
      if (!leasable(op)) {
        covered = false;
        continue;
      }
      const lease = this.leases.get(op.key);
      if (lease === undefined) {
        covered = false;
        const candidate = this.candidates.get(op.key);
        if (candidate === undefined) this.candidates.set(op.key, { op, asked: op.cost });
        else candidate.asked += op.cost;
        continue;
      }
      lease.asked += op.cost;
      lease.seenMs = nowMs;
      lease.op = op;
      only = lease;
      if (lease.untilMs <= nowMs || lease.tokens < (ops.length === 1 ? op.cost : needOf(ops, op.key))) covered = false;
    }
    if (!covered) return undefined;
    if (ops.length === 1) {
      only!.tokens -= ops[0]!.cost;
      return { outcomes: [estimate(ops[0]!.limit, only!)], fallback: undefined, fromLease: true };
    }
    const outcomes: BucketOutcome[] = new Array(ops.length);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      const lease = this.leases.get(op.key)!;
      lease.tokens -= op.cost;
      outcomes[i] = estimate(op.limit, lease);
    }
    return { outcomes, fallback: undefined, fromLease: true };
  }

  /** One round: demand rates, new leases for busy keys, and each lease topped up, renewed or given back. */
  private tick(): void {
    if (this.closed || !this.parts.usable()) return;
    const nowMs = performance.now();
    const seconds = this.clock.lap(nowMs);
    const calls: Call[] = [];
    for (const [key, lease] of this.leases) {
      lease.rate = decayedRate(lease.rate, lease.asked, seconds);
      lease.asked = 0;
      if (lease.busy) continue;
      if (lease.tokens > 0 && lease.untilMs <= nowMs) {
        // Ran out unspent: Redis frees it when its own count of it ends.
        this.parts.events.localLeaseStranded?.(lease.tokens);
        lease.tokens = 0;
      }
      const target = Math.ceil(lease.rate * HORIZON_S);
      if (nowMs - lease.seenMs > FORGET_AFTER_MS || target < MIN_TARGET) {
        if (lease.tokens > 0) calls.push(this.callFor(lease, 0, 0, lease.tokens));
        else this.leases.delete(key);
        continue;
      }
      if (lease.quietUntilMs > nowMs) continue;
      const ending = lease.untilMs - nowMs < RENEW_BEFORE_MS;
      if (lease.tokens < target * TOP_UP_BELOW || ending) {
        const held = Math.min(lease.tokens, target);
        calls.push(this.callFor(lease, Math.max(0, target - held), held, lease.tokens - held));
      }
    }
    if (nowMs - this.candidatesSinceMs >= CANDIDATE_WINDOW_MS) {
      const windowS = (nowMs - this.candidatesSinceMs) / 1000;
      const busy = new Set<string>();
      for (const [key, { op, asked }] of this.candidates) {
        const rate = asked / windowS;
        const target = Math.ceil(rate * HORIZON_S);
        if (target < MIN_TARGET) continue;
        busy.add(key);
        if (!this.busyBefore.has(key) || this.leases.size >= MAX_LEASES) continue;
        const lease: Lease = { op, tokens: 0, untilMs: 0, bucketTokens: 0, asked: 0, rate, seenMs: nowMs, busy: false, quietUntilMs: 0 };
        this.leases.set(key, lease);
        calls.push(this.callFor(lease, target, 0, 0));
      }
      this.candidates = new Map();
      this.busyBefore = busy;
      this.candidatesSinceMs = nowMs;
    }
    if (calls.length > 0) void this.send(calls);
  }

  /** A call item for `lease`; tokens given back stop being spendable at once. */
  private callFor(lease: Lease, wanted: number, held: number, returned: number): Call {
    lease.busy = true;
    lease.tokens -= returned;
    return { lease, item: { key: lease.op.key, limit: lease.op.limit, wanted, held, returned } };
  }

  /** Sends the calls, one per Redis node, and applies each reply. Never rejects. */
  private async send(calls: Call[]): Promise<void> {
    const ops = calls.map(({ lease }) => lease.op);
    await Promise.all(this.parts.topology.groups(ops).map(async (group) => {
      const items = group.indices.map((i) => calls[i]!);
      const sentMs = performance.now();
      try {
        const results = await withRedisDeadline(
          this.parts.library.leaseHold(group.routingKey, this.member, TERMS, items.map(({ item }) => item)),
          CALL_DEADLINE_MS, 'local lease');
        items.forEach((call, k) => this.settle(call, results[k]!, sentMs));
      } catch (error: unknown) {
        // Applied or not, unknown: what was held stays spendable until its old end (Redis counts it at least that
        // long either way); what was given back is lost until Redis's count of it ends.
        const lost = items.reduce((sum, { item }) => sum + item.returned, 0);
        if (lost > 0) this.parts.events.localLeaseStranded?.(lost);
        for (const { lease } of items) lease.busy = false;
        this.parts.onError(error, 'local lease call failed; the keys are decided in Redis meanwhile');
      }
    }));
  }

  private settle({ lease, item }: Call, result: LeaseHoldResult, sentMs: number): void {
    lease.busy = false;
    if (!result.served) return; // a resharding moved the key: asked again next tick, of its new node
    if (item.returned > 0) this.parts.events.localLeaseReturned?.(item.returned);
    if (!result.kept && lease.tokens > 0) {
      // Redis no longer counted the lease (its call came too late): its tokens are not ours to spend.
      this.parts.events.localLeaseStranded?.(lease.tokens);
      lease.tokens = 0;
    }
    if (result.granted > 0) this.parts.events.localLeaseGranted?.(result.granted);
    lease.tokens += result.granted;
    lease.bucketTokens = result.bucketTokens;
    this.parts.observed(lease.op, result.bucketTokens);
    if (lease.tokens > 0) lease.untilMs = sentMs + LEASE_TTL_US / 1000 - MARGIN_MS;
    if (item.wanted > 0 && result.granted === 0) lease.quietUntilMs = performance.now() + QUIET_AFTER_REFUSAL_MS;
    if (item.wanted === 0 && item.held === 0 && lease.tokens === 0) this.leases.delete(item.key);
  }

  /** Gives every lease back (reload, shutdown), within `deadlineMs`. */
  private async returnAll(deadlineMs: number): Promise<void> {
    const calls: Call[] = [];
    for (const [key, lease] of this.leases) {
      if (lease.busy) continue;
      if (lease.tokens > 0 && lease.untilMs > performance.now()) calls.push(this.callFor(lease, 0, 0, lease.tokens));
      else this.leases.delete(key);
    }
    if (calls.length === 0) return;
    await Promise.race([this.send(calls), new Promise((resolve) => setTimeout(resolve, deadlineMs).unref())]);
  }

  /** A reload may change limits: every lease goes back, and new ones follow the new limits' demand. */
  configChanged(): void {
    void this.returnAll(CALL_DEADLINE_MS);
  }

  inspect(ops: readonly BucketOp[]): BucketOutcome[] | Promise<BucketOutcome[]> {
    return this.store.inspect(ops);
  }

  /** A reset bucket is full: this sidecar's leases of it end here (other sidecars' end with their life). */
  reset(ops: readonly BucketOp[]): number | Promise<number> {
    for (const op of ops) this.leases.delete(op.key);
    return this.store.reset(ops);
  }

  health(): StoreHealth {
    return this.store.health();
  }

  waitUntilConnected(timeoutMs: number): Promise<boolean> {
    return this.store.waitUntilConnected(timeoutMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.timer);
    if (this.parts.usable()) await this.returnAll(RETURN_ON_CLOSE_MS);
    this.closed = true;
    await this.store.close();
  }
}

/** The tokens `ops` take of `key` (a request may name one key twice). */
function needOf(ops: readonly BucketOp[], key: string): number {
  let need = 0;
  for (const op of ops) if (op.key === key) need += op.cost;
  return need;
}

/**
 * What a lease decision reports: allowed, and as remaining the bucket's tokens
 * at the last call plus what the lease still holds (an estimate: other
 * sidecars take from the bucket meanwhile, and it refills).
 */
function estimate(limit: LimitSpec, lease: Lease): BucketOutcome {
  const remaining = Math.min(limit.burst, lease.bucketTokens + lease.tokens);
  // When the bucket would be full again at its rate (token-bucket.ts's reset, from a whole tick).
  const missing = limit.capacityLevel - remaining * limit.levelPerToken;
  const resetUs = missing <= 0 ? 0 : ceilDiv(missing, limit.refillPerTick) * limit.tickUs;
  return { allowed: true, remaining, resetUs, retryAfterUs: 0 };
}
