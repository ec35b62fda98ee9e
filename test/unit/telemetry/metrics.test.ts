import t from 'tap';
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import type { Api, DecidedBy } from '../../../src/core/types.js';
import { Metrics, aggregateMetricsText, type MetricsSnapshot, type Outcome } from '../../../src/telemetry/metrics.js';

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

/** The text blocks of the decision metrics, in the order of NAMES (ours writes the histogram after the registry). */
function blocks(text: string): string {
  const all = text.split('\n\n').map((block) => block.trim());
  return NAMES.map((name) => all.filter((block) => block.includes(`# TYPE ${name} `)).join('\n\n')).join('\n\n');
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
    const shape = next(4);
    const seconds = shape === 0 ? 2 : shape === 1 ? BUCKETS[next(BUCKETS.length)]! : (next(100_000) + 1) / 100_000 * (next(2) === 0 ? 0.001 : 0.5);
    sink.decision(domain, apis[next(apis.length)]!, outcome, deciders[next(deciders.length)]!, seconds); // a bound itself falls in its bucket (le)
    if (outcome !== 'store_failure' && domain !== '_unknown') sink.rule(domain, `rule_${next(3)}`, outcome);
  }
}

t.test('/metrics shows the tallied decision metrics exactly as per-call prom-client would', async (t) => {
  const metrics = new Metrics({ processMetrics: false });
  const ours = { decision: metrics.countDecision.bind(metrics), rule: metrics.countRule.bind(metrics) };
  const expected = reference();
  t.equal(blocks(await metrics.localText()), blocks(await expected.registry.metrics()), 'before any decision: help and type only');
  workload(1, 500, ours);
  workload(1, 500, expected);
  t.equal(blocks(await metrics.localText()), blocks(await expected.registry.metrics()), 'first scrape');
  workload(2, 700, ours);
  workload(2, 700, expected);
  metrics.forgetDomainsExcept(new Set(['shop', 'api']));
  workload(3, 300, ours); // 'beta' comes back after being forgotten
  workload(3, 300, expected);
  const text = blocks(await metrics.localText());
  t.equal(text, blocks(await expected.registry.metrics()), 'after a reload that dropped a domain, and its return');
  t.match(text, /ratelimit_decisions_total\{domain="beta",api="[a-z_]+",outcome="ok",decided_by="(store|mirror|policy)"\} \d+/);
  t.match(text, /ratelimit_decision_duration_seconds_bucket\{le="\+Inf",api="http_check"\} \d+/);
  t.equal(blocks(await metrics.localText()), text, 'a scrape changes nothing');
});

t.test('--workers aggregation sums the snapshots of several processes as prom-client sums its own metrics', async (t) => {
  const workers = [new Metrics({ processMetrics: false }), new Metrics({ processMetrics: false })];
  const expected = [reference(), reference()];
  workload(4, 400, { decision: workers[0]!.countDecision.bind(workers[0]), rule: workers[0]!.countRule.bind(workers[0]) });
  workload(4, 400, expected[0]!);
  workload(5, 300, { decision: workers[1]!.countDecision.bind(workers[1]), rule: workers[1]!.countRule.bind(workers[1]) });
  workload(5, 300, expected[1]!);
  // What crosses the IPC channel: plain JSON.
  const snapshots = await Promise.all(workers.map(async (one) => JSON.parse(JSON.stringify(await one.snapshot())) as MetricsSnapshot));
  const json = await Promise.all(expected.map((one) => one.registry.getMetricsAsJSON()));
  const text = blocks(await aggregateMetricsText(snapshots));
  t.equal(text, blocks(await AggregatorRegistry.aggregate(json).metrics()));
  const count = (name: string): number => [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0);
  t.equal(count('ratelimit_decision_duration_seconds_count'), 700, 'every decision of both processes, once');
  t.equal(count('ratelimit_decisions_total'), 700);
});

t.test('one process: the aggregate of its own snapshot is its own text', async (t) => {
  const metrics = new Metrics({ processMetrics: false });
  workload(6, 200, { decision: metrics.countDecision.bind(metrics), rule: metrics.countRule.bind(metrics) });
  t.equal(blocks(await aggregateMetricsText([await metrics.snapshot()])), blocks(await metrics.localText()));
});
