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
  readonly fallbackActive = new Gauge({
    name: 'ratelimit_store_fallback_active',
    help: '1 while decisions are made by the store-failure policy instead of the store.',
    aggregator: 'max', // --workers: any worker in fallback
    registers: [this.registry],
  });
  readonly configReloads = new Counter({
    name: 'ratelimit_config_reloads_total',
    help: 'Config reloads by result.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly tlsReloads = new Counter({
    name: 'ratelimit_tls_reloads_total',
    help: 'Certificate rotations of the listeners (--tls-cert/--tls-key/--tls-client-ca changed) by result.',
    labelNames: ['result'] as const,
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
    this.fallbackActive.set(0);
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
