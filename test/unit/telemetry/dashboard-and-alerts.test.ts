// What operators are given to watch the server with (deploy/grafana's
// dashboard, deploy/prometheus's alert rules) queries only metrics the server
// exports and docs/metrics.md documents: a renamed metric would otherwise
// leave an empty panel or an alert that never fires, and no test would say.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { Metrics } from '../../../src/telemetry/metrics.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

/** Every metric the server exports (`# TYPE` lines of /metrics), process metrics included. */
async function exported(): Promise<Set<string>> {
  const text = await new Metrics({ processMetrics: true }).localText();
  return new Set([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((match) => match[1]!));
}

/** The metric a series name belongs to: a histogram's _bucket/_sum/_count series are its own. */
function metricOf(series: string, names: ReadonlySet<string>): string {
  const base = series.replace(/_(bucket|sum|count)$/, '');
  return names.has(series) || !names.has(base) ? series : base;
}

function queried(text: string): string[] {
  return [...new Set([...text.matchAll(/\b(?:ratelimit|nodejs|process)_[a-z0-9_]+/g)].map((match) => match[0]))];
}

t.test('every metric the Grafana dashboard and the alert rules query is exported and documented', async (t) => {
  const names = await exported();
  const documented = read('docs/metrics.md');
  const dashboard = JSON.parse(read('deploy/grafana/dashboard.json')) as { panels: { title: string; targets?: { expr: string }[] }[] };
  const sources = [
    ...dashboard.panels.map((panel) => ({ where: `dashboard panel "${panel.title}"`, text: (panel.targets ?? []).map((target) => target.expr).join('\n') })),
    { where: 'deploy/prometheus/alerts.yaml', text: read('deploy/prometheus/alerts.yaml') },
  ];
  let checked = 0;
  for (const { where, text } of sources) {
    for (const series of queried(text)) {
      const metric = metricOf(series, names);
      t.ok(names.has(metric), `${where}: ${series} is exported`);
      if (metric.startsWith('ratelimit_')) t.ok(documented.includes(`\`${metric}\``), `${where}: ${metric} is in docs/metrics.md`);
      checked++;
    }
  }
  t.ok(checked >= 20, `${checked} queried series checked`);
});
