// The Redis store's contract: its options, the events it reports, and what it offers beyond a Store.
import type { RegionAddress } from '../../core/regions.js';
import type { BucketAdmin, Store, StoreFailurePolicy } from '../../core/store.js';
import type { MemoryStore } from '../memory-store.js';
import type { BreakerState } from './circuit-breaker.js';
import type { RedisConnectionOptions } from './connection.js';
import type { GlobalLimitEvents } from './global-limits.js';
import type { LocalLeaseEvents } from './local-leases.js';

/** Any pino-like logger. */
export interface StoreLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** What the store tells the outside (metrics, logs). Every member optional. */
export interface RedisStoreEvents {
  /** A script call finished; seconds from write to reply; `ok` false: failed or missed its deadline. */
  call(node: string, seconds: number, ok: boolean): void;
  /** A master's breaker opened (it is down: `reason`) or closed (it answers again); once per change. */
  nodeState(node: string, state: BreakerState, previous: BreakerState, reason: string, misconfigured: boolean): void;
  /** A master is still down after `downMs` (at most once a minute per node). */
  nodeStillDown(node: string, reason: string, downMs: number, misconfigured: boolean): void;
  /** A master's Redis refuses us for a reason no outage explains (`cause` set), or no longer does (`cause` undefined). */
  misconfigured(node: string, cause: string | undefined, words: string | undefined): void;
  /**
   * What a master's eviction settings mean for buckets, read at connect and
   * every 30 s: whether `policy` (maxmemory-policy) lets Redis evict them,
   * and how many keys Redis evicted since the last reading.
   */
  eviction(node: string, reading: { policy: string; canEvict: boolean; evictedSinceLast: number }): void;
  /** The event loop lagged past a deadline, which was extended. */
  deadlineExtended(): void;
  /** A script call missed its deadline: Redis did not answer in time. */
  timeout(node: string): void;
  /** A reply came after its call's deadline (the failure policy had decided). */
  lateReply(node: string): void;
  /**
   * The local policy admitted `count` beyond what Redis held: a late reply
   * denied a request it admitted (1), or a write-back found the buckets
   * short of its admissions (the shortfall, in tokens).
   */
  fallbackOverAdmitted(count: number): void;
  /** A call abandoned at its deadline lost its connection before Redis answered: applied or not, unknown. */
  uncertainCall(): void;
  /** Some ops of a request were decided by the failure policy. */
  fallbackDecision(policy: StoreFailurePolicy): void;
  /** A request was denied from the local mirror, without a Redis call. */
  localDenial(): void;
  /** Sidecars seen sharing this Redis (their heartbeats), this one included. */
  sidecars(count: number): void;
}

export type StoreEvents = RedisStoreEvents & GlobalLimitEvents & LocalLeaseEvents;

export interface RedisStoreOptions extends RedisConnectionOptions {
  /** Deadline of one script call, ms (counted from its write, loop lag excluded). */
  redisTimeoutMs: number;
  /** How long a decision may wait for others to share its script call, ms; 0 (default) = only those of the same event-loop turn (batcher.ts). */
  redisBatchWindowMs?: number | undefined;
  onStoreFailure: StoreFailurePolicy;
  /** The local policy's divisor; 'auto' = the number of sidecars sharing this Redis. */
  fallbackDivisor: number | 'auto';
  /** Prefix of our keys (the limiter builds bucket keys; the store names its heartbeat key). */
  redisKeyPrefix: string;
  /** The local buckets: mirror of Redis states and the `local` policy's buckets. */
  local: MemoryStore;
  /** Record Redis states in `local` (deny without a call, seed the fallback). */
  mirror: boolean;
  /** Decide busy token buckets from local leases (local-leases.ts); default on. */
  localLeases?: boolean | undefined;
  /** This sidecar's region and every region's Redis (limits with scope: global); absent = one region. */
  region?: string | undefined;
  regions?: readonly RegionAddress[] | undefined;
  /** false: this process decides nothing (the inspect and reset commands): it sends no heartbeat, so sidecars do not count it. */
  sidecar?: boolean | undefined;
  logger?: StoreLogger | undefined;
  events?: Partial<StoreEvents> | undefined;
  /** Consecutive failed calls that mark a master down (a closed connection or a misconfiguration does at once). */
  breaker?: { failureThreshold?: number } | undefined;
}

/** A Store and its operator's view (BucketAdmin: reads and deletes in Redis itself). */
export interface RedisStore extends Store, BucketAdmin {
  readonly kind: 'redis';
  readonly mode: 'single' | 'cluster';
  /** Resolves true once connected, or false after `timeoutMs` (the store keeps connecting). */
  waitUntilConnected(timeoutMs: number): Promise<boolean>;
}
