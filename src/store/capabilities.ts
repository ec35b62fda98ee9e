import type { Algorithm } from '../core/types.js';
import type { Store } from '../core/store.js';

/** What a kind of store can decide. A config that needs more is refused at load (start-up and reload). */
export interface StoreCapabilities {
  /** For messages: "the Redis store". */
  name: string;
  algorithms: readonly Algorithm[];
}

/**
 * The memory store runs the reference model (core/bucket.ts); lua/openclaw.lua
 * mirrors all of it. (Quota groups in a Redis Cluster are decided per master:
 * a request whose quota descriptors live on several masters is decided by
 * each master for its own groups, see docs/configuration.md "Quota mode".)
 */
export const STORE_CAPABILITIES: Readonly<Record<Store['kind'], StoreCapabilities>> = Object.freeze({
  memory: Object.freeze({ name: 'the memory store', algorithms: Object.freeze(['token_bucket', 'fixed_window', 'sliding_window'] as const) }),
  redis: Object.freeze({ name: 'the Redis store', algorithms: Object.freeze(['token_bucket', 'fixed_window', 'sliding_window'] as const) }),
});
