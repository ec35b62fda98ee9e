// What the Redis store reports, as metrics and log lines. The store tells
// events (store/redis/options.ts `StoreEvents`) and knows no metrics; this is
// telemetry's reading of them. Telemetry does not import the store: the
// composition root hands this object to the store, and the compiler checks
// there that it fits the store's events.
import type { StoreFailurePolicy } from '../core/store.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/** The store's events counted in `metrics` and logged to `logger` (state changes only: nothing per request). */
export function storeEventsTelemetry(metrics: Metrics, logger: Logger, policy: StoreFailurePolicy) {
  return {
    call: (node: string, seconds: number): void => metrics.observeRedisCall(node, seconds),
    nodeState: (node: string, state: string, previous: string): void => {
      metrics.redisNodeUnavailable.set({ node: metrics.nodeLabel(node) }, state === 'closed' ? 0 : 1);
      const log = state === 'closed' ? logger.info.bind(logger) : logger.warn.bind(logger);
      log({ node, state, previous, policy }, `redis circuit ${state} for ${node}`);
    },
    deadlineExtended: (): void => metrics.redisDeadlineExtensions.inc(),
    timeout: (): void => metrics.redisTimeouts.inc(),
    lateReply: (): void => metrics.redisLateReplies.inc(),
    fallbackOverAdmitted: (): void => metrics.fallbackOverAdmitted.inc(),
    uncertainCall: (): void => metrics.uncertainCalls.inc(),
    fallbackDecision: (): void => metrics.storeErrors.inc(),
    localDenial: (): void => metrics.localDenials.inc(),
    sidecars: (count: number): void => metrics.sidecarsSeen.set(count),
    leaseRequested: (home: string, tokens: number): void => metrics.leaseRequested.inc({ home }, tokens),
    leaseGranted: (home: string, tokens: number): void => metrics.leaseGranted.inc({ home }, tokens),
    leaseStranded: (tokens: number): void => metrics.leaseStranded.inc(tokens),
    regionReachable: (region: string, reachable: boolean): void => {
      metrics.regionUnreachable.set({ region }, reachable ? 0 : 1);
      const log = reachable ? logger.info.bind(logger) : logger.warn.bind(logger);
      log({ region }, reachable ? `region ${region} reachable again: global limits lease from it` : `region ${region} unreachable: its global keys decide from leases, then static shares`);
    },
    staticShare: (): void => metrics.staticShareDecisions.inc(),
  };
}
