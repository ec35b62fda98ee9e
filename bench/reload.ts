// Decisions during hot reloads of a large config (issue 20, finding 10):
// generates a config of --descriptors descriptors (test/helpers/big-config.ts), serves it (`serve
// --config`, memory store), sends POST /v1/check at a steady --rate and
// SIGHUPs the server every --gap-s seconds, --reloads times. Reports, during
// reloads (SIGHUP to the "config reloaded" log line, and on until no request
// waits to be sent) and between them:
// decision latency (from each request's intended send time, open loop) and
// the server's event-loop delay (bench/loop-delay-probe.ts, loaded into it).
//
//   npm run bench:reload                                   # dist/main.js, as built
//   node --import tsx bench/reload.ts --server /tmp/old/dist/main.js --label before
//   ... --node-arg=--trace-gc --server-log /tmp/server.log   # what the server did meanwhile
//
// Prints a markdown table and one JSON line.
import { createWriteStream, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { LoopDelay } from './loop-delay-probe.js';
import { percentile } from './load-result.js';
import { freePorts, installCleanup, makeTempDir, sleep, spawnChild, stopAll, stopChild, waitForPort, type Child } from './procs.js';
import { RawConnection, postRequest } from './raw-http.js';
import { bigConfigYaml } from '../test/helpers/big-config.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    server: { type: 'string', default: join(ROOT, 'dist', 'main.js') },
    label: { type: 'string', default: 'this build' },
    descriptors: { type: 'string', default: '10000' },
    rate: { type: 'string', default: '1000' },
    reloads: { type: 'string', default: '6' },
    'gap-s': { type: 'string', default: '4' },
    /** Node options for the server, e.g. --node-arg=--trace-gc (repeatable). */
    'node-arg': { type: 'string', multiple: true, default: [] },
    /** Every line the server writes goes here too. */
    'server-log': { type: 'string' },
  },
});
const DESCRIPTORS = Number(values.descriptors);
const RATE = Number(values.rate);
const RELOADS = Number(values.reloads);
const GAP_MS = Number(values['gap-s']) * 1000;
const CONNECTIONS = 32;
const WARM_UP_MS = 2000;
const RELOAD_TIMEOUT_MS = 60_000;
const START_TIMEOUT_MS = 30_000;
const DOMAIN = 'big';
/** Requests for api_key values the config names (single limits and rate_limits alike). */
function requests(): Buffer[] {
  const keys = Array.from({ length: Math.min(DESCRIPTORS, 10_000) }, (_, i) => i).filter((i) => i % 10 !== 0);
  return keys.map((i) => postRequest('/v1/check',
    `{"domain":"${DOMAIN}","descriptors":[{"entries":[{"key":"api_key","value":"key-${i}"}]}]}`));
}

interface Sample {
  intendedMs: number;
  latencyMs: number;
}

interface Window {
  startMs: number;
  endMs: number;
}

/** Envoy's default timeout for a rate-limit call: a decision slower than this fails there. */
const ENVOY_TIMEOUT_MS = 20;

function summary(latencies: number[]): { count: number; p50Ms: number; p99Ms: number; maxMs: number; overEnvoyTimeout: number } {
  latencies.sort((a, b) => a - b);
  return {
    count: latencies.length,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.at(-1) ?? 0,
    overEnvoyTimeout: latencies.filter((ms) => ms > ENVOY_TIMEOUT_MS).length,
  };
}

/** Sends `message` to the probe in the server; resolves with its answer. */
function askProbe<T>(child: Child, message: object): Promise<T> {
  return new Promise((resolveAnswer, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer from the loop-delay probe to ${JSON.stringify(message)}`)), RELOAD_TIMEOUT_MS);
    child.proc.once('message', (answer: T) => {
      clearTimeout(timer);
      resolveAnswer(answer);
    });
    child.proc.send(message);
  });
}

/** The probe's first tick in a new window: after it, a held loop is measured. */
const PROBE_TICK_MS = 5;

async function main(): Promise<void> {
  installCleanup(stopAll);
  const dir = makeTempDir('rl-bench-reload-');
  writeFileSync(join(dir, 'big.yaml'), bigConfigYaml(DESCRIPTORS, DOMAIN));
  const [httpPort, grpcPort] = await freePorts(2);
  const probe = fileURLToPath(new URL('./loop-delay-probe.ts', import.meta.url));
  const child = spawnChild('openclaw-ratelimit', process.execPath, [
    ...values['node-arg'], '--import', 'tsx', '--import', probe, resolve(values.server),
    'serve', '--config', dir, '--host', '127.0.0.1', '--http-port', String(httpPort), '--grpc-port', String(grpcPort), '--admin-port', '0', '--log-level', 'info',
  ], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], cwd: ROOT });
  const reloaded: (() => void)[] = [];
  let lineStart = '';
  const log = values['server-log'] === undefined ? undefined : createWriteStream(values['server-log']);
  if (log !== undefined) child.proc.stderr?.pipe(log);
  child.proc.stdout?.on('data', (chunk: Buffer) => {
    log?.write(chunk);
    const lines = (lineStart + chunk.toString('utf8')).split('\n');
    lineStart = lines.pop() ?? '';
    for (const line of lines) {
      if (line.includes('"config reloaded"') || line.includes('"config reload failed')) reloaded.shift()?.();
    }
  });
  await waitForPort(httpPort!, START_TIMEOUT_MS, child);

  const bodies = requests();
  const connections = await Promise.all(Array.from({ length: CONNECTIONS }, () => RawConnection.open(httpPort!)));
  const idle = [...connections];
  const due: number[] = [];
  const samples: Sample[] = [];
  let errors = 0;
  /** What the errors were: an HTTP status, or the connection's failure. */
  const errorKinds = new Map<string, number>();
  /** False once the run is over: closing the connections fails what is still in flight, which is not an error of the server. */
  let measuring = true;
  const failed = (kind: string): void => {
    if (!measuring) return;
    errors++;
    errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
  };
  let sent = 0;
  const periodMs = 1000 / RATE;
  const startMs = performance.now();
  const runMs = WARM_UP_MS + RELOADS * GAP_MS + GAP_MS / 2;
  const benchLoop = monitorEventLoopDelay({ resolution: 1 });
  benchLoop.enable();
  const send = (): void => {
    while (idle.length > 0 && due.length > 0) {
      // The longest-idle connection first, as a client's pool would. Taken last-in-first-out,
      // some of the 32 never sent a request, and the server rightly closes a connection that
      // sends nothing within its request timeout (10 s).
      const connection = idle.shift()!;
      const intendedMs = due.shift()!;
      const body = bodies[sent++ % bodies.length]!;
      connection.send(body).then(({ status }) => {
        if (status !== 200 && status !== 429) failed(`HTTP ${status}`);
        if (intendedMs >= startMs + WARM_UP_MS) samples.push({ intendedMs, latencyMs: performance.now() - intendedMs });
        idle.push(connection);
        send();
      }, (error: unknown) => {
        failed(error instanceof Error ? error.message : String(error));
      });
    }
  };
  let scheduled = 0;
  const pacer = setInterval(() => {
    const nowMs = performance.now();
    while (startMs + scheduled * periodMs <= Math.min(nowMs, startMs + runMs)) due.push(startMs + periodMs * scheduled++);
    send();
  }, 1);

  const windows: Window[] = [];
  await sleep(WARM_UP_MS);
  await askProbe(child, { phase: 'steady' }); // the warm-up counts as start-up
  for (let r = 0; r < RELOADS; r++) {
    await sleep(GAP_MS / 2);
    const done = new Promise<void>((resolveDone, reject) => {
      const timer = setTimeout(() => reject(new Error(`reload ${r + 1} not logged within ${RELOAD_TIMEOUT_MS} ms\n${child.output()}`)), RELOAD_TIMEOUT_MS);
      reloaded.push(() => {
        clearTimeout(timer);
        resolveDone();
      });
    });
    await askProbe(child, { phase: 'reload' });
    await sleep(PROBE_TICK_MS);
    const window: Window = { startMs: performance.now(), endMs: Infinity };
    child.proc.kill('SIGHUP');
    await done;
    // Until the requests held up by the reload have been sent: their waits are the reload's.
    while (due.length > 0) await sleep(1);
    window.endMs = performance.now();
    await askProbe(child, { phase: 'steady' });
    windows.push(window);
    await sleep(GAP_MS / 2);
  }
  clearInterval(pacer);
  while (samples.length + errors < scheduled - Math.ceil(WARM_UP_MS / periodMs) - 5 && performance.now() - startMs < runMs + 5000) await sleep(20);
  const { report: loop } = await askProbe<{ report: Record<string, LoopDelay> }>(child, { report: true });
  benchLoop.disable();
  measuring = false;
  for (const connection of connections) connection.close();
  await stopChild(child);

  const during = (sample: Sample): boolean =>
    windows.some((w) => sample.intendedMs <= w.endMs && sample.intendedMs + sample.latencyMs >= w.startMs);
  const reloadMs = windows.map((w) => Math.round(w.endMs - w.startMs));
  const result = {
    label: values.label,
    descriptors: DESCRIPTORS,
    rate: RATE,
    reloads: windows.length,
    reloadMs,
    duringReload: summary(samples.filter(during).map((s) => s.latencyMs)),
    steady: summary(samples.filter((s) => !during(s)).map((s) => s.latencyMs)),
    loopDuringReload: loop.reload,
    loopSteady: loop.steady,
    errors,
    errorKinds: Object.fromEntries(errorKinds),
    generatorLoopP99Ms: benchLoop.percentile(99) / 1e6,
  };
  const f = (n: number | undefined): string => (n === undefined ? '-' : n < 10 ? n.toFixed(1) : n.toFixed(0));
  process.stdout.write([
    `${result.label}: ${DESCRIPTORS} descriptors, ${RATE} req/s POST /v1/check, ${windows.length} SIGHUP reloads taking ${reloadMs.join(', ')} ms; ${errors} errors${errors === 0 ? '' : ` (${[...errorKinds].map(([kind, n]) => `${n} × ${kind}`).join(', ')})`}; generator loop p99 ${f(result.generatorLoopP99Ms)} ms`,
    '',
    `| | decisions | decision p50 | p99 | max | over ${ENVOY_TIMEOUT_MS} ms | event-loop delay p99 (worst window) | max |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    `| during reloads | ${result.duringReload.count} | ${f(result.duringReload.p50Ms)} ms | ${f(result.duringReload.p99Ms)} ms | ${f(result.duringReload.maxMs)} ms | ${result.duringReload.overEnvoyTimeout} | ${f(loop.reload?.worstWindowP99Ms)} ms | ${f(loop.reload?.maxMs)} ms |`,
    `| between reloads | ${result.steady.count} | ${f(result.steady.p50Ms)} ms | ${f(result.steady.p99Ms)} ms | ${f(result.steady.maxMs)} ms | ${result.steady.overEnvoyTimeout} | ${f(loop.steady?.worstWindowP99Ms)} ms | ${f(loop.steady?.maxMs)} ms |`,
    '',
    JSON.stringify(result),
    '',
  ].join('\n'));
}

await main().finally(stopAll);
