import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DecidedBy } from '../core/types.js';
import type { Api } from '../core/types.js';
import { BudgetMetrics } from './budget-metrics.js';
import { CounterTally } from './counter-tally.js';
import { RedisStoreMetrics } from './redis-metrics.js';

export type Outcome = 'ok' | 'over_limit' | 'shadow_over_limit' | 'store_failure';
type RuleOutcome = Exclude<Outcome, 'store_failure'>;

const APIS: readonly Api[] = ['http_check', 'http_auth', 'http_auth_nginx', 'grpc_rls', 'grpc_authz', 'http_report'];
const OUTCOMES: readonly Outcome[] = ['ok', 'over_limit', 'shadow_over_limit', 'store_failure'];

const DECIDERS: readonly DecidedBy[] = ['store', 'mirror', 'policy'];

function deciderIndex(decidedBy: DecidedBy): number {
  switch (decidedBy) {
    case 'store': return 0;
    case 'mirror': return 1;
    case 'policy': return 2;
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

/** A histogram series: per-bucket (not cumulative) counts, sum and count, in plain numbers. */
interface HistogramSeries {
  readonly labels: { api: Api };
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

interface ExportedValue {
  value: number;
  metricName: string;
  exemplar?: null;
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string | number>;
}

/**
 * `ratelimit_decision_duration_seconds`: a prom-client Histogram (name,
 * help, buckets, registration as usual) whose values are kept here in plain
 * numbers, observed without label hashing, and exported in the very shape
 * prom-client 15's Histogram gives the registry (`getForPromString` for the
 * text, `get` for --workers aggregation). Series appear in the order they were
 * first observed. test/telemetry/metrics.test.ts compares the text with
 * prom-client's own Histogram fed the same values.
 */
class DecisionDurationHistogram extends Histogram<'api'> {
  private readonly bounds: readonly number[];
  private readonly byApi: (HistogramSeries | undefined)[] = new Array(APIS.length).fill(undefined);
  private readonly seriesInOrder: HistogramSeries[] = [];
  private readonly metricName: string;

  constructor(config: { name: string; help: string; buckets: number[]; registers: Registry[] }) {
    super({ ...config, labelNames: ['api'] });
    this.bounds = Object.freeze([...config.buckets]);
    this.metricName = config.name;
  }

  observeApi(api: Api, seconds: number): void {
    const i = apiIndex(api);
    let series = this.byApi[i];
    if (series === undefined) {
      series = { labels: Object.freeze({ api }), buckets: new Float64Array(this.bounds.length), sum: 0, count: 0 };
      this.byApi[i] = series;
      this.seriesInOrder.push(series);
    }
    const { bounds } = this;
    for (let b = 0; b < bounds.length; b++) {
      if (seconds <= bounds[b]!) {
        series.buckets[b]!++;
        break;
      }
    }
    series.sum += seconds;
    series.count++;
  }

  /** prom-client's Histogram#getForPromString shape: `le` in labels, the series' labels shared. */
  async getForPromString(): Promise<{ name: string; help: string; type: 'histogram'; values: ExportedValue[]; aggregator: string }> {
    const values: ExportedValue[] = [];
    const bucketName = `${this.metricName}_bucket`;
    for (const series of this.seriesInOrder) {
      let cumulative = 0;
      for (let b = 0; b < this.bounds.length; b++) {
        cumulative += series.buckets[b]!;
        values.push({ labels: { le: this.bounds[b]! }, sharedLabels: series.labels, value: cumulative, metricName: bucketName, exemplar: null });
      }
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: series.labels, value: series.count, metricName: bucketName, exemplar: null },
        { labels: {}, sharedLabels: series.labels, value: series.sum, metricName: `${this.metricName}_sum` },
        { labels: {}, sharedLabels: series.labels, value: series.count, metricName: `${this.metricName}_count` },
      );
    }
    const { help, aggregator } = this as unknown as { help: string; aggregator: string };
    return { name: this.metricName, help, type: 'histogram', values, aggregator };
  }

  /** prom-client's Histogram#get shape (labels splayed), which AggregatorRegistry reads under --workers. */
  override async get(): ReturnType<Histogram<'api'>['get']> {
    const data = await this.getForPromString();
    const values = data.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } }));
    return { ...data, values } as unknown as Awaited<ReturnType<Histogram<'api'>['get']>>;
  }

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
  readonly decisionDuration = new DecisionDurationHistogram({
    name: 'ratelimit_decision_duration_seconds',
    help: 'Time to decide one request, store call included.',
    buckets: DURATION_BUCKETS_S,
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: 'ratelimit_store_errors_total',
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

  /** The /metrics text; with --workers, the primary's aggregate of every worker. */
  text: () => Promise<string> = () => this.registry.metrics();

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
    this.decisionDuration.observeApi(api, seconds);
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
