import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Api } from '../service.js';

export type Outcome = 'ok' | 'over_limit' | 'shadow_over_limit' | 'store_failure';

/** The metric child for a label set, created once (keys start with the domain, see forgetDomainsExcept). */
function cachedChild<K, C>(children: Map<K, C>, key: K, create: () => C): C {
  let child = children.get(key);
  if (child === undefined) {
    child = create();
    children.set(key, child);
  }
  return child;
}

/** Label used for any domain that is not loaded, so request values never become labels. */
export const UNKNOWN_DOMAIN_LABEL = '_unknown';

// Decision latency is sub-millisecond normally; the upper buckets catch Redis trouble.
const DURATION_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
/** Most nodes that get their own `node` label; more (a huge cluster, or churn) share "other". */
const MAX_NODE_LABELS = 64;
const REDIS_CALL_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/** Every metric of SPEC §7, in one registry per server. Labels come from config only. */
export class Metrics {
  readonly registry = new Registry();
  readonly decisions = new Counter({
    name: 'ratelimit_decisions_total',
    help: 'Rate-limit decisions by domain, API and outcome.',
    labelNames: ['domain', 'api', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly ruleDecisions = new Counter({
    name: 'ratelimit_rule_decisions_total',
    help: 'Descriptor decisions by matched config rule (labels from config, never request values).',
    labelNames: ['domain', 'rule', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly decisionDuration = new Histogram({
    name: 'ratelimit_decision_duration_seconds',
    help: 'Time to decide one request, store call included.',
    labelNames: ['api'] as const,
    buckets: DURATION_BUCKETS_S,
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: 'ratelimit_store_errors_total',
    help: 'Failed store calls (timeouts, connection errors, open circuit).',
    registers: [this.registry],
  });
  /** Read at scrape time from `watchFallback`: the store is not fully usable. */
  private fallbackProbe: () => boolean = () => false;
  readonly fallbackActive: Gauge = new Gauge({
    name: 'ratelimit_store_fallback_active',
    help: '1 while the store is not fully usable: the store-failure policy decides some or all decisions.',
    aggregator: 'max', // --workers: any worker in fallback
    registers: [this.registry],
    collect: () => {
      this.fallbackActive.set(this.fallbackProbe() ? 1 : 0);
    },
  });
  readonly configReloads = new Counter({
    name: 'ratelimit_config_reloads_total',
    help: 'Config reloads by result.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly redisCallDuration = new Histogram({
    name: 'ratelimit_redis_call_duration_seconds',
    help: 'Time from writing one script call to reading its reply, by Redis master (calls coalesce many decisions).',
    labelNames: ['node'] as const,
    buckets: REDIS_CALL_BUCKETS_S,
    registers: [this.registry],
  });
  readonly redisNodeUnavailable = new Gauge({
    name: 'ratelimit_redis_node_unavailable',
    help: '1 while a Redis master\'s circuit breaker is open or probing: its keys are decided by the failure policy.',
    labelNames: ['node'] as const,
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly redisDeadlineExtensions = new Counter({
    name: 'ratelimit_redis_deadline_extensions_total',
    help: 'Redis call deadlines extended because this process\'s event loop lagged (not counted against Redis).',
    registers: [this.registry],
  });
  readonly redisTimeouts = new Counter({
    name: 'ratelimit_redis_timeouts_total',
    help: 'Script calls Redis did not answer within --redis-timeout-ms (counted from the write, event-loop lag excluded).',
    registers: [this.registry],
  });
  readonly redisLateReplies = new Counter({
    name: 'ratelimit_redis_late_replies_total',
    help: 'Replies that arrived after their call\'s deadline; they still update the local state.',
    registers: [this.registry],
  });
  readonly fallbackOverAdmitted = new Counter({
    name: 'ratelimit_fallback_overadmitted_total',
    help: 'Requests the local failure policy admitted that Redis, answering late, had denied.',
    registers: [this.registry],
  });
  readonly localDenials = new Counter({
    name: 'ratelimit_local_denials_total',
    help: 'Requests denied from the last state Redis reported, without a Redis call.',
    registers: [this.registry],
  });
  readonly sidecarsSeen = new Gauge({
    name: 'ratelimit_sidecars_seen',
    help: 'Sidecars whose heartbeats this one sees in Redis (the local fallback divisor with --fallback-divisor auto).',
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly tlsReloads = new Counter({
    name: 'ratelimit_tls_reloads_total',
    help: 'Certificate rotations of the listeners (--tls-cert/--tls-key/--tls-client-ca changed) by result.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly leaseRequested = new Counter({
    name: 'ratelimit_lease_requested_tokens_total',
    help: 'Tokens of global limits this sidecar asked of their home regions.',
    labelNames: ['home'] as const,
    registers: [this.registry],
  });
  readonly leaseGranted = new Counter({
    name: 'ratelimit_lease_granted_tokens_total',
    help: 'Tokens of global limits their home regions granted to this region through this sidecar.',
    labelNames: ['home'] as const,
    registers: [this.registry],
  });
  readonly leaseStranded = new Counter({
    name: 'ratelimit_lease_stranded_tokens_total',
    help: 'Granted tokens whose deposit in this region failed: lost to the budget (under-admission), never granted twice.',
    registers: [this.registry],
  });
  readonly regionUnreachable = new Gauge({
    name: 'ratelimit_region_unreachable',
    help: '1 while another region\'s Redis does not answer lease requests: its keys decide from leases, then static shares.',
    labelNames: ['region'] as const,
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly staticShareDecisions = new Counter({
    name: 'ratelimit_static_share_decisions_total',
    help: 'Decisions on a global limit made from the region\'s static share (its home unreachable, its lease spent).',
    registers: [this.registry],
  });
  readonly configDomains = new Gauge({
    name: 'ratelimit_config_domains',
    help: 'Domains in the config in force.',
    aggregator: 'max',
    registers: [this.registry],
  });

  /** The /metrics text; with --workers, the primary's aggregate of every worker. */
  text: () => Promise<string> = () => this.registry.metrics();

  private readonly decisionChildren = new Map<string, Counter.Internal>();
  private readonly durationChildren = new Map<Api, Histogram.Internal<'api'>>();
  private readonly ruleChildren = new Map<string, Counter.Internal>();

  constructor(options: { processMetrics: boolean } = { processMetrics: true }) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
    this.configReloads.inc({ result: 'success' }, 0);
    this.configReloads.inc({ result: 'failure' }, 0);
    this.tlsReloads.inc({ result: 'success' }, 0);
    this.tlsReloads.inc({ result: 'failure' }, 0);
    this.storeErrors.inc(0);
    for (const counter of [this.leaseStranded, this.staticShareDecisions, this.redisDeadlineExtensions, this.redisTimeouts, this.redisLateReplies, this.fallbackOverAdmitted, this.localDenials]) counter.inc(0);
  }

  /** Makes ratelimit_store_fallback_active follow `active` (read at each scrape). */
  watchFallback(active: () => boolean): void {
    this.fallbackProbe = active;
  }

  private readonly nodeLabels = new Set<string>();
  private readonly callChildren = new Map<string, Histogram.Internal<'node'>>();

  /** The `node` label for a Redis master: bounded by MAX_NODE_LABELS (the cluster's size in practice). */
  nodeLabel(node: string): string {
    if (this.nodeLabels.has(node)) return node;
    if (this.nodeLabels.size >= MAX_NODE_LABELS) return 'other';
    this.nodeLabels.add(node);
    return node;
  }

  observeRedisCall(node: string, seconds: number): void {
    cachedChild(this.callChildren, node, () => this.redisCallDuration.labels(this.nodeLabel(node))).observe(seconds);
  }

  /** Counts one decision; label children are cached so the hot path does no label hashing. */
  countDecision(domain: string, api: Api, outcome: Outcome, seconds: number): void {
    cachedChild(this.decisionChildren, `${domain}\u0000${api}\u0000${outcome}`, () => this.decisions.labels(domain, api, outcome)).inc();
    cachedChild(this.durationChildren, api, () => this.decisionDuration.labels(api)).observe(seconds);
  }

  /** Counts one descriptor decision of a configured rule (labels from config only). */
  countRule(domain: string, rule: string, outcome: Exclude<Outcome, 'store_failure'>): void {
    cachedChild(this.ruleChildren, `${domain}\u0000${rule}\u0000${outcome}`, () => this.ruleDecisions.labels(domain, rule, outcome)).inc();
  }

  /** Forgets cached children of domains no longer loaded (after a reload). */
  forgetDomainsExcept(domains: ReadonlySet<string>): void {
    for (const children of [this.decisionChildren, this.ruleChildren]) {
      for (const key of children.keys()) {
        const domain = key.slice(0, key.indexOf('\u0000'));
        if (domain !== UNKNOWN_DOMAIN_LABEL && !domains.has(domain)) children.delete(key);
      }
    }
  }
}
