// The results table, the issue's target checks, the machine description, and
// BENCHMARKS.md's generated section (only the text between the markers).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import type { CpuShares } from './cpu.js';
import type { LoadResult } from './load-result.js';
import type { RateLoadResult } from './load-rate.js';
import type { CommandDelta } from './redis-procs.js';
import { STORE_ERRORS, total } from './server-metrics.js';
import { isScaleShape, type Shape } from './workload.js';

export type Api = 'http' | 'rls' | 'authz';
export type Store = 'none' | 'memory' | 'redis' | 'cluster';
type Kind = 'baseline' | 'ours' | 'peer';

export interface Row {
  readonly id: string;
  readonly kind: Kind;
  readonly api: Api;
  readonly store: Store;
  readonly shape: Shape;
  result?: LoadResult;
  /** Decisions our server counted (ratelimit_decisions_total delta), by outcome. */
  outcomes?: Map<string, number>;
  /** The same decisions by who decided (decided_by: store, lease, mirror, ...). */
  deciders?: Map<string, number>;
  redis?: CommandDelta;
  /** Redis CPU seconds (INFO cpu used_cpu_user + used_cpu_sys) over the measured window, summed over every master. */
  redisCpuS?: number;
  /** The same Redis's CPU seconds per second with no client (its floor), for reading redisCpuS at low rates. */
  redisIdleCpuPerS?: number;
  cpu?: CpuShares;
  /** Why the row has no numbers (or why they are suspect). */
  error?: string;
  /** A baseline shown for comparison only: ratios and targets use the other baseline of its family. */
  readonly informational?: boolean;
  /** Latency at constant rates, a share of this row's measured rate each (ours, spread rows). */
  latency?: LatencyPoint[];
  /** Scale rows on Redis: the same workload at MATCHED_RATE, the same for ours and the peer (Redis's cost per call depends on its call rate). */
  matched?: MatchedRun;
}

interface MatchedRun {
  /** Requests per second asked (open loop). */
  readonly askedRate: number;
  /** Good answers per second, and in all. */
  readonly rate: number;
  readonly answered: number;
  readonly errors: number;
  /** Latency from each request's intended send time, ms. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Redis CPU seconds over the run, every master. */
  readonly redisCpuS: number;
}

/** The scale rows' common rate: below what every server sustained on the test machine (8,000-18,000/s), so ours and the peer are compared doing the same work per second. */
export const MATCHED_RATE = 6000;

interface LatencyPoint {
  /** Share of the row's saturated rate asked for, e.g. 0.5. */
  readonly load: number;
  result?: RateLoadResult;
  error?: string;
}

/** The loads at which latency is measured. */
export const LATENCY_LOADS = [0.5, 0.9] as const;
/** Issue 13: p99 at 50% load within this on every API. */
const P99_AT_HALF_LOAD_MS = 2;

/** Transport family: HTTP rows compare with bare fastify, gRPC rows with bare grpc-js. */
function family(api: Api): 'http' | 'grpc' {
  return api === 'http' ? 'http' : 'grpc';
}

/** Decisions (or, for baselines, good responses) made per measured second. */
export function goodRate(row: Row): number {
  const r = row.result;
  if (r === undefined || row.error !== undefined) return Number.NaN;
  return Math.max(0, r.responses - errorCount(row)) / r.seconds;
}

/**
 * Generator-side errors plus, for our rows, responses the server did not count
 * as decisions (a gRPC error is an HTTP 200 to h2load).
 */
function errorCount(row: Row): number {
  const r = row.result;
  if (r === undefined) return 0;
  let errors = r.errors;
  if (row.kind === 'ours' && row.outcomes !== undefined) {
    errors = Math.max(errors, r.responses - total(row.outcomes));
  }
  return errors;
}

export function decisionsFor(row: Row): number {
  if (row.outcomes !== undefined) return total(row.outcomes);
  return (row.result?.responses ?? 0) - (row.result?.errors ?? 0);
}

function scriptsPerDecision(row: Row): number {
  return row.redis === undefined ? Number.NaN : row.redis.scripts / Math.max(1, decisionsFor(row));
}

function commandsPerDecision(row: Row): number {
  return row.redis === undefined ? Number.NaN : row.redis.total / Math.max(1, decisionsFor(row));
}

function find(rows: readonly Row[], predicate: (row: Row) => boolean): Row | undefined {
  return rows.find(predicate);
}

function baselineOf(rows: readonly Row[], row: Row): Row | undefined {
  return find(rows, (r) => r.kind === 'baseline' && r.informational !== true && family(r.api) === family(row.api));
}

/** Our memory-store row of the same API, and of the same workload for the scale workloads. */
function memoryRowOf(rows: readonly Row[], row: Row): Row | undefined {
  const shape = isScaleShape(row.shape) ? row.shape : 'spread';
  return find(rows, (r) => r.kind === 'ours' && r.store === 'memory' && r.shape === shape && r.api === row.api);
}

const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : '—');
const fmtRate = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');

function notes(row: Row): string {
  const parts: string[] = [];
  if (row.error !== undefined) parts.push(`FAILED: ${row.error.replace(/\s+/g, ' ').slice(0, 300)}`);
  if (row.outcomes !== undefined && row.outcomes.size > 0) {
    const decided = total(row.outcomes);
    const over = (row.outcomes.get('over_limit') ?? 0) + (row.outcomes.get('shadow_over_limit') ?? 0);
    if (over > 0) parts.push(`${((100 * over) / decided).toFixed(0)}% over_limit`);
    const failed = row.outcomes.get('store_failure') ?? 0;
    if (failed > 0) parts.push(`${failed} store_failure`);
    const storeErrors = row.outcomes.get(STORE_ERRORS) ?? 0;
    if (storeErrors > 0) parts.push(`**${storeErrors} Redis call errors (deadline/breaker: local fallback decided)**`);
  }
  if (row.deciders !== undefined && row.store !== 'memory') {
    const decided = Math.max(1, [...row.deciders.values()].reduce((a, b) => a + b, 0));
    const shares = [...row.deciders.entries()].sort((a, b) => b[1] - a[1])
      .map(([by, count]) => `${by} ${((100 * count) / decided).toFixed(0)}%`);
    if (shares.length > 0) parts.push(`decided by ${shares.join(', ')}`);
  }
  const denied = row.result?.statuses['429'];
  if (row.kind === 'peer' && denied !== undefined && denied > 0) parts.push(`${denied} × 429`);
  if (row.redis !== undefined) {
    const top = [...row.redis.perCommand.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3)
      .map(([name, calls]) => `${name} ${(calls / Math.max(1, decisionsFor(row))).toFixed(2)}`);
    if (top.length > 0) parts.push(`per decision: ${top.join(', ')}`);
  }
  if (row.cpu !== undefined) {
    const c = row.cpu;
    parts.push(`cpu % of a core: srv ${fmt(c.server)}${Number.isFinite(c.redis) ? `, redis ${fmt(c.redis)}` : ''}, bench ${fmt(c.bench)}${c.h2load > 0 ? `, h2load ${fmt(c.h2load)}` : ''}, other procs ${fmt(c.other)}; machine idle ${fmt(c.idle)}%`);
  }
  return parts.join('; ');
}

/** The results as a Markdown table. */
export function table(rows: readonly Row[]): string {
  const lines = [
    '| row | generator | decisions/s | p50 ms | p99 ms | × baseline | × our memory | Redis cmds/decision, incl. in-script (script calls) | non-2xx / errors | notes |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const row of rows) {
    const rate = goodRate(row);
    const base = baselineOf(rows, row);
    const memory = memoryRowOf(rows, row);
    const redis = row.redis === undefined ? '—' : `${commandsPerDecision(row).toFixed(2)} (${scriptsPerDecision(row).toFixed(2)})`;
    lines.push(`| ${row.id} | ${row.result?.generator ?? '—'} | ${fmtRate(rate)} | ${fmt(row.result?.p50Ms ?? Number.NaN, 2)} | ${fmt(row.result?.p99Ms ?? Number.NaN, 2)} | `
      + `${(row.kind === 'baseline' && row.informational !== true) || base === undefined || base === row ? '—' : ratio(rate, goodRate(base))} | `
      + `${row.kind !== 'ours' || memory === undefined || memory === row ? '—' : ratio(rate, goodRate(memory))} | `
      + `${redis} | ${row.result === undefined ? '—' : String(errorCount(row))} | ${notes(row)} |`);
  }
  return lines.join('\n');
}

/** Latency at constant rates, one line per row and load. */
export function latencyTable(rows: readonly Row[]): string {
  const lines = [
    '| row | load | generator | asked/s | answered/s | p50 ms | p99 ms | max ms | errors | p99 from write ms | generator lag p50 / p99 ms | waited for a connection | generator CPU % |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const row of rows) {
    for (const point of row.latency ?? []) {
      const r = point.result;
      lines.push(point.error !== undefined || r === undefined
        ? `| ${row.id} | ${Math.round(point.load * 100)}% | FAILED: ${(point.error ?? 'no result').replace(/\s+/g, ' ').slice(0, 200)} | | | | | | | | | | |`
        : `| ${row.id} | ${Math.round(point.load * 100)}% | ${r.generator} | ${fmtRate(r.askedRate)} | ${fmtRate(r.rate)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${fmt(r.maxMs, 1)} | ${r.errors} | `
          + `${fmt(r.fromWriteP99Ms, 2)} | ${r.workers.map((w) => `${fmt(w.lagP50Ms, 2)} / ${fmt(w.lagP99Ms, 2)}`).join(', ')} | ${r.workers.map((w) => w.queued).join(', ')} | ${r.workers.map((w) => fmt(w.cpuPercent, 0)).join(', ')} |`);
    }
  }
  return lines.join('\n');
}

export interface TargetCheck {
  readonly name: string;
  /** undefined when a row it needs is missing or failed. */
  readonly pass: boolean | undefined;
  readonly detail: string;
}

export function rateCheck(name: string, row: Row | undefined, reference: Row | undefined, factor: number): TargetCheck {
  const a = row === undefined ? Number.NaN : goodRate(row);
  const b = reference === undefined ? Number.NaN : goodRate(reference);
  if (!Number.isFinite(a) || !Number.isFinite(b) || b <= 0) {
    return { name, pass: undefined, detail: `no result (${row?.id ?? '?'}: ${row?.error ?? 'missing'}; ${reference?.id ?? '?'}: ${reference?.error ?? 'missing'})` };
  }
  return { name, pass: a >= factor * b, detail: `${row?.id} ${fmtRate(a)}/s = ${(a / b).toFixed(2)}× ${reference?.id} ${fmtRate(b)}/s (need ≥ ${factor}×)` };
}

/** Script calls per decision may exceed 1 by in-flight calls at the window's edges: allow 1%. */
const ROUND_TRIP_TOLERANCE = 1.01;

/** The issue's targets. */
export function targetChecks(rows: readonly Row[]): TargetCheck[] {
  const ours = (api: Api, store: Store, shape: Shape = 'spread'): Row | undefined =>
    find(rows, (r) => r.kind === 'ours' && r.api === api && r.store === store && r.shape === shape);
  const base = (api: Api): Row | undefined => find(rows, (r) => r.kind === 'baseline' && r.informational !== true && family(r.api) === family(api));
  const peer = (store: Store): Row | undefined => find(rows, (r) => r.kind === 'peer' && r.store === store && r.shape === 'spread');
  const checks: TargetCheck[] = [
    rateCheck('memory-store HTTP ≥ 0.8× bare fastify', ours('http', 'memory'), base('http'), 0.8),
    rateCheck(`memory-store gRPC RLS ≥ 0.8× ${base('rls')?.id ?? 'bare grpc-js'}`, ours('rls', 'memory'), base('rls'), 0.8),
    rateCheck(`memory-store gRPC ext_authz ≥ 0.8× ${base('authz')?.id ?? 'bare grpc-js'}`, ours('authz', 'memory'), base('authz'), 0.8),
    rateCheck('Redis Cluster HTTP ≥ 0.9× our memory-store HTTP', ours('http', 'cluster'), ours('http', 'memory'), 0.9),
    rateCheck('Redis Cluster HTTP ≥ 1.15× rate-limiter-flexible on the Cluster (peer RLF cluster)', ours('http', 'cluster'), peer('cluster'), 1.15),
    rateCheck('single Redis HTTP ≥ 1.15× rate-limiter-flexible on the same Redis (peer RLF redis)', ours('http', 'redis'), peer('redis'), 1.15),
  ];
  for (const row of rows) {
    const half = row.latency?.find((point) => point.load === 0.5);
    if (half === undefined || row.kind !== 'ours') continue;
    const baseHalf = base(row.api)?.latency?.find((point) => point.load === 0.5)?.result;
    const beside = baseHalf === undefined ? '' : `; ${base(row.api)?.id} at 50% of its rate: p99 ${fmt(baseHalf.p99Ms, 2)} ms, p50 ${fmt(baseHalf.p50Ms, 2)} ms`;
    const name = `p99 at 50% load ≤ ${P99_AT_HALF_LOAD_MS} ms (${row.id})`;
    const r = half.result;
    checks.push(r === undefined || half.error !== undefined
      ? { name, pass: undefined, detail: `no result (${half.error ?? 'missing'})` }
      : { name, pass: r.p99Ms <= P99_AT_HALF_LOAD_MS && r.errors === 0, detail: `p99 ${fmt(r.p99Ms, 2)} ms, p50 ${fmt(r.p50Ms, 2)} ms at ${fmtRate(r.rate)}/s, ${r.errors} errors${beside}` });
  }
  for (const row of rows) {
    if (row.kind !== 'ours' || row.store === 'memory' || row.store === 'none' || row.shape !== 'spread') continue;
    const name = `≤ 1 Redis round trip per decision (${row.id})`;
    const perDecision = scriptsPerDecision(row);
    if (row.error !== undefined || !Number.isFinite(perDecision)) {
      checks.push({ name, pass: undefined, detail: `no result (${row.error ?? 'no commandstats'})` });
    } else {
      const storeErrors = row.outcomes?.get(STORE_ERRORS) ?? 0;
      const caveat = storeErrors > 0 ? ` (caveat: ${storeErrors} Redis call errors, some decisions were local)` : '';
      checks.push({ name, pass: perDecision <= ROUND_TRIP_TOLERANCE, detail: `${perDecision.toFixed(3)} script calls, ${commandsPerDecision(row).toFixed(3)} commands (incl. in-script) per decision${caveat}` });
    }
  }
  for (const api of ['http', 'rls'] as const) {
    checks.push(rateCheck(`hot over-limit key on memory (${api}) ≥ 0.9× memory-store rate`, ours(api, 'memory', 'attack'), ours(api, 'memory'), 0.9));
    checks.push(rateCheck(`hot over-limit key on Redis Cluster (${api}) ≥ 0.9× memory-store rate`, ours(api, 'cluster', 'attack'), ours(api, 'memory'), 0.9));
  }
  return checks;
}

export function checkLines(checks: readonly TargetCheck[]): string {
  return checks.map((c) => `${c.pass === undefined ? 'N/A ' : c.pass ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`).join('\n');
}

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly redis: string;
  readonly h2load: string;
  readonly date: string;
}

export function machineInfo(redis: string, h2load: string): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    cpuModel = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel;
  } catch {
    // not Linux
  }
  return {
    cpuModel,
    cores: cpus().length,
    memoryGiB: totalmem() / 2 ** 30,
    node: process.version,
    redis,
    h2load,
    date: new Date().toISOString(),
  };
}

export function machineLines(m: MachineInfo): string {
  return [
    `- CPU: ${m.cpuModel}, ${m.cores} cores; memory ${m.memoryGiB.toFixed(1)} GiB`,
    `- Node ${m.node}; redis-server ${m.redis}; ${m.h2load}`,
    `- Date: ${m.date}`,
  ].join('\n');
}

const BEGIN = '<!-- bench:begin -->';
const END = '<!-- bench:end -->';

const HEAD = `# Benchmarks

\`npm run bench\` (full, ~3 min) or \`npm run bench -- --quick\` (smoke, ~1 s per
row, does not touch this file). What it measures and how is in
[bench/README.md](bench/README.md).

`;

const HISTORY = `
## History / what was tried

(Hand-written; \`npm run bench\` never rewrites this section.)
`;

/** Replaces the text between the markers in BENCHMARKS.md (creates the file if needed). */
export function writeBenchmarksMd(path: string, section: string): void {
  const generated = `${BEGIN}\n${section.trim()}\n${END}`;
  if (!existsSync(path)) {
    writeFileSync(path, `${HEAD}${generated}\n${HISTORY}`);
    return;
  }
  const text = readFileSync(path, 'utf8');
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin === -1 || end === -1 || end < begin) {
    writeFileSync(path, `${text.trimEnd()}\n\n${generated}\n`);
    return;
  }
  writeFileSync(path, `${text.slice(0, begin)}${generated}${text.slice(end + END.length)}`);
}
