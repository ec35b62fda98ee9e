// npm run bench [-- --quick] [-- --no-write] [-- --only id,id]
// Starts every server and Redis itself (loopback, free ports), measures each
// row (warm-up, then a bounded measured run), prints the table and the
// issue's target checks, and rewrites BENCHMARKS.md's generated section.
import { writeFileSync } from 'node:fs';
import { cappedKeyCheck, cappedKeyRun, type CappedResult } from './capped-key.js';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startCpuMeter, type CpuMeter } from './cpu.js';
import { AUTHZ_PATH, RLS_PATH, authzRequest, rlsRequest } from './grpc-messages.js';
import { grpcLoad, hasH2load, H2LOAD_CONNECTIONS, H2LOAD_PROCS, H2LOAD_STREAMS, GRPCJS_CONCURRENCY } from './load-grpc.js';
import { AUTOCANNON_CONNECTIONS, httpLoad } from './load-http.js';
import { rateLoad } from './load-rate.js';
import type { LoadResult } from './load-result.js';
import { probeGrpc } from './probe.js';
import { installCleanup, makeTempDir, removeTempDir, runCommand, sleep, stopAll } from './procs.js';
import { cpuDeltaSeconds } from './cost.js';
import { clusterCommandStats, commandDelta, redisCpuReadings, redisVersion, startRedisCluster, startSingleRedis, type RedisDeployment } from './redis-procs.js';
import { LATENCY_LOADS, MATCHED_RATE, checkLines, latencyTable, machineInfo, machineLines, table, targetChecks, writeBenchmarksMd, type Api, type Row, type Store } from './report.js';
import { outcomeDelta, scrapeOutcomesAndDeciders, STORE_ERRORS } from './server-metrics.js';
import { EXTRA_SERVER_ARGS, startBareServer, startOurServer, type ServerUnderTest } from './servers.js';
import { SCALE_LABEL, costChart, costTable, scaleChecks, sizingTable, writeSizingFigures } from './scale-report.js';
import { SCALE_SHAPES, checkBody, clientKey, isScaleShape, scaleKeys, type ScaleShape, type Shape } from './workload.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const { values } = parseArgs({
  options: { quick: { type: 'boolean' }, 'no-write': { type: 'boolean' }, only: { type: 'string' } },
});
const quick = values.quick === true;
const measureS = quick ? 1 : Number(process.env.BENCH_DURATION_S ?? '5');
const warmS = quick ? 0.3 : Math.min(1, measureS);
/** How long Redis is watched with no client, for its own CPU floor. */
const idleS = quick ? 1 : 3;
if (!Number.isFinite(measureS) || measureS <= 0) throw new Error(`BENCH_DURATION_S must be a positive number, not ${process.env.BENCH_DURATION_S}`);
const only = values.only?.split(',').filter((s) => s !== '');
const wanted = (id: string): boolean => only === undefined || only.some((s) => id.includes(s));

/** The CPU-per-decision chart, next to BENCHMARKS.md. */
const CHART_FILE = 'BENCHMARKS-cpu.svg';

const tmp = makeTempDir('rl-bench-');
installCleanup(async () => {
  await stopAll();
  removeTempDir(tmp);
});

const rows: Row[] = [];

function row(id: string, kind: Row['kind'], api: Api, store: Store, shape: Shape, informational = false): Row {
  const r: Row = { id, kind, api, store, shape, ...(informational ? { informational } : {}) };
  rows.push(r);
  return r;
}

function log(message: string): void {
  process.stdout.write(`${message}\n`);
}

/** Fails with a reason unless the HTTP target answers the probe body with `expected`. */
async function probeHttp(port: number, expected: number): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${port}/v1/check`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: checkBody(clientKey(0)),
  });
  const text = await response.text();
  if (response.status !== expected) throw new Error(`probe POST /v1/check answered ${response.status}: ${text.slice(0, 200)}`);
}

async function probeGrpcRow(server: ServerUnderTest, api: Api): Promise<void> {
  if (server.grpcPort === undefined) throw new Error('no gRPC port');
  const baseline = server.kind === 'baseline';
  const probe = api === 'authz'
    ? await probeGrpc(server.grpcPort, AUTHZ_PATH, authzRequest(clientKey(0)), (r) => {
      if (baseline) return undefined;
      const status = r.status as { code?: number } | null | undefined;
      return status?.code === 0 && r.ok_response != null ? undefined : `status ${JSON.stringify(status)} (expected code 0 and ok_response)`;
    })
    : await probeGrpc(server.grpcPort, RLS_PATH, rlsRequest(clientKey(0)), (r) => {
      const statuses = r.statuses as unknown[] | undefined;
      if (r.overall_code !== 1) return `overall_code ${String(r.overall_code)} (expected 1 = OK)`;
      return baseline || statuses?.length === 1 ? undefined : `${statuses?.length ?? 0} statuses (expected 1)`;
    });
  if (!probe.ok) throw new Error(`probe call: ${probe.detail}`);
}

async function load(server: ServerUnderTest, api: Api, shape: Shape, seconds: number, measure: boolean, onStart?: () => void): Promise<LoadResult> {
  if (api === 'http') {
    if (server.httpPort === undefined) throw new Error('no HTTP port');
    return httpLoad({ port: server.httpPort, path: '/v1/check', shape, seconds, ...(onStart ? { onStart } : {}) });
  }
  if (server.grpcPort === undefined) throw new Error('no gRPC port');
  if (isScaleShape(shape)) throw new Error(`the ${shape} workload has an HTTP generator only`);
  return grpcLoad({
    port: server.grpcPort,
    path: api === 'authz' ? AUTHZ_PATH : RLS_PATH,
    encode: api === 'authz' ? authzRequest : rlsRequest,
    shape, seconds, tmpDir: tmp, measure,
    ...(onStart ? { onStart } : {}),
  });
}

/** Probe, warm up, then the measured run with server counters, commandstats and CPU around it. */
async function measure(r: Row, server: ServerUnderTest, redis: RedisDeployment | undefined): Promise<void> {
  try {
    if (server.exited()) throw new Error(`${server.name} is not running:\n${server.output()}`);
    if (r.api === 'http') await probeHttp(server.httpPort ?? 0, 200);
    else await probeGrpcRow(server, r.api);
    await load(server, r.api, r.shape, warmS, false);
    const countsBefore = server.kind === 'ours' && server.httpPort !== undefined ? await scrapeOutcomesAndDeciders(server.httpPort) : undefined;
    const statsBefore = redis === undefined ? undefined : await clusterCommandStats(redis.masterPorts);
    let meter: CpuMeter | undefined;
    let redisCpuBefore: Promise<number[]> | undefined;
    r.result = await load(server, r.api, r.shape, measureS, true, () => {
      meter = startCpuMeter(server.pid, redis?.pids ?? []);
      if (redis !== undefined) redisCpuBefore = redisCpuReadings(redis.masterPorts);
    });
    r.cpu = meter?.stop();
    if (redis !== undefined && redisCpuBefore !== undefined) {
      r.redisCpuS = cpuDeltaSeconds(await redisCpuBefore, await redisCpuReadings(redis.masterPorts));
      r.redisIdleCpuPerS = redis.idleCpuPerS;
    }
    if (redis !== undefined && statsBefore !== undefined) r.redis = commandDelta(statsBefore, await clusterCommandStats(redis.masterPorts));
    if (countsBefore !== undefined && server.httpPort !== undefined) {
      const countsAfter = await scrapeOutcomesAndDeciders(server.httpPort);
      r.outcomes = outcomeDelta(countsBefore.outcomes, countsAfter.outcomes);
      r.deciders = outcomeDelta(countsBefore.deciders, countsAfter.deciders);
      r.deciders.delete(STORE_ERRORS);
    }
    if (server.exited()) r.error = `${server.name} exited during the run:\n${server.output()}`;
  } catch (error: unknown) {
    r.error = error instanceof Error ? error.message : String(error);
  }
  const rate = r.result === undefined ? '—' : Math.round(r.result.rate).toString();
  log(`  ${r.id.padEnd(24)} ${r.error === undefined ? `${rate}/s p50 ${r.result?.p50Ms.toFixed(2)} ms p99 ${r.result?.p99Ms.toFixed(2)} ms errors ${r.result?.errors}` : `FAILED: ${r.error.split('\n')[0]}`}`);
  // Latency at constant rates: our memory and Cluster rows, and the baselines (the same generator at the
  // same shares of their own rate: what the machine and the framework alone give).
  const latencyRow = (r.kind === 'ours' && r.shape === 'spread' && (r.store === 'memory' || r.store === 'cluster'))
    || (r.kind === 'baseline' && r.informational !== true);
  if (latencyRow && r.error === undefined && r.result !== undefined) {
    await measureLatency(r, server, r.result.rate);
  }
  if (isScaleShape(r.shape) && redis !== undefined && r.error === undefined) await measureMatched(r, server, r.shape, redis);
}

/** Keys in a matched run's sequence (it cycles): more than the run asks for at MATCHED_RATE. */
const MATCHED_KEYS = 40_000;

/** A scale row again at MATCHED_RATE (open loop), with Redis's CPU over the measured part. */
async function measureMatched(r: Row, server: ServerUnderTest, shape: ScaleShape, redis: RedisDeployment): Promise<void> {
  try {
    let before: Promise<number[]> | undefined;
    const result = await rateLoad({
      port: server.httpPort ?? 0, path: '/v1/check', keys: scaleKeys(shape, MATCHED_KEYS), rate: MATCHED_RATE, seconds: measureS,
      onStart: () => { before = redisCpuReadings(redis.masterPorts); },
    });
    if (before === undefined) throw new Error('the paced run never started');
    const redisCpuS = cpuDeltaSeconds(await before, await redisCpuReadings(redis.masterPorts));
    r.matched = { askedRate: result.askedRate, rate: result.rate, answered: result.answered, errors: result.errors, p50Ms: result.p50Ms, p99Ms: result.p99Ms, redisCpuS };
    log(`    at ${MATCHED_RATE}/s: ${Math.round(result.rate)}/s answered, p50 ${result.p50Ms.toFixed(2)} ms p99 ${result.p99Ms.toFixed(2)} ms, errors ${result.errors}, Redis ${((redisCpuS * 1e6) / Math.max(1, result.answered)).toFixed(2)} µs/decision`);
  } catch (error: unknown) {
    log(`    at ${MATCHED_RATE}/s: FAILED: ${(error instanceof Error ? error.message : String(error)).split('\n')[0]}`);
  }
}

/** p50/p99 at constant shares of the row's saturated rate (load-rate.ts, our paced generator). */
async function measureLatency(r: Row, server: ServerUnderTest, saturated: number): Promise<void> {
  r.latency = [];
  for (const load of LATENCY_LOADS) {
    const point: NonNullable<Row['latency']>[number] = { load };
    r.latency.push(point);
    try {
      const port = r.api === 'http' ? server.httpPort : server.grpcPort;
      if (port === undefined) throw new Error('no port');
      const options = r.api === 'http'
        ? { port, path: '/v1/check' }
        : { port, path: r.api === 'authz' ? AUTHZ_PATH : RLS_PATH, encode: r.api === 'authz' ? authzRequest : rlsRequest };
      await rateLoad({ ...options, rate: saturated * load, seconds: warmS });
      point.result = await rateLoad({ ...options, rate: saturated * load, seconds: measureS });
      log(`    at ${Math.round(load * 100)}%: ${Math.round(point.result.rate)}/s p50 ${point.result.p50Ms.toFixed(2)} ms p99 ${point.result.p99Ms.toFixed(2)} ms errors ${point.result.errors}`);
    } catch (error: unknown) {
      point.error = error instanceof Error ? error.message : String(error);
      log(`    at ${Math.round(load * 100)}%: FAILED: ${point.error.split('\n')[0]}`);
    }
  }
}

/** Runs `rows` against a server started by `start`; a start failure marks every row failed. */
async function group(title: string, planned: Row[], start: () => Promise<ServerUnderTest>, redis?: RedisDeployment): Promise<void> {
  const todo = planned.filter((r) => wanted(r.id));
  for (const r of planned) if (!todo.includes(r)) rows.splice(rows.indexOf(r), 1);
  if (todo.length === 0) return;
  log(`${title}`);
  let server: ServerUnderTest | undefined;
  try {
    server = await start();
  } catch (error: unknown) {
    const message = error instanceof Error ? error.message : String(error);
    for (const r of todo) r.error = `server did not start: ${message}`;
    log(`  FAILED to start: ${message.split('\n').slice(0, 6).join('\n  ')}`);
    return;
  }
  try {
    for (const r of todo) await measure(r, server, redis);
  } finally {
    await server.stop();
  }
}

async function withRedis(title: string, start: () => Promise<RedisDeployment>, body: (redis: RedisDeployment) => Promise<void>, planned: Row[]): Promise<void> {
  if (!planned.some((r) => wanted(r.id))) {
    for (const r of planned) rows.splice(rows.indexOf(r), 1);
    return;
  }
  let redis: RedisDeployment;
  try {
    redis = await start();
  } catch (error: unknown) {
    const message = error instanceof Error ? error.message : String(error);
    for (const r of planned) r.error = `${title} did not start: ${message}`;
    log(`${title}: FAILED to start: ${message}`);
    return;
  }
  try {
    const before = await redisCpuReadings(redis.masterPorts);
    await sleep(idleS * 1000);
    redis.idleCpuPerS = cpuDeltaSeconds(before, await redisCpuReadings(redis.masterPorts)) / idleS;
    log(`${title}: idle Redis CPU ${(redis.idleCpuPerS * 1000).toFixed(1)} ms per second over ${idleS} s (all masters, no client)`);
    await body(redis);
  } finally {
    await redis.stop();
  }
}

async function main(): Promise<void> {
  const h2 = await hasH2load();
  const h2version = h2 ? (await runCommand('h2load', ['--version'])).stdout.trim() : 'h2load missing: gRPC rows use the grpc-js fallback client';
  log(`bench: ${measureS} s measured + ${warmS} s warm-up per row${quick ? ' (quick)' : ''}; HTTP autocannon c=${AUTOCANNON_CONNECTIONS}; gRPC ${h2 ? `h2load ${H2LOAD_PROCS} procs × c=${H2LOAD_CONNECTIONS} × m=${H2LOAD_STREAMS}` : `grpc-js client, ${GRPCJS_CONCURRENCY} in flight`}`);

  await group('baseline: bare fastify', [row('bare fastify', 'baseline', 'http', 'none', 'spread')], () => startBareServer('bare-fastify', 'http'));
  await group('baseline: bare grpc-js, decoding the request (proto-loader)', [row('bare grpc-js', 'baseline', 'rls', 'none', 'spread')],
    () => startBareServer('bare-grpc', 'grpc', ['--decode']));
  await group('baseline: bare grpc-js, no work at all', [row('bare grpc-js, no decoding', 'baseline', 'rls', 'none', 'spread', true)],
    () => startBareServer('bare-grpc', 'grpc'));

  const oursRows = (store: Store, label: string, attack: boolean): Row[] => [
    row(`HTTP ${label}`, 'ours', 'http', store, 'spread'),
    row(`gRPC RLS ${label}`, 'ours', 'rls', store, 'spread'),
    row(`gRPC authz ${label}`, 'ours', 'authz', store, 'spread'),
    ...(attack ? [
      row(`HTTP ${label} attack`, 'ours', 'http', store, 'attack'),
      row(`gRPC RLS ${label} attack`, 'ours', 'rls', store, 'attack'),
    ] : []),
  ];

  // Scale workloads (HTTP only): what a decision costs Redis and the sidecar, ours beside the peer.
  const scaleRows = (kind: 'ours' | 'peer', store: Store, label: string): Row[] =>
    SCALE_SHAPES.map((shape) => row(`${kind === 'ours' ? 'HTTP' : 'peer RLF'} ${label} ${SCALE_LABEL[shape]}`, kind, 'http', store, shape));

  await group('ours: memory store', [...oursRows('memory', 'memory', true), ...scaleRows('ours', 'memory', 'memory')], () => startOurServer(ROOT, []));

  const redisOurs = [...oursRows('redis', 'redis', false), ...scaleRows('ours', 'redis', 'redis')];
  const redisPeer = [row('peer RLF redis', 'peer', 'http', 'redis', 'spread'), ...scaleRows('peer', 'redis', 'redis')];
  await withRedis('single Redis', startSingleRedis, async (redis) => {
    await group('ours: single Redis', redisOurs, () => startOurServer(ROOT, redis.serverArgs), redis);
    await group('peer: rate-limiter-flexible, single Redis', redisPeer, () => startBareServer('peer-rlf', 'http', redis.serverArgs), redis);
  }, [...redisOurs, ...redisPeer]);

  const clusterOurs = [...oursRows('cluster', 'cluster', true), ...scaleRows('ours', 'cluster', 'cluster')];
  const clusterPeer = [row('peer RLF cluster', 'peer', 'http', 'cluster', 'spread'), ...scaleRows('peer', 'cluster', 'cluster')];
  await withRedis('Redis Cluster (3 masters)', () => startRedisCluster(3), async (redis) => {
    await group('ours: Redis Cluster (3 masters)', clusterOurs, () => startOurServer(ROOT, redis.serverArgs), redis);
    await group('peer: rate-limiter-flexible, Redis Cluster', clusterPeer, () => startBareServer('peer-rlf', 'http', redis.serverArgs), redis);
  }, [...clusterOurs, ...clusterPeer]);

  // The capped hot key through three sidecars on the Cluster (local leases at their default).
  let capped: CappedResult | undefined;
  if (wanted('capped')) {
    log('capped hot key: 200/s, burst 200, through 3 sidecars on a Redis Cluster (3 masters)');
    const cluster = await startRedisCluster(3);
    try {
      capped = await cappedKeyRun(ROOT, cluster.serverArgs, measureS);
      log(`  ${cappedKeyCheck(capped).detail}`);
    } catch (error: unknown) {
      log(`  FAILED: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      await cluster.stop();
    }
  }

  const machine = machineInfo(await redisVersion(), h2version);
  const checks = [...targetChecks(rows), ...scaleChecks(rows), ...(wanted('capped') ? [cappedKeyCheck(capped)] : [])];
  const tableText = table(rows);
  const latencyText = latencyTable(rows);
  const costText = costTable(rows);
  log(`\n${machineLines(machine)}\n\n${tableText}\n\n${latencyText}\n\n${costText}\n\n${checkLines(checks)}\n`);

  if (quick || values['no-write'] === true || only !== undefined) {
    log('BENCHMARKS.md not written (quick, --no-write or --only run).');
    return;
  }
  writeBenchmarksMd(join(ROOT, 'BENCHMARKS.md'), [
    '## Latest run',
    '',
    machineLines(machine),
    `- Every process on this one machine: the server under test (one node process), Redis, and the load generator share the cores,`,
    `  so connection counts are modest: HTTP autocannon ${AUTOCANNON_CONNECTIONS} connections (Node API, in the bench process);`,
    `  gRPC ${h2 ? `h2load ${H2LOAD_PROCS} processes × ${H2LOAD_CONNECTIONS} connections × ${H2LOAD_STREAMS} streams` : `grpc-js client (fallback, h2load missing), ${GRPCJS_CONCURRENCY} calls in flight`}.`,
    `- Our server: \`node dist/main.js serve --log-level warn ${EXTRA_SERVER_ARGS.join(' ')}\` (one process unless BENCH_SERVER_ARGS says otherwise).`,
    `- ${warmS} s warm-up + ${measureS} s measured per row; 10,000 api_keys at 1000/s each round-robin ("spread");`,
    `  "attack" = 90% of requests on one key limited to 10/s, 10% spread.`,
    '',
    tableText,
    '',
    '### Latency at a constant rate',
    '',
    'Each row\'s server again, asked for a constant share of the rate it reached above by our open-loop generator',
    '(bench/load-rate.ts: 2 processes, each sending on an even schedule; HTTP/1.1 for /v1/check, one request in flight',
    'per connection; HTTP/2 for gRPC, one stream per request). Latency counts from each request\'s intended send time;',
    '"from write" leaves out the generator\'s lag (how late it handed a request over: Node timers wake in whole',
    'milliseconds) and any wait for a free HTTP/1.1 connection ("waited": requests that found all 32 of a process busy).',
    '',
    latencyText,
    '',
    '### What a decision costs Redis and the sidecar',
    '',
    'HTTP POST /v1/check under autocannon, our server and the rate-limiter-flexible peer (one EVALSHA per request) on the same',
    'Redis in the same run. Redis CPU = `INFO cpu` used_cpu_user + used_cpu_sys over the measured run, summed over every',
    'master, ÷ decisions answered; sidecar CPU = the server process\'s /proc ticks ÷ decisions. "Decisions/s per Redis core"',
    '= 1 ÷ Redis CPU per decision: what one fully busy Redis core would carry. "Other procs" is the rest of the machine',
    'during the row (other people\'s work on a shared box): a row with a lot of it is noise.',
    '',
    `![CPU per decision, ours and the peer](${CHART_FILE})`,
    '',
    costText,
    '',
    '### Target checks',
    '',
    '```',
    checkLines(checks),
    '```',
  ].join('\n'));
  writeFileSync(join(ROOT, CHART_FILE), costChart(rows, `${machine.date}; ${machine.cpuModel}, ${machine.cores} cores; redis-server ${machine.redis}; ${measureS} s measured per row`));
  const sizingWritten = writeSizingFigures(join(ROOT, 'docs', 'sizing.md'), sizingTable(rows,
    `Measured ${machine.date.slice(0, 10)} (\`npm run bench\`, ${measureS} s per row; ${machine.cpuModel}, ${machine.cores} cores, shared by the server, Redis and the load generator; redis-server ${machine.redis}). Ratios within the run are the result; absolute figures move with the machine's load ("other procs" in BENCHMARKS.md).`));
  log(`BENCHMARKS.md updated (generated section only); ${CHART_FILE} written${sizingWritten ? '; docs/sizing.md figures updated' : ''}.`);
}

try {
  await main();
} finally {
  await stopAll();
  removeTempDir(tmp);
}
