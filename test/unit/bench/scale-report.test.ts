// The scale report's arithmetic on rows as run.ts fills them: CPU per decision
// from the measured window, the ratios to the peer and the targets.
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { Row } from '../../../bench/report.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { costChart, costTable, idleRedisMicros, matchedRedisMicros, matchedTable, redisMicros, scaleChecks, sidecarMicros, sizingTable, writeSizingFigures } from '../../../bench/scale-report.js';
import { GLOBAL_CAP_KEY, GLOBAL_CAP_PER_S, type ScaleShape } from '../../../bench/workload.js';

/** A measured HTTP row: `decisions` answered in 5 s, `redisCpuS` and `serverCpuS` spent meanwhile. */
function measured(kind: 'ours' | 'peer', store: Row['store'], shape: ScaleShape, decisions: number, redisCpuS: number, serverCpuS: number): Row {
  return {
    id: `${kind} ${store} ${shape}`, kind, api: 'http', store, shape,
    result: { generator: 'test', responses: decisions, rate: decisions / 5, p50Ms: 1, p99Ms: 2, errors: 0, statuses: { 200: decisions }, seconds: 5 },
    ...(kind === 'ours' ? { outcomes: new Map([['ok', decisions]]) } : {}),
    ...(store === 'memory' ? {} : { redisCpuS, redisIdleCpuPerS: 0.002 }),
    cpu: { server: 100, redis: 0, bench: 0, h2load: 0, other: 3, idle: 0, serverSeconds: serverCpuS },
  };
}

const rows: Row[] = [
  measured('ours', 'memory', 'hot', 200_000, 0, 5),
  measured('ours', 'redis', 'uniform', 100_000, 0.5, 5), // 5 µs Redis, 50 µs sidecar
  measured('peer', 'redis', 'uniform', 100_000, 1, 4), // 10 µs, 40 µs
  measured('ours', 'cluster', 'uniform', 100_000, 0.8, 5),
  measured('peer', 'cluster', 'uniform', 100_000, 1, 5),
  measured('ours', 'cluster', 'hot', 190_000, 0.076, 5), // 0.4 µs; 0.95× memory
  measured('peer', 'cluster', 'hot', 100_000, 0.7, 5),
];

t.test('Redis and sidecar CPU per decision come from the row\'s own window', async (t) => {
  t.equal(redisMicros(rows[1]), 5);
  t.equal(sidecarMicros(rows[2]), 40);
  t.ok(Number.isNaN(redisMicros(rows[0])), 'no Redis, no figure');
  t.equal(idleRedisMicros(rows[1]), 0.1, '2 ms/s idle over 5 s = 10 ms for 100,000 decisions');
  t.ok(Number.isNaN(redisMicros({ ...rows[1]!, error: 'server died' })), 'a failed row has no figure');
});

t.test('targets: ratios to the peer, the hot key against memory and its absolute Redis cost', async (t) => {
  const checks = new Map(scaleChecks(rows).map((c) => [c.name, c]));
  const find = (part: string, store: string): boolean | undefined =>
    [...checks.values()].find((c) => c.name.includes(part) && c.name.includes(store))?.pass;
  t.equal(find('≤ 0.6×', 'single'), true, '5 µs ≤ 0.6 × 10 µs');
  t.equal(find('≤ 0.6×', 'Cluster'), false, '8 µs > 0.6 × 10 µs');
  t.equal(find('≤ 0.25×', 'single'), undefined, 'no Zipf rows: N/A, not a pass');
  t.equal(find('0.95× our memory', 'Cluster'), true, '190k of 200k');
  t.equal(find('≤ 0.5 µs', 'Cluster'), true, '0.4 µs');
  t.equal(find('1.15× the peer\'s decisions/s, one hot key', ''), true, '1.9× the peer');
  t.equal(find('1.15× the peer\'s decisions/s, uniform', ''), false, '1.0× the peer');
});

t.test('the cost table has a line per workload and deployment measured, with decisions per Redis core', async (t) => {
  const table = costTable(rows);
  t.match(table, /uniform keys \(a random one of 100k\) \| single \| 20,000 \| 20,000 \| 1\.00× \| 5\.00 \| 10\.00 \| 0\.50× \| ≤ 0\.6× \| 0\.10, 0\.10 \| 200,000 \| 100,000 \| 50\.0 \| 40\.0 \| 1\.25× \| 3, 3 \|/);
  t.notMatch(table, /busy keys/, 'no Zipf rows measured');
  t.match(table, /hot key 40,000\/s/, 'the memory store reference');
});

t.test('at the matched rate: Redis CPU per decision of the paced run, its own check, none from a run with errors', async (t) => {
  const at = (row: Row, redisCpuS: number, errors = 0): Row => ({ ...row, matched: { askedRate: 6000, rate: 6000, answered: 30_000, errors, p50Ms: 1, p99Ms: 2.5, redisCpuS } });
  const matchedRows = [rows[0]!, at(rows[1]!, 0.09), at(rows[2]!, 0.3), at(rows[3]!, 0.3, 2), at(rows[4]!, 0.3)];
  t.equal(matchedRedisMicros(matchedRows[1]), 3, '0.09 s over 30,000 decisions');
  t.ok(Number.isNaN(matchedRedisMicros(matchedRows[3])), 'errors: no figure');
  t.ok(Number.isNaN(matchedRedisMicros(rows[1])), 'no matched run: no figure');
  const checks = scaleChecks(matchedRows).filter((c) => c.name.includes('both at 6,000/s') && c.name.includes('uniform'));
  t.same(checks.map((c) => [c.name.includes('single'), c.pass]), [[true, true], [false, undefined]], 'single: 3 µs ≤ 0.6 × 10 µs; Cluster: a run with errors is N/A');
  t.match(matchedTable(matchedRows), /uniform keys \(a random one of 100k\) \| single \| 3\.00 \| 10\.00 \| 0\.30× \| ≤ 0\.6× \| 6,000, 6,000 \|/);
  t.match(matchedTable(matchedRows), /\| 1\.00 \/ 2\.50, 1\.00 \/ 2\.50 \|/, 'p50 / p99 of both runs');
  t.equal(matchedTable(rows), '', 'no matched runs, no table');
});

t.test('the chart has the Redis and sidecar panels', async (t) => {
  const svg = costChart(rows, 'test run');
  t.match(svg, /Redis CPU per decision/);
  t.match(svg, /Sidecar CPU per decision/);
  t.match(svg, /test run/);
});

t.test('bench.yaml caps the hot key at the figure the peer uses', async (t) => {
  const yaml = readFileSync(new URL('../../../bench/bench.yaml', import.meta.url), 'utf8');
  const rule = new RegExp(`value: ${GLOBAL_CAP_KEY}\\n\\s+rate_limit: \\{ unit: second, requests_per_unit: (\\d+) \\}`).exec(yaml);
  t.equal(Number(rule?.[1]), GLOBAL_CAP_PER_S);
});

t.test('sizing figures: decisions per Redis core per workload, written between the markers only', async (t) => {
  const text = sizingTable(rows, 'run line');
  t.match(text, /uniform keys \(a random one of 100k\) \| single \| 5\.00 µs \| 200,000 \| 10\.00 µs \| 100,000 \| 50\.0 µs \|/);
  const dir = mkdtempSync(join(tmpdir(), 'sizing-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'sizing.md');
  writeFileSync(path, 'before\n<!-- sizing:figures -->\nold\n<!-- /sizing:figures -->\nafter\n');
  t.equal(writeSizingFigures(path, text), true);
  const doc = readFileSync(path, 'utf8');
  t.match(doc, /^before\n<!-- sizing:figures -->\nrun line\n/);
  t.match(doc, /\|\n<!-- \/sizing:figures -->\nafter\n$/);
  t.notMatch(doc, /old/);
  writeFileSync(path, 'no markers\n');
  t.equal(writeSizingFigures(path, text), false);
  t.equal(readFileSync(path, 'utf8'), 'no markers\n');
});
