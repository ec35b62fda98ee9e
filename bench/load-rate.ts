// Latency at a constant rate: h2load with --rps (requests per second per
// client), HTTP/1.1 for POST /v1/check (--h1, one request in flight per
// connection) and HTTP/2 for gRPC, every request's latency from h2load's
// per-request log (microseconds). The rate is held by the generator whatever
// the answers: unlike a saturating run, this is what a proxy in front of a
// server at 50% or 90% of its capacity sees.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { grpcFrame } from './grpc-messages.js';
import { percentile } from './load-result.js';
import { runCommand } from './procs.js';
import { startRotatingBodies } from './rotating-body.js';
import { checkBody } from './workload.js';

/** h2load processes; HTTP/1.1 connections (one request each in flight) or HTTP/2 connections × streams per process. */
const PROCS = 2;
const HTTP_CONNECTIONS = 16;
const GRPC_CONNECTIONS = 2;
const GRPC_STREAMS = 16;

export interface RateLoadOptions {
  readonly port: number;
  /** '/v1/check' (HTTP/1.1, JSON) or a gRPC method path (unframed protobuf from `encode`). */
  readonly path: string;
  readonly encode?: (key: string) => Buffer;
  /** Total requests per second asked of the server. */
  readonly rate: number;
  readonly seconds: number;
  readonly tmpDir: string;
}

export interface RateLoadResult {
  readonly generator: string;
  readonly askedRate: number;
  /** Responses per second that came back. */
  readonly rate: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Requests that failed, timed out, or got an HTTP status other than 200/429. */
  readonly errors: number;
}

export async function rateLoad(options: RateLoadOptions): Promise<RateLoadResult> {
  const http = options.encode === undefined;
  const clientsPerProc = http ? HTTP_CONNECTIONS : GRPC_CONNECTIONS;
  const perClient = Math.max(1, Math.round(options.rate / (PROCS * clientsPerProc)));
  const name = `rate-${options.path.split('/').pop() ?? 'x'}-${Date.now()}`;
  const encode = options.encode;
  const bodies = startRotatingBodies(options.tmpDir, name, PROCS, 'spread',
    encode === undefined ? (key) => Buffer.from(checkBody(key)) : (key) => grpcFrame(encode(key)));
  const logs = bodies.paths.map((_, i) => join(options.tmpDir, `${name}-${i}.log`));
  try {
    const runs = await Promise.all(bodies.paths.map((data, i) => runCommand('h2load', [
      ...(http ? ['--h1', '-c', String(HTTP_CONNECTIONS), '-m', '1'] : ['-c', String(GRPC_CONNECTIONS), '-m', String(GRPC_STREAMS)]),
      '-t', '1', '--rps', String(perClient),
      '-D', `${Math.round(options.seconds * 1000)}ms`,
      '--log-file', logs[i] ?? '',
      '-d', data,
      ...(http ? ['-H', 'content-type: application/json'] : ['-H', 'content-type: application/grpc', '-H', 'te: trailers']),
      `http://127.0.0.1:${options.port}${options.path}`,
    ], (options.seconds + 30) * 1000)));
    const latencies: number[] = [];
    let errors = 0;
    for (const log of logs) {
      for (const line of readFileSync(log, 'utf8').split('\n')) {
        if (line === '') continue;
        // h2load's log: start time (µs), status, duration (µs).
        const [, status, micros] = line.split('\t');
        if (status !== '200' && status !== '429') errors++;
        const value = Number(micros);
        if (Number.isFinite(value)) latencies.push(value / 1000);
      }
    }
    for (const run of runs) {
      const failed = /(\d+) failed, (\d+) errored, (\d+) timeout/.exec(run.stdout);
      if (failed === null) throw new Error(`cannot parse h2load output:\n${run.stdout}${run.stderr}`);
      errors += Number(failed[1]) + Number(failed[3]);
    }
    latencies.sort((a, b) => a - b);
    return {
      generator: http
        ? `h2load --h1 ${PROCS}x(c=${HTTP_CONNECTIONS}) --rps ${perClient}`
        : `h2load ${PROCS}x(c=${GRPC_CONNECTIONS},m=${GRPC_STREAMS}) --rps ${perClient}`,
      askedRate: perClient * PROCS * clientsPerProc,
      rate: latencies.length / options.seconds,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      maxMs: latencies.at(-1) ?? Number.NaN,
      errors,
    };
  } finally {
    bodies.stop();
    for (const path of [...bodies.paths, ...logs]) rmSync(path, { force: true });
  }
}
