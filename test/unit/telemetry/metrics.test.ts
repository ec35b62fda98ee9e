import t from 'tap';
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import type { Api, DecidedBy } from '../../../src/core/types.js';
import { Metrics, type Outcome } from '../../../src/telemetry/metrics.js';

// The decision metrics are tallied in plain numbers and handed to prom-client
// at scrape time. What /metrics says must be exactly what prom-client's own
// per-call counters and histogram would say for the same calls.

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const NAMES = ['ratelimit_decisions_total', 'ratelimit_rule_decisions_total', 'ratelimit_decision_duration_seconds'];

/** prom-client used per call, as the metrics were before tallying. */
function reference(): { registry: Registry; decision(d: string, a: Api, o: Outcome, by: DecidedBy, s: number): void; rule(d: string, r: string, o: Exclude<Outcome, 'store_failure'>): void } {
  const registry = new Registry();
  const decisions = new Counter({ name: NAMES[0]!, help: 'Rate-limit decisions by domain, API, outcome and who decided (store, mirror: denied from what Redis last reported, policy: the store-failure policy).', labelNames: ['domain', 'api', 'outcome', 'decided_by'], registers: [registry] });
  const rules = new Counter({ name: NAMES[1]!, help: 'Descriptor decisions by matched config rule (labels from config, never request values).', labelNames: ['domain', 'rule', 'outcome'], registers: [registry] });
  const duration = new Histogram({ name: NAMES[2]!, help: 'Time to decide one request, store call included.', labelNames: ['api'], buckets: BUCKETS, registers: [registry] });
  return {
    registry,
    decision: (domain, api, outcome, decidedBy, seconds) => {
      decisions.labels(domain, api, outcome, decidedBy).inc();
      duration.labels(api).observe(seconds);
    },
    rule: (domain, rule, outcome) => rules.labels(domain, rule, outcome).inc(),
  };
}

/** The text blocks of the decision metrics, in registry order. */
function blocks(text: string): string {
  return text.split('\n\n').map((block) => block.trim()).filter((block) => NAMES.some((name) => block.includes(`# TYPE ${name} `))).join('\n\n');
}

/** A deterministic mix of calls: domains, APIs, outcomes, rules and durations across every bucket. */
function workload(seed: number, count: number, sink: { decision: ReturnType<typeof reference>['decision']; rule: ReturnType<typeof reference>['rule'] }): void {
  let x = seed;
  const next = (n: number): number => {
    x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
    return x % n;
  };
  const domains = ['shop', 'api', '_unknown', 'beta'];
  const apis: Api[] = ['http_check', 'grpc_rls', 'http_auth', 'grpc_authz', 'http_auth_nginx'];
  const outcomes: Outcome[] = ['ok', 'over_limit', 'shadow_over_limit', 'store_failure'];
  const deciders: DecidedBy[] = ['store', 'mirror', 'policy'];
  for (let i = 0; i < count; i++) {
    const domain = domains[next(domains.length)]!;
    const outcome = outcomes[next(outcomes.length)]!;
    sink.decision(domain, apis[next(apis.length)]!, outcome, deciders[next(deciders.length)]!, next(3) === 0 ? 2 : (next(100_000) + 1) / 100_000 * (next(2) === 0 ? 0.001 : 0.5));
    if (outcome !== 'store_failure' && domain !== '_unknown') sink.rule(domain, `rule_${next(3)}`, outcome);
  }
}

t.test('/metrics shows the tallied decision metrics exactly as per-call prom-client would', async (t) => {
  const metrics = new Metrics({ processMetrics: false });
  const ours = { decision: metrics.countDecision.bind(metrics), rule: metrics.countRule.bind(metrics) };
  const expected = reference();
  t.equal(blocks(await metrics.registry.metrics()), blocks(await expected.registry.metrics()), 'before any decision: help and type only');
  workload(1, 500, ours);
  workload(1, 500, expected);
  t.equal(blocks(await metrics.registry.metrics()), blocks(await expected.registry.metrics()), 'first scrape');
  workload(2, 700, ours);
  workload(2, 700, expected);
  metrics.forgetDomainsExcept(new Set(['shop', 'api']));
  workload(3, 300, ours); // 'beta' comes back after being forgotten
  workload(3, 300, expected);
  const text = blocks(await metrics.registry.metrics());
  t.equal(text, blocks(await expected.registry.metrics()), 'after a reload that dropped a domain, and its return');
  t.match(text, /ratelimit_decisions_total\{domain="beta",api="[a-z_]+",outcome="ok",decided_by="(store|mirror|policy)"\} \d+/);
  t.match(text, /ratelimit_decision_duration_seconds_bucket\{le="\+Inf",api="http_check"\} \d+/);
  t.equal(blocks(await metrics.registry.metrics()), text, 'a scrape changes nothing');
});

t.test('--workers aggregation (getMetricsAsJSON) sees the same values as per-call prom-client', async (t) => {
  const metrics = new Metrics({ processMetrics: false });
  const expected = reference();
  workload(4, 400, { decision: metrics.countDecision.bind(metrics), rule: metrics.countRule.bind(metrics) });
  workload(4, 400, expected);
  const aggregated = async (registry: Registry): Promise<string> => {
    const json = (await registry.getMetricsAsJSON()).filter((metric) => NAMES.includes(metric.name));
    return blocks(await AggregatorRegistry.aggregate([json, json]).metrics());
  };
  t.equal(await aggregated(metrics.registry), await aggregated(expected.registry));
});
