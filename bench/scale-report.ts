// The scale workloads' report (issue 18): what a decision costs Redis and the
// sidecar, ours beside the rate-limiter-flexible peer in the same run, the
// targets, and the chart. Rows come from run.ts; the arithmetic is cost.ts.
import { readFileSync, writeFileSync } from 'node:fs';
import { barChartSvg, type ChartGroup } from './chart.js';
import { decisionsPerCoreSecond, microsPerDecision } from './cost.js';
import { MATCHED_RATE, decisionsFor, goodRate, rateCheck, type Row, type Store, type TargetCheck } from './report.js';
import { STORE_ERRORS } from './server-metrics.js';
import { SCALE_SHAPES, type ScaleShape } from './workload.js';

export const SCALE_LABEL: Record<ScaleShape, string> = {
  uniform: 'uniform',
  zipf: 'zipf',
  hot: 'hot key',
};

const WORKLOAD_TEXT: Record<ScaleShape, string> = {
  uniform: 'uniform keys (a random one of 100k)',
  zipf: 'busy keys (Zipf s = 1.1 over 100k)',
  hot: 'one hot key far under its limit (a global cap)',
};

const REDIS_STORES = ['redis', 'cluster'] as const;
const STORE_TEXT: Record<(typeof REDIS_STORES)[number], string> = { redis: 'single', cluster: 'Cluster (3 masters)' };

/** Redis CPU per decision ≤ this × the peer's. */
const REDIS_CPU_VS_PEER: Partial<Record<ScaleShape, number>> = { uniform: 0.6, zipf: 0.25 };
/** The hot key on the Cluster: at most this much Redis CPU per decision (≥ 2M decisions/s per Redis core). */
const HOT_REDIS_MICROS = 0.5;
/** The hot key on the Cluster: at least this share of our memory store's decisions/s on the same workload. */
const HOT_VS_MEMORY = 0.95;
/** Decisions/s against the peer on the Cluster. */
const CLUSTER_VS_PEER = 1.15;

export function redisMicros(row: Row | undefined): number {
  return row === undefined || row.error !== undefined ? Number.NaN : microsPerDecision(row.redisCpuS ?? Number.NaN, decisionsFor(row));
}

export function sidecarMicros(row: Row | undefined): number {
  return row === undefined || row.error !== undefined ? Number.NaN : microsPerDecision(row.cpu?.serverSeconds ?? Number.NaN, decisionsFor(row));
}

/** The part of redisMicros that Redis spends with no client at all (its idle floor over the same seconds). */
export function idleRedisMicros(row: Row | undefined): number {
  if (row === undefined || row.error !== undefined || row.result === undefined) return Number.NaN;
  return microsPerDecision((row.redisIdleCpuPerS ?? Number.NaN) * row.result.seconds, decisionsFor(row));
}

function scaleRow(rows: readonly Row[], kind: 'ours' | 'peer', store: Store, shape: ScaleShape): Row | undefined {
  return rows.find((r) => r.kind === kind && r.api === 'http' && r.store === store && r.shape === shape);
}

const f = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '—');
const rate = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const times = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
const other = (row: Row | undefined): string => f(row?.cpu?.other ?? Number.NaN, 0);

function overLimit(row: Row | undefined): string {
  const outcomes = row?.outcomes;
  if (outcomes === undefined) return '';
  const over = outcomes.get('over_limit') ?? 0;
  const decided = decisionsFor(row!);
  const notes: string[] = [];
  if (over > 0 && decided > 0) notes.push(`${((100 * over) / decided).toFixed(1)}% denied`);
  // Decided locally after a failed call: they cost Redis nothing, so the row's Redis figure is low by their share.
  const storeErrors = outcomes.get(STORE_ERRORS) ?? 0;
  if (storeErrors > 0) notes.push(`**${storeErrors} Redis call errors**`);
  return notes.length === 0 ? '' : ` (${notes.join('; ')})`;
}

function targetText(shape: ScaleShape): string {
  const vsPeer = REDIS_CPU_VS_PEER[shape];
  if (vsPeer !== undefined) return `≤ ${vsPeer}×`;
  return shape === 'hot' ? `≤ ${HOT_REDIS_MICROS} µs (Cluster)` : '';
}

/** One line per workload and Redis deployment: decisions/s, Redis and sidecar CPU per decision, ours and the peer. */
export function costTable(rows: readonly Row[]): string {
  const lines = [
    '| workload | Redis | decisions/s ours | peer | ours ÷ peer | Redis CPU µs/decision ours | peer | ours ÷ peer | target | of which Redis idle floor (ours, peer) | decisions/s per Redis core ours | peer | sidecar CPU µs/decision ours | peer | ours ÷ peer | other procs % of a core (ours, peer) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const shape of SCALE_SHAPES) {
    for (const store of REDIS_STORES) {
      const ours = scaleRow(rows, 'ours', store, shape);
      const peer = scaleRow(rows, 'peer', store, shape);
      if (ours === undefined && peer === undefined) continue;
      const [oursRate, peerRate] = [ours, peer].map((r) => (r === undefined ? Number.NaN : goodRate(r))) as [number, number];
      const [oursRedis, peerRedis] = [redisMicros(ours), redisMicros(peer)];
      const [oursSidecar, peerSidecar] = [sidecarMicros(ours), sidecarMicros(peer)];
      lines.push(`| ${WORKLOAD_TEXT[shape]} | ${STORE_TEXT[store]} | ${rate(oursRate)}${overLimit(ours)} | ${rate(peerRate)} | ${times(oursRate, peerRate)} | `
        + `${f(oursRedis, 2)} | ${f(peerRedis, 2)} | ${times(oursRedis, peerRedis)} | ${targetText(shape)} | ${f(idleRedisMicros(ours), 2)}, ${f(idleRedisMicros(peer), 2)} | `
        + `${rate(decisionsPerCoreSecond(oursRedis))} | ${rate(decisionsPerCoreSecond(peerRedis))} | `
        + `${f(oursSidecar, 1)} | ${f(peerSidecar, 1)} | ${times(oursSidecar, peerSidecar)} | ${other(ours)}, ${other(peer)} |`);
    }
  }
  const matched = matchedTable(rows);
  if (matched !== '') lines.push('', matched);
  const memory = SCALE_SHAPES.map((shape) => {
    const row = scaleRow(rows, 'ours', 'memory', shape);
    return row === undefined ? undefined : `${SCALE_LABEL[shape]} ${rate(goodRate(row))}/s (sidecar ${f(sidecarMicros(row), 1)} µs/decision, other procs ${other(row)}%)`;
  }).filter((s) => s !== undefined);
  if (memory.length > 0) lines.push('', `Our memory store, same workloads (the reference for the hot key's decisions/s): ${memory.join('; ')}.`);
  return lines.join('\n');
}

/** Redis CPU per decision of a row's run at MATCHED_RATE (NaN when it has none). */
export function matchedRedisMicros(row: Row | undefined): number {
  const run = row?.matched;
  return run === undefined || run.errors > 0 ? Number.NaN : microsPerDecision(run.redisCpuS, run.answered);
}

/** The scale rows on Redis again at one rate for ours and the peer: what each decision costs Redis when both do the same work per second. */
export function matchedTable(rows: readonly Row[]): string {
  const lines = [
    `Redis CPU per decision at the same rate for both (${rate(MATCHED_RATE)} requests/s, open loop, the same keys; a run with errors shows —):`,
    '',
    '| workload | Redis | ours µs/decision | peer µs/decision | ours ÷ peer | target | answered/s ours, peer | p50 / p99 ms ours, peer |',
    '| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |',
  ];
  const answered = (r: Row | undefined): string => (r?.matched === undefined ? '—' : rate(r.matched.rate));
  const latency = (r: Row | undefined): string => (r?.matched === undefined ? '—' : `${f(r.matched.p50Ms, 2)} / ${f(r.matched.p99Ms, 2)}`);
  let any = false;
  for (const shape of SCALE_SHAPES) {
    for (const store of REDIS_STORES) {
      const ours = scaleRow(rows, 'ours', store, shape);
      const peer = scaleRow(rows, 'peer', store, shape);
      if (ours?.matched === undefined && peer?.matched === undefined) continue;
      any = true;
      const [o, p] = [matchedRedisMicros(ours), matchedRedisMicros(peer)];
      lines.push(`| ${WORKLOAD_TEXT[shape]} | ${STORE_TEXT[store]} | ${f(o, 2)} | ${f(p, 2)} | ${times(o, p)} | ${targetText(shape)} | ${answered(ours)}, ${answered(peer)} | ${latency(ours)}, ${latency(peer)} |`);
    }
  }
  return any ? lines.join('\n') : '';
}

/** Ours ≤ factor × the peer's Redis CPU per decision; N/A without both figures. */
function redisCpuCheck(name: string, ours: number, peer: number, factor: number): TargetCheck {
  return !Number.isFinite(ours) || !Number.isFinite(peer) || peer <= 0
    ? { name, pass: undefined, detail: 'no result' }
    : { name, pass: ours <= factor * peer, detail: `ours ${ours.toFixed(2)} µs, peer ${peer.toFixed(2)} µs = ${(ours / peer).toFixed(2)}×` };
}

/** The scale targets as PASS/FAIL/N/A checks. */
export function scaleChecks(rows: readonly Row[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  for (const shape of SCALE_SHAPES) {
    const factor = REDIS_CPU_VS_PEER[shape];
    if (factor === undefined) continue;
    for (const store of REDIS_STORES) {
      const name = `Redis CPU per decision ≤ ${factor}× the peer's, ${WORKLOAD_TEXT[shape]}, ${STORE_TEXT[store]}`;
      const ours = redisMicros(scaleRow(rows, 'ours', store, shape));
      const peer = redisMicros(scaleRow(rows, 'peer', store, shape));
      checks.push(redisCpuCheck(name, ours, peer, factor));
      checks.push(redisCpuCheck(`${name}, both at ${rate(MATCHED_RATE)}/s`,
        matchedRedisMicros(scaleRow(rows, 'ours', store, shape)), matchedRedisMicros(scaleRow(rows, 'peer', store, shape)), factor));
    }
  }
  const hot = scaleRow(rows, 'ours', 'cluster', 'hot');
  checks.push(rateCheck(`hot key on the Cluster ≥ ${HOT_VS_MEMORY}× our memory store's decisions/s`, hot, scaleRow(rows, 'ours', 'memory', 'hot'), HOT_VS_MEMORY));
  const hotMicros = redisMicros(hot);
  const hotName = `hot key on the Cluster ≤ ${HOT_REDIS_MICROS} µs Redis CPU per decision`;
  checks.push(Number.isFinite(hotMicros)
    ? { name: hotName, pass: hotMicros <= HOT_REDIS_MICROS, detail: `${hotMicros.toFixed(2)} µs = ${rate(decisionsPerCoreSecond(hotMicros))} decisions/s per Redis core (of which ${f(idleRedisMicros(hot), 2)} µs is the masters' idle floor)` }
    : { name: hotName, pass: undefined, detail: 'no result' });
  for (const shape of SCALE_SHAPES) {
    checks.push(rateCheck(`Cluster HTTP ≥ ${CLUSTER_VS_PEER}× the peer's decisions/s, ${WORKLOAD_TEXT[shape]}`,
      scaleRow(rows, 'ours', 'cluster', shape), scaleRow(rows, 'peer', 'cluster', shape), CLUSTER_VS_PEER));
  }
  return checks;
}

/** The chart written next to BENCHMARKS.md: Redis and sidecar CPU per decision, ours and the peer. */
export function costChart(rows: readonly Row[], subtitle: string): string {
  const groups = (measure: (row: Row | undefined) => number): ChartGroup[] => SCALE_SHAPES.flatMap((shape) => REDIS_STORES.map((store) => ({
    label: `${SCALE_LABEL[shape]}, ${store === 'redis' ? 'single' : 'Cluster'}`,
    values: [measure(scaleRow(rows, 'ours', store, shape)), measure(scaleRow(rows, 'peer', store, shape))],
  })));
  return barChartSvg({
    title: 'CPU per decision (POST /v1/check, autocannon): lower is better',
    subtitle,
    series: [{ name: 'openclaw-ratelimit', color: '#2b6cb0' }, { name: 'rate-limiter-flexible (one EVALSHA per request)', color: '#dd8452' }],
    panels: [
      { title: 'Redis CPU per decision (INFO cpu, all masters), µs', unit: 'µs', groups: groups(redisMicros) },
      { title: 'Sidecar CPU per decision (/proc), µs', unit: 'µs', groups: groups(sidecarMicros) },
    ],
  });
}

/** docs/sizing.md's figures: decisions per second per Redis core, each workload, ours and the peer. */
export function sizingTable(rows: readonly Row[], runLine: string): string {
  const lines = [
    runLine,
    '',
    '| workload | Redis | ours: Redis CPU per decision | ours: decisions/s per Redis core | peer: Redis CPU per decision | peer: decisions/s per Redis core | ours: sidecar CPU per decision |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const shape of SCALE_SHAPES) {
    for (const store of REDIS_STORES) {
      const ours = redisMicros(scaleRow(rows, 'ours', store, shape));
      const peer = redisMicros(scaleRow(rows, 'peer', store, shape));
      lines.push(`| ${WORKLOAD_TEXT[shape]} | ${STORE_TEXT[store]} | ${f(ours, 2)} µs | ${rate(decisionsPerCoreSecond(ours))} | ${f(peer, 2)} µs | ${rate(decisionsPerCoreSecond(peer))} | `
        + `${f(sidecarMicros(scaleRow(rows, 'ours', store, shape)), 1)} µs |`);
    }
  }
  return lines.join('\n');
}

const SIZING_BEGIN = '<!-- sizing:figures -->';
const SIZING_END = '<!-- /sizing:figures -->';

/** Replaces the text between docs/sizing.md's figure markers; leaves the file alone when they are missing. */
export function writeSizingFigures(path: string, text: string): boolean {
  const doc = readFileSync(path, 'utf8');
  const begin = doc.indexOf(SIZING_BEGIN);
  const end = doc.indexOf(SIZING_END);
  if (begin === -1 || end < begin) return false;
  writeFileSync(path, `${doc.slice(0, begin + SIZING_BEGIN.length)}\n${text.trim()}\n${doc.slice(end)}`);
  return true;
}
