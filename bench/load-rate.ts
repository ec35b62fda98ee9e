// Latency at a constant rate: our own open-loop generator, WORKERS processes
// of paced-worker.ts, HTTP/1.1 for POST /v1/check (raw-http.ts: a pool of
// keep-alive connections, one request in flight each) and HTTP/2 for gRPC
// (raw-h2.ts: one stream per request). Each request has an intended send time
// on an even schedule and its latency counts from then, so a server that falls
// behind is charged for the wait. Not h2load --rps: it sends in bunches about
// every 4 ms, and with 16 streams per connection a bunch queues in the server,
// so even a bare server showed a p99 of several ms "at 50% load"
// (bench/README.md).
import { fileURLToPath } from 'node:url';
import { percentile } from './load-result.js';
import { spawnChild, stopChild, type Child } from './procs.js';
import type { PacedJob, PacedStart, PacedWorkerResult } from './paced-worker.js';
import { postRequest } from './raw-http.js';
import { grpcFrame } from './grpc-messages.js';
import { CLIENT_COUNT, checkBody, clientKey } from './workload.js';

/** Generator processes; HTTP/1.1 connections or HTTP/2 sessions per process. */
const WORKERS = 2;
/** Per process; a due request finding every one busy waits (counted as `queued`; more connections did not help: the server was behind). */
const HTTP_CONNECTIONS = 32;
const GRPC_SESSIONS = 2;
/** A request unanswered this long after its intended send time is an error. */
const REQUEST_TIMEOUT_MS = 2000;
/** The clock starts this long after every worker is ready (connections open, warmed up), so each has its start message before its first request is due. */
const START_LEAD_MS = 50;
const READY_TIMEOUT_MS = 20000;
/** Keys in flight at once differ between workers (as rotating-body.ts does for h2load). */
const WORKER_KEY_STRIDE = 5003;

export interface RateLoadOptions {
  readonly port: number;
  /** '/v1/check' (HTTP/1.1, JSON) or a gRPC method path (unframed protobuf from `encode`). */
  readonly path: string;
  readonly encode?: (key: string) => Buffer;
  /** The keys the requests cycle through (default: the spread workload's client keys; workload.ts). */
  readonly keys?: readonly string[];
  /** Total requests per second asked of the server. */
  readonly rate: number;
  readonly seconds: number;
  /** Called just before the first measured request is due (after the workers' warm-up), e.g. to read counters. */
  readonly onStart?: () => void;
}

interface GeneratorProcess {
  /** Hand-over to a connection − intended send time, ms: how far the generator itself fell behind its schedule. */
  readonly lagP50Ms: number;
  readonly lagP99Ms: number;
  /** Requests that waited for a free HTTP/1.1 connection (the server held them all). */
  readonly queued: number;
  /** % of one core during the run. */
  readonly cpuPercent: number;
}

export interface RateLoadResult {
  readonly generator: string;
  readonly askedRate: number;
  /** Good answers (HTTP 200/429, gRPC status 0) per second, from the first intended send to the last answer. */
  readonly rate: number;
  /** Good answers, in all. */
  readonly answered: number;
  /** From each request's intended send time. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Requests that failed, timed out (REQUEST_TIMEOUT_MS), or got an HTTP status other than 200/429 or a gRPC status other than 0. */
  readonly errors: number;
  readonly errorKinds: Record<string, number>;
  /** p99 of the latency from the actual write, ms (what the server and loopback alone took): the higher of the processes' figures. */
  readonly fromWriteP99Ms: number;
  readonly workers: readonly GeneratorProcess[];
}

/** Every key's request bytes in key order, concatenated, and where each ends. */
function requestBytes(options: RateLoadOptions): { bytes: Buffer; ends: Uint32Array } {
  const { encode } = options;
  const keys = options.keys ?? Array.from({ length: CLIENT_COUNT }, (_, i) => clientKey(i));
  const requests = keys.map((key) => (encode === undefined ? postRequest(options.path, checkBody(key)) : grpcFrame(encode(key))));
  const ends = new Uint32Array(requests.length);
  let end = 0;
  requests.forEach((request, i) => {
    end += request.length;
    ends[i] = end;
  });
  return { bytes: Buffer.concat(requests), ends };
}

function nextMessage<T>(child: Child, what: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${what}: no answer from ${child.name} in ${timeoutMs} ms\n${child.output()}`)), timeoutMs);
    const onMessage = (message: unknown): void => {
      cleanup();
      resolve(message as T);
    };
    const onExit = (code: number | null): void => fail(new Error(`${what}: ${child.name} exited (${String(code)})\n${child.output()}`));
    const fail = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.proc.off('message', onMessage);
      child.proc.off('exit', onExit);
    };
    child.proc.once('message', onMessage);
    child.proc.once('exit', onExit);
  });
}

export async function rateLoad(options: RateLoadOptions): Promise<RateLoadResult> {
  const http = options.encode === undefined;
  const rateEach = options.rate / WORKERS;
  const count = Math.max(1, Math.round(rateEach * options.seconds));
  const { bytes, ends } = requestBytes(options);
  const script = fileURLToPath(new URL('./paced-worker.ts', import.meta.url));
  const children = Array.from({ length: WORKERS }, (_, w) => spawnChild(`paced-worker-${w}`, process.execPath, ['--import', 'tsx', script], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    serialization: 'advanced',
  }));
  try {
    const ready = children.map((child) => nextMessage<string>(child, 'ready', READY_TIMEOUT_MS));
    children.forEach((child, w) => {
      const job: PacedJob = {
        port: options.port, path: options.path, rate: rateEach, count, phase: w / WORKERS,
        connections: http ? HTTP_CONNECTIONS : GRPC_SESSIONS, timeoutMs: REQUEST_TIMEOUT_MS,
        bytes, ends, offset: w * WORKER_KEY_STRIDE,
      };
      child.proc.send(job);
    });
    await Promise.all(ready);
    const startMs = Number(process.hrtime.bigint()) / 1e6 + START_LEAD_MS;
    const results = children.map((child) => nextMessage<PacedWorkerResult>(child, 'result', START_LEAD_MS + options.seconds * 1000 + REQUEST_TIMEOUT_MS * 2 + READY_TIMEOUT_MS));
    const start: PacedStart = { startMs };
    options.onStart?.();
    for (const child of children) child.proc.send(start);
    const workers = await Promise.all(results);

    const latencies = new Float64Array(workers.reduce((n, r) => n + r.answered, 0));
    let at = 0;
    for (const r of workers) {
      latencies.set(r.latencies, at);
      at += r.latencies.length;
    }
    latencies.sort();
    const errorKinds: Record<string, number> = {};
    for (const r of workers) for (const [kind, n] of Object.entries(r.errorKinds)) errorKinds[kind] = (errorKinds[kind] ?? 0) + n;
    const spanMs = Math.max(...workers.map((r) => r.lastDoneMs));
    return {
      generator: `paced ${WORKERS}x(${http ? `http1 c=${HTTP_CONNECTIONS}` : `h2 c=${GRPC_SESSIONS}`})`,
      askedRate: (count * WORKERS) / options.seconds,
      rate: latencies.length / Math.max(options.seconds, spanMs / 1000),
      answered: latencies.length,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      maxMs: latencies.at(-1) ?? Number.NaN,
      errors: workers.reduce((n, r) => n + r.errors, 0),
      errorKinds,
      fromWriteP99Ms: Math.max(...workers.map((r) => r.fromWriteP99Ms)),
      workers: workers.map((r) => ({ lagP50Ms: r.lagP50Ms, lagP99Ms: r.lagP99Ms, queued: r.queued, cpuPercent: r.cpuPercent })),
    };
  } finally {
    await Promise.all(children.map((child) => stopChild(child)));
  }
}
