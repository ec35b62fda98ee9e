// Limits with `scope: global` (docs/multi-region.md) as a layer around this region's
// Redis store: ops are routed to the home bucket, the region's lease or the
// static share before the store decides, and the lease learns from the
// decision after it. The store itself knows nothing of regions.
import type { BucketAdmin, StoreDecision, StoreHealth } from '../../core/store.js';
import type { BucketOp, BucketOutcome } from '../../core/types.js';
import { RedisBucketAdmin } from './bucket-admin.js';
import { GlobalLimits } from './global-limits.js';
import type { RedisLibrary } from './library.js';
import type { RedisStore, RedisStoreOptions } from './options.js';
import type { Topology } from './topology.js';

/** What the layer needs of the store it wraps. */
export interface RegionalStore extends RedisStore {
  /** This region's script library and topology: leases are claimed and deposited in our own Redis. */
  readonly library: RedisLibrary;
  readonly topology: Topology;
  /** Sidecars sharing this Redis (their heartbeats), this one included. */
  readonly sidecars: number;
  /** Redis decides, without the local mirror. */
  decideInRedis(ops: readonly BucketOp[]): Promise<StoreDecision>;
  /** Remembers an error for health() and logs it now and then; never throws. */
  noteError(error: unknown, message: string): void;
}

/** Deadline of an admin call to another region's Redis (60-150 ms one-way between regions). */
const REMOTE_ADMIN_DEADLINE_MS = 2_000;

/** The store with global limits around it when this sidecar has a region and knows every region's Redis; else the store. */
export function withGlobalLimits(store: RegionalStore, options: RedisStoreOptions): RedisStore {
  const { region, regions } = options;
  if (region === undefined || regions === undefined) return store;
  return new GlobalLimitsLayer(store, new GlobalLimits({
    ...options,
    region,
    regions,
    library: store.library,
    topology: store.topology,
    sidecars: () => store.sidecars,
    events: options.events ?? {},
    onError: (error, message) => store.noteError(error, message),
  }));
}

class GlobalLimitsLayer implements RedisStore {
  readonly kind = 'redis' as const;
  private readonly remoteAdmins = new Map<string, RedisBucketAdmin>();

  constructor(
    private readonly store: RegionalStore,
    private readonly global: GlobalLimits,
  ) {}

  get mode(): RedisStore['mode'] {
    return this.store.mode;
  }

  apply(ops: readonly BucketOp[]): StoreDecision | Promise<StoreDecision> {
    const routed = this.global.route(ops);
    if (routed === ops) return this.store.apply(ops);
    // The lease and home buckets change by grants too, so the mirror cannot judge them: Redis decides.
    return this.store.decideInRedis(routed).then((decision) => {
      this.global.observe(routed, decision.outcomes);
      return decision;
    });
  }

  /**
   * A global limit is inspected at its home bucket (`<key>:g`, in the key's
   * home region's Redis): the budget's tokens that no region holds in a
   * lease. Other limits are this region's buckets.
   */
  async inspect(ops: readonly BucketOp[]): Promise<BucketOutcome[]> {
    const outcomes: BucketOutcome[] = new Array(ops.length);
    await Promise.all([...this.byAdmin(ops)].map(async ([admin, { routed, at }]) => {
      const found = await admin.inspect(routed);
      found.forEach((outcome, k) => {
        outcomes[at[k]!] = outcome;
      });
    }));
    return outcomes;
  }

  /**
   * A global limit's reset deletes its home bucket, which becomes full up to
   * what unexpired leases still hold (they stay with their regions, so all
   * regions together still admit at most the burst), and this region's
   * static share. Counts the buckets of the request that had state.
   */
  async reset(ops: readonly BucketOp[]): Promise<number> {
    const shares = ops.filter((op) => op.limit.scope === 'global')
      .map((op) => ({ ...op, key: `${op.key}:share:${this.global.home(op.key).region}` }));
    const [counts] = await Promise.all([
      Promise.all([...this.byAdmin(ops)].map(([admin, { routed }]) => admin.reset(routed))),
      shares.length === 0 ? 0 : this.store.reset(shares),
    ]);
    return counts.reduce((sum, count) => sum + count, 0);
  }

  /** Ops grouped by the Redis that holds their bucket: a global op's home bucket in its home region, the others here. */
  private byAdmin(ops: readonly BucketOp[]): Map<BucketAdmin, { routed: BucketOp[]; at: number[] }> {
    const groups = new Map<BucketAdmin, { routed: BucketOp[]; at: number[] }>();
    ops.forEach((op, i) => {
      let admin: BucketAdmin = this.store;
      let routed = op;
      if (op.limit.scope === 'global') {
        routed = { ...op, key: `${op.key}:g` };
        const { home, remote } = this.global.home(op.key);
        if (remote !== undefined) {
          let remoteAdmin = this.remoteAdmins.get(home);
          if (remoteAdmin === undefined) {
            remoteAdmin = new RedisBucketAdmin(remote.connection, remote.topology, REMOTE_ADMIN_DEADLINE_MS);
            this.remoteAdmins.set(home, remoteAdmin);
          }
          admin = remoteAdmin;
        }
      }
      const group = groups.get(admin) ?? { routed: [], at: [] };
      group.routed.push(routed);
      group.at.push(i);
      groups.set(admin, group);
    });
    return groups;
  }

  health(): StoreHealth {
    return this.store.health();
  }

  waitUntilConnected(timeoutMs: number): Promise<boolean> {
    return this.store.waitUntilConnected(timeoutMs);
  }

  async close(): Promise<void> {
    this.global.close();
    await this.store.close();
  }
}
