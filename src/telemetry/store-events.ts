// What the Redis store reports, as metrics and log lines. The store tells
// events (store/redis/options.ts `StoreEvents`) and knows no metrics; this is
// telemetry's reading of them. Telemetry does not import the store: the
// composition root hands this object to the store, and the compiler checks
// there that it fits the store's events.
import type { StoreFailurePolicy } from '../core/store.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/**
 * The store's events counted in `metrics` and logged to `logger`: state
 * changes only, nothing per request. A master going down is one line, staying
 * down a reminder at most once a minute, coming back one line; a
 * misconfiguration is one error line (its node's down line is not repeated).
 */
export function storeEventsTelemetry(metrics: Metrics, logger: Logger, policy: StoreFailurePolicy) {
  const redis = metrics.redis;
  const misconfiguredCauses = new Map<string, string>();
  return {
    call: (node: string, seconds: number, ok: boolean): void => {
      redis.observeCall(node, seconds);
      if (!ok) metrics.storeErrors.inc();
    },
    nodeState: (node: string, state: string, _previous: string, reason: string, misconfigured: boolean): void => {
      redis.nodeUnavailable.set({ node: redis.nodeLabel(node) }, state === 'closed' ? 0 : 1);
      if (state === 'closed') logger.info({ node, policy }, `redis circuit closed for ${node}: ${reason}; Redis decides its keys again`);
      else if (!misconfigured) logger.warn({ node, policy, reason }, `redis circuit open for ${node}: ${reason}; the ${policy} store-failure policy decides its keys`);
    },
    nodeStillDown: (node: string, reason: string, downMs: number, misconfigured: boolean): void => {
      const log = misconfigured ? logger.error.bind(logger) : logger.warn.bind(logger);
      const what = misconfigured ? 'misconfigured' : 'down';
      log({ node, policy, reason, downSeconds: Math.round(downMs / 1000) }, `redis ${node} still ${what} after ${Math.round(downMs / 1000)} s: ${reason}`);
    },
    misconfigured: (node: string, cause: string | undefined, words: string | undefined): void => {
      const label = redis.nodeLabel(node);
      const previous = misconfiguredCauses.get(node);
      if (previous !== undefined) redis.misconfigured.remove({ node: label, cause: previous });
      if (cause === undefined) {
        misconfiguredCauses.delete(node);
        if (previous !== undefined) logger.info({ node }, `redis ${node} is no longer misconfigured`);
        return;
      }
      misconfiguredCauses.set(node, cause);
      redis.misconfigured.set({ node: label, cause }, 1);
      logger.error({ node, cause, policy },
        `redis ${node} is misconfigured: ${words ?? cause}. Not an outage: this sidecar is not ready and refuses the decisions of that node's keys (503, gRPC UNAVAILABLE) under every store-failure policy until it is fixed`);
    },
    eviction: (node: string, reading: { canEvict: boolean; evictedSinceLast: number }): void => {
      const label = redis.nodeLabel(node);
      redis.evictionPossible.set({ node: label }, reading.canEvict ? 1 : 0);
      redis.evictedKeys.inc({ node: label }, reading.evictedSinceLast);
    },
    deadlineExtended: (): void => redis.deadlineExtensions.inc(),
    timeout: (): void => redis.timeouts.inc(),
    lateReply: (): void => redis.lateReplies.inc(),
    fallbackOverAdmitted: (count: number): void => redis.fallbackOverAdmitted.inc(count),
    uncertainCall: (): void => redis.uncertainCalls.inc(),
    fallbackDecision: (): void => metrics.storeFailureDecisions.inc(),
    localDenial: (): void => redis.localDenials.inc(),
    sidecars: (count: number): void => redis.sidecarsSeen.set(count),
    leaseRequested: (home: string, tokens: number): void => metrics.leaseRequested.inc({ home }, tokens),
    leaseGranted: (home: string, tokens: number): void => metrics.leaseGranted.inc({ home }, tokens),
    leaseStranded: (tokens: number): void => metrics.leaseStranded.inc(tokens),
    regionReachable: (region: string, reachable: boolean): void => {
      metrics.regionUnreachable.set({ region }, reachable ? 0 : 1);
      const log = reachable ? logger.info.bind(logger) : logger.warn.bind(logger);
      log({ region }, reachable ? `region ${region} reachable again: global limits lease from it` : `region ${region} unreachable: its global keys decide from leases, then static shares`);
    },
    staticShare: (): void => metrics.staticShareDecisions.inc(),
    localLeaseGranted: (tokens: number): void => {
      redis.localLeaseGrants.inc();
      redis.localLeaseTokens.inc({ event: 'granted' }, tokens);
    },
    localLeaseReturned: (tokens: number): void => redis.localLeaseTokens.inc({ event: 'returned' }, tokens),
    localLeaseStranded: (tokens: number): void => redis.localLeaseTokens.inc({ event: 'stranded' }, tokens),
  };
}
