// deploy/prometheus: rules and scrape config are valid, and the alert unit
// tests pass; a running server's whole /metrics passes Prometheus's lint.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { get, makeTempDir, missingServerBuild, run, startRateLimitServer, toolAvailability } from './helpers.js';

const promtool = toolAvailability('promtool');

if (!promtool.ok && !promtool.fail) {
  t.test(`promtool checks: ${promtool.reason}`, { skip: true }, async () => {});
} else {
  const checks: Array<[string, string[]]> = [
    ['the alert rules are valid', ['check', 'rules', 'deploy/prometheus/alerts.yaml']],
    ['the compose scrape config (with its rule file) is valid', ['check', 'config', 'deploy/prometheus/prometheus.yaml']],
    ['the alert unit tests pass (rejection ratio, p99 latency, fallback, reload failure)', ['test', 'rules', 'deploy/prometheus/alerts.test.yaml']],
  ];
  for (const [name, args] of checks) {
    t.test(name, async (t) => {
      if (!promtool.ok) {
        t.fail(promtool.reason);
        return;
      }
      const result = run(promtool.path, args);
      t.equal(result.status, 0, `promtool ${args.join(' ')}\n${result.stdout}${result.stderr}`);
    });
  }

  t.test('a running server\'s whole /metrics passes promtool check metrics (process metrics included)', async (t) => {
    if (!promtool.ok) return void t.fail(promtool.reason);
    const missingBuild = missingServerBuild();
    if (missingBuild !== undefined) return void t.fail(missingBuild);
    const dir = makeTempDir('rl-promtool-');
    t.teardown(dir.remove);
    const server = await startRateLimitServer(dir.path,
      'domain: lint\ndescriptors:\n  - key: api_key\n    rate_limit: { unit: second, requests_per_unit: 1 }\n');
    t.teardown(() => server.stop());
    // A decision of each outcome, so the labelled series exist too.
    for (let i = 0; i < 2; i++) {
      await fetch(`${server.base}/v1/check`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ descriptors: [{ entries: [{ key: 'api_key', value: 'k' }] }] }),
        signal: AbortSignal.timeout(5_000),
      });
    }
    const response = await get(`${server.base}/metrics`);
    t.equal(response.status, 200);
    const exposition = await response.text();
    t.match(exposition, /ratelimit_decisions_total\{[^}]*outcome="over_limit"/, 'the scrape holds labelled decisions');
    t.match(exposition, /^nodejs_active_handles\{/m, 'Node process metrics are there');
    const lint = spawnSync(promtool.path, ['check', 'metrics'], { input: exposition, encoding: 'utf8', timeout: 60_000 });
    t.equal(lint.status, 0, `promtool check metrics:\n${lint.stdout}${lint.stderr}`);
  });
}
