// The Redis store's metrics: per master (calls, breakers, misconfiguration,
// eviction) and the store-failure policy's own figures. Part of the one
// registry of Metrics (metrics.ts); fed by store-events.ts.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Most nodes that get their own `node` label; more (a huge cluster, or churn) share "other". */
const MAX_NODE_LABELS = 64;
const REDIS_CALL_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

export class RedisStoreMetrics {
  readonly callDuration: Histogram<'node'>;
  readonly nodeUnavailable: Gauge<'node'>;
  readonly misconfigured: Gauge<'node' | 'cause'>;
  readonly evictionPossible: Gauge<'node'>;
  readonly evictedKeys: Counter<'node'>;
  readonly deadlineExtensions: Counter;
  readonly timeouts: Counter;
  readonly lateReplies: Counter;
  readonly fallbackOverAdmitted: Counter;
  readonly uncertainCalls: Counter;
  readonly localDenials: Counter;
  readonly sidecarsSeen: Gauge;
  readonly localLeaseGrants: Counter;
  readonly localLeaseTokens: Counter<'event'>;
  private readonly nodeLabels = new Set<string>();
  private readonly callChildren = new Map<string, Histogram.Internal<'node'>>();

  constructor(registry: Registry) {
    const registers = [registry];
    const counter = (name: string, help: string): Counter => new Counter({ name, help, registers });
    this.callDuration = new Histogram({
      name: 'ratelimit_redis_call_duration_seconds',
      help: 'Time from writing one script call to reading its reply, by Redis master (calls coalesce many decisions).',
      labelNames: ['node'] as const,
      buckets: REDIS_CALL_BUCKETS_S,
      registers,
    });
    this.nodeUnavailable = new Gauge({
      name: 'ratelimit_redis_node_unavailable',
      help: '1 while a Redis master is down (its circuit breaker open: a closed connection, failed calls or probes, a misconfiguration): its keys are decided by the failure policy, or refused when misconfigured.',
      labelNames: ['node'] as const,
      aggregator: 'max',
      registers,
    });
    this.misconfigured = new Gauge({
      name: 'ratelimit_redis_misconfigured',
      help: '1 while a Redis master refuses us for a reason no outage explains (cause: wrong_password, no_password, sentinel_auth, sentinel_master, acl_scripting, acl_keys, acl_command, no_scripting): not ready, its keys refused.',
      labelNames: ['node', 'cause'] as const,
      aggregator: 'max',
      registers,
    });
    this.evictionPossible = new Gauge({
      name: 'ratelimit_redis_eviction_possible',
      help: '1 while a Redis master has a memory limit and a maxmemory-policy other than noeviction: it may evict buckets (an evicted bucket is a full one).',
      labelNames: ['node'] as const,
      aggregator: 'max',
      registers,
    });
    this.evictedKeys = new Counter({
      name: 'ratelimit_redis_evicted_keys_total',
      help: 'Keys a Redis master evicted (its evicted_keys, read at connect and every 30 s; the first reading counts since Redis started; any key, buckets among them).',
      labelNames: ['node'] as const,
      registers,
    });
    this.deadlineExtensions = counter('ratelimit_redis_deadline_extensions_total',
      'Redis call deadlines extended because this process\'s event loop lagged (not counted against Redis).');
    this.timeouts = counter('ratelimit_redis_timeouts_total',
      'Script calls Redis did not answer within --redis-timeout-ms (counted from the write, event-loop lag excluded).');
    this.lateReplies = counter('ratelimit_redis_late_replies_total',
      'Replies that arrived after their call\'s deadline; they still update the local state.');
    this.fallbackOverAdmitted = counter('ratelimit_fallback_overadmitted_total',
      'Requests (tokens) the local failure policy admitted beyond what Redis held: denied by Redis in a late reply, or missing from the bucket when written back.');
    this.uncertainCalls = counter('ratelimit_redis_uncertain_calls_total',
      'Redis calls whose connection closed while they were in flight: whether Redis applied them cannot be known, so what the failure policy admitted for them is written back and may count twice.');
    this.localDenials = counter('ratelimit_local_denials_total',
      'Requests denied from the last state Redis reported, without a Redis call.');
    this.sidecarsSeen = new Gauge({
      name: 'ratelimit_sidecars_seen',
      help: 'Sidecars whose heartbeats this one sees in Redis (the local fallback divisor with --fallback-divisor auto).',
      aggregator: 'max',
      registers,
    });
    this.localLeaseGrants = counter('ratelimit_local_lease_grants_total',
      'Grants of tokens from a Redis bucket into this sidecar\'s local lease of it (docs/leases.md).');
    this.localLeaseTokens = new Counter({
      name: 'ratelimit_local_lease_tokens_total',
      help: 'Tokens of local leases by event: granted (moved from a bucket into this sidecar), returned (unspent, given back), stranded (neither this sidecar nor the bucket could use them until the lease ended in Redis: a failed call, a lease that ran out unspent).',
      labelNames: ['event'] as const,
      registers,
    });
    for (const event of ['granted', 'returned', 'stranded']) this.localLeaseTokens.inc({ event }, 0);
    for (const zero of [this.localLeaseGrants, this.deadlineExtensions, this.timeouts, this.lateReplies, this.fallbackOverAdmitted, this.uncertainCalls, this.localDenials]) zero.inc(0);
  }

  /** The `node` label for a Redis master: bounded by MAX_NODE_LABELS (the cluster's size in practice). */
  nodeLabel(node: string): string {
    if (this.nodeLabels.has(node)) return node;
    if (this.nodeLabels.size >= MAX_NODE_LABELS) return 'other';
    this.nodeLabels.add(node);
    return node;
  }

  observeCall(node: string, seconds: number): void {
    let child = this.callChildren.get(node);
    if (child === undefined) {
      child = this.callDuration.labels(this.nodeLabel(node));
      this.callChildren.set(node, child);
    }
    child.observe(seconds);
  }
}
