/**
 * Redis stores for tests, built the way the server builds them (src/server/app.ts
 * createStore): real ioredis against real redis-server processes, a local
 * mirror, and the failure policy under test (default `deny`, so a failed call
 * surfaces as StoreUnavailableError instead of a local decision).
 */
import type { Test } from 'tap';
import type { StoreFailurePolicy } from '../../../src/core/store.js';
import type { BucketOp, BucketOutcome } from '../../../src/core/types.js';
import { MemoryStore } from '../../../src/store/memory-store.js';
import type { BreakerState } from '../../../src/store/redis/circuit-breaker.js';
import { createRedisStore, type RedisStore, type RedisStoreEvents, type RedisStoreOptions } from '../../../src/store/redis/redis-store.js';

export interface TestStore {
  store: RedisStore;
  local: MemoryStore;
  /** Breaker transitions seen, per node. */
  states: Map<string, BreakerState[]>;
  /** Every event counted by name. */
  counts: Record<string, number>;
  /** Outcomes only; throws if the failure policy decided any op. */
  apply(ops: readonly BucketOp[]): Promise<BucketOutcome[]>;
}

export function redisStoreFor(t: Pick<Test, 'teardown'>, options: Partial<RedisStoreOptions> & { policy?: StoreFailurePolicy } = {}): TestStore {
  const local = options.local ?? new MemoryStore({ maxKeys: 100_000 });
  const states = new Map<string, BreakerState[]>();
  const counts: Record<string, number> = {};
  const count = (name: keyof RedisStoreEvents): void => {
    counts[name] = (counts[name] ?? 0) + 1;
  };
  const events: Partial<RedisStoreEvents> = {
    call: () => count('call'),
    nodeState: (node, state) => {
      count('nodeState');
      const list = states.get(node) ?? [];
      list.push(state);
      states.set(node, list);
    },
    deadlineExtended: () => count('deadlineExtended'),
    timeout: () => count('timeout'),
    lateReply: () => count('lateReply'),
    fallbackOverAdmitted: () => count('fallbackOverAdmitted'),
    fallbackDecision: () => count('fallbackDecision'),
    localDenial: () => count('localDenial'),
  };
  const store = createRedisStore({
    redisTimeoutMs: 50,
    onStoreFailure: options.policy ?? 'deny',
    fallbackDivisor: 1,
    redisKeyPrefix: 'rl:',
    mirror: true,
    events,
    ...options,
    local,
  });
  t.teardown(() => store.close());
  return {
    store,
    local,
    states,
    counts,
    async apply(ops) {
      const decision = await store.apply(ops);
      if (decision.fallback !== undefined) throw new Error(`the failure policy (${decision.fallback}) decided`);
      return decision.outcomes;
    },
  };
}
