// Limits with `scope: global` (SPEC §11) as a layer around this region's
// Redis store: ops are routed to the home bucket, the region's lease or the
// static share before the store decides, and the lease learns from the
// decision after it. The store itself knows nothing of regions.
import type { StoreDecision, StoreHealth } from '../../core/store.js';
import type { BucketOp } from '../../core/types.js';
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
