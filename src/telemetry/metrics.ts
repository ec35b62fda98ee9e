import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { DecidedBy } from '../core/types.js';
import type { Api } from '../core/types.js';
import { BudgetMetrics } from './budget-metrics.js';
import { CounterTally } from './counter-tally.js';
import { RedisStoreMetrics } from './redis-metrics.js';
import { TalliedHistogram, histogramText, mergeHistogramSnapshots, type HistogramSeries, type HistogramSnapshot } from './tallied-histogram.js';

export type Outcome = 'ok' | 'over_limit' | 'shadow_over_limit' | 'store_failure';
type RuleOutcome = Exclude<Outcome, 'store_failure'>;

const APIS: readonly Api[] = ['http_check', 'http_auth', 'http_auth_nginx', 'grpc_rls', 'grpc_authz', 'http_report'];
const OUTCOMES: readonly Outcome[] = ['ok', 'over_limit', 'shadow_over_limit', 'store_failure'];

const DECIDERS: readonly DecidedBy[] = ['store', 'mirror', 'lease', 'policy'];

function deciderIndex(decidedBy: DecidedBy): number {
  switch (decidedBy) {
    case 'store': return 0;
    case 'mirror': return 1;
    case 'lease': return 2;
    case 'policy': return 3;
  }
}

function apiIndex(api: Api): number {
  switch (api) {
    case 'http_check': return 0;
    case 'http_auth': return 1;
    case 'http_auth_nginx': return 2;
    case 'grpc_rls': return 3;
    case 'grpc_authz': return 4;
    case 'http_report': return 5;
  }
}

function outcomeIndex(outcome: Outcome): number {
  switch (outcome) {
    case 'ok': return 0;
    case 'over_limit': return 1;
    case 'shadow_over_limit': return 2;
    case 'store_failure': return 3;
  }
}

/** One process's metrics in plain JSON (they cross the --workers IPC channel). */
export interface MetricsSnapshot {
  /** prom-client's `getMetricsAsJSON`, which `AggregatorRegistry.aggregate` adds up. */
  readonly registry: readonly object[];
  readonly decisionDuration: HistogramSnapshot;
}

/**
 * The /metrics text of several processes as one server (--workers):
 * prom-client's metrics aggregated by `AggregatorRegistry.aggregate`
 * (counters summed, gauges by their `aggregator`), the decision durations
 * summed series by series.
 */
export async function aggregateMetricsText(snapshots: readonly MetricsSnapshot[]): Promise<string> {
  const registryText = await AggregatorRegistry.aggregate(snapshots.map((one) => [...one.registry])).metrics();
  const durations = mergeHistogramSnapshots(snapshots.map((one) => one.decisionDuration));
  return durations === undefined ? registryText : `${registryText}\n${histogramText(durations)}\n`;
}

/** Label used for any domain that is not loaded, so request values never become labels. */
export const UNKNOWN_DOMAIN_LABEL = '_unknown';

// Decision latency is sub-millisecond normally; the upper buckets catch Redis trouble.
const DURATION_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** prom-client's default gauges with a counter's `_total` suffix. */
const LINT_FAILING_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Every metric of docs/metrics.md, in one registry per server. Labels come from config only (docs/design.md). */
export class Metrics {
  readonly registry = new Registry();
  readonly decisions: Counter<'domain' | 'api' | 'outcome' | 'decided_by'> = new Counter({
    name: 'ratelimit_decisions_total',
    help: 'Rate-limit decisions by domain, API, outcome and who decided (store, mirror: denied from what Redis last reported, policy: the store-failure policy).',
    labelNames: ['domain', 'api', 'outcome', 'decided_by'] as const,
    registers: [this.registry],
    collect: (): void => this.decisionTally.flush(),
  });
  readonly ruleDecisions: Counter<'domain' | 'rule' | 'outcome'> = new Counter({
    name: 'ratelimit_rule_decisions_total',
    help: 'Descriptor decisions by matched config rule (labels from config, never request values).',
    labelNames: ['domain', 'rule', 'outcome'] as const,
    registers: [this.registry],
    collect: (): void => this.ruleTally.flush(),
  });
  /** Not in `registry`: written after it by `localText` (see tallied-histogram.ts). */
  private readonly decisionDuration = new TalliedHistogram({
    name: 'ratelimit_decision_duration_seconds',
    help: 'Time to decide one request, store call included.',
    labelName: 'api',
    buckets: DURATION_BUCKETS_S,
  });
  private readonly durationByApi: readonly HistogramSeries[] = APIS.map((api) => this.decisionDuration.series(api));
  readonly storeErrors = new Counter({
    name: 'ratelimit_store_errors_total',
    help: 'Redis script calls that failed (an error reply, a closed connection) or missed their deadline (--redis-timeout-ms); nothing is called on a master whose circuit breaker is open.',
    registers: [this.registry],
  });
  readonly storeFailureDecisions = new Counter({
    name: 'ratelimit_store_failure_decisions_total',
    help: 'Decisions the store-failure policy took part in: a Redis master failed, timed out or had its circuit breaker open.',
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
  /** The Redis store's own metrics (telemetry/redis-metrics.ts). */
  readonly redis = new RedisStoreMetrics(this.registry);
  readonly budgets = new BudgetMetrics(this.registry);
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
  /**
   * 1 while the config files on disk are the config in force; 0 after a
   * reload they failed (the old config stays, but a restart would refuse the
   * files). As Prometheus's own prometheus_config_last_reload_successful.
   */
  readonly configLastReloadSuccessful = new Gauge({
    name: 'ratelimit_config_last_reload_successful',
    help: '1 when the last config load or reload succeeded; 0 when the files changed into a config that failed validation (the previous one stays in force; a restart would exit 2).',
    aggregator: 'min', // --workers: any worker that refused the files
    registers: [this.registry],
  });
  readonly tlsLastReloadSuccessful = new Gauge({
    name: 'ratelimit_tls_last_reload_successful',
    help: '1 when the TLS files in use are the ones on disk (or TLS is off); 0 when they changed into files that are not usable (the previous certificate stays in use; a restart would exit 2).',
    aggregator: 'min',
    registers: [this.registry],
  });

  /** The /metrics text; with --workers, the primary's aggregate of every worker (workers.ts). */
  text: () => Promise<string> = () => this.localText();

  /** This process's metrics as Prometheus text. */
  async localText(): Promise<string> {
    return `${await this.registry.metrics()}\n${histogramText(this.decisionDuration.snapshot())}\n`;
  }

  /** This process's metrics as plain JSON, for the --workers primary to add up (`aggregateMetricsText`). */
  async snapshot(): Promise<MetricsSnapshot> {
    return { registry: await this.registry.getMetricsAsJSON(), decisionDuration: this.decisionDuration.snapshot() };
  }

  // Per-decision counts in plain numbers (see CounterTally): per domain label,
  // one count per api × outcome × decider; per domain and rule, one per rule outcome.
  private readonly decisionCounts = new Map<string, Float64Array>();
  private readonly decisionTally: CounterTally<{ domain: string; api: Api; outcome: Outcome; decided_by: DecidedBy }> = new CounterTally(this.decisions);
  private readonly ruleCounts = new Map<string, Map<string, Float64Array>>();
  private readonly ruleTally: CounterTally<{ domain: string; rule: string; outcome: RuleOutcome }> = new CounterTally(this.ruleDecisions);

  constructor(options: { processMetrics: boolean } = { processMetrics: true }) {
    if (options.processMetrics) {
      collectDefaultMetrics({ register: this.registry });
      // Gauges named like counters fail Prometheus's lint (`promtool check metrics`);
      // each is the sum over `type` of its gauge without the suffix, which stays.
      for (const name of LINT_FAILING_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
    }
    this.configReloads.inc({ result: 'success' }, 0);
    this.configReloads.inc({ result: 'failure' }, 0);
    this.tlsReloads.inc({ result: 'success' }, 0);
    this.tlsReloads.inc({ result: 'failure' }, 0);
    this.storeErrors.inc(0);
    this.storeFailureDecisions.inc(0);
    for (const counter of [this.leaseStranded, this.staticShareDecisions]) counter.inc(0);
  }

  /** Makes ratelimit_store_fallback_active follow `active` (read at each scrape). */
  watchFallback(active: () => boolean): void {
    this.fallbackProbe = active;
  }

  /** Counts one decision: a few plain additions (label sets are built once per series, prom-client is fed at scrape). */
  countDecision(domain: string, api: Api, outcome: Outcome, decidedBy: DecidedBy, seconds: number): void {
    let counts = this.decisionCounts.get(domain);
    if (counts === undefined) {
      counts = new Float64Array(APIS.length * OUTCOMES.length * DECIDERS.length).fill(-1);
      this.decisionCounts.set(domain, counts);
    }
    const index = (apiIndex(api) * OUTCOMES.length + outcomeIndex(outcome)) * DECIDERS.length + deciderIndex(decidedBy);
    if (counts[index] === -1) {
      counts[index] = 0;
      this.decisionTally.add({ domain, api, outcome, decided_by: decidedBy }, counts, index);
    }
    counts[index]!++;
    this.durationByApi[apiIndex(api)]!.observe(seconds);
  }

  /** Counts one descriptor decision of a configured rule (labels from config only). */
  countRule(domain: string, rule: string, outcome: RuleOutcome): void {
    let rules = this.ruleCounts.get(domain);
    if (rules === undefined) {
      rules = new Map();
      this.ruleCounts.set(domain, rules);
    }
    let counts = rules.get(rule);
    if (counts === undefined) {
      counts = new Float64Array(3).fill(-1);
      rules.set(rule, counts);
    }
    const index = outcomeIndex(outcome);
    if (counts[index] === -1) {
      counts[index] = 0;
      this.ruleTally.add({ domain, rule, outcome }, counts, index);
    }
    counts[index]!++;
  }

  /** Forgets the counts of domains no longer loaded (after a reload), once what they counted is in prom-client. */
  forgetDomainsExcept(domains: ReadonlySet<string>): void {
    const kept = (domain: string): boolean => domain === UNKNOWN_DOMAIN_LABEL || domains.has(domain);
    this.decisionTally.retain((labels) => kept(labels.domain));
    this.ruleTally.retain((labels) => kept(labels.domain));
    for (const domain of [...this.decisionCounts.keys()]) if (!kept(domain)) this.decisionCounts.delete(domain);
    for (const domain of [...this.ruleCounts.keys()]) if (!kept(domain)) this.ruleCounts.delete(domain);
  }
}
