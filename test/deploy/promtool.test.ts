// deploy/prometheus: rules and scrape config are valid, and the alert unit tests pass.
import t from 'tap';
import { run, toolAvailability } from './helpers.js';

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
}
