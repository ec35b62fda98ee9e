// gRPC load: h2load processes posting gRPC-framed request files, or, where
// h2load is missing, a grpc-js client with bounded concurrency in a separate
// process (bench/grpc-client-load.ts; tops out near 6k calls/s, so rows made
// with it measure the client, not the server). h2load sees only HTTP status
// 200 for a gRPC error, so callers must check grpc-status another way
// (probe.ts and the server's decision counters).
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { percentile, type LoadResult } from './load-result.js';
import { runCommand, spawnChild } from './procs.js';
import { startRotatingBodies } from './rotating-body.js';
import type { RoundRobinShape } from './workload.js';
import { grpcFrame } from './grpc-messages.js';

export interface GrpcLoadOptions {
  readonly port: number;
  /** e.g. RLS_PATH. */
  readonly path: string;
  /** Unframed protobuf request for one key. */
  readonly encode: (key: string) => Buffer;
  readonly shape: RoundRobinShape;
  readonly seconds: number;
  readonly tmpDir: string;
  /** Record per-request latencies (the measured run; not the warm-up). */
  readonly measure: boolean;
  /** Called right before the load processes start. */
  readonly onStart?: () => void;
}

/** h2load processes, connections each, streams per connection. 2x2x16 = 64 in flight. */
export const H2LOAD_PROCS = 2;
export const H2LOAD_CONNECTIONS = 2;
export const H2LOAD_STREAMS = 16;
/** grpc-js fallback: calls in flight. */
export const GRPCJS_CONCURRENCY = 64;

let h2loadPresent: boolean | undefined;

export async function hasH2load(): Promise<boolean> {
  if (h2loadPresent === undefined) {
    const result = await runCommand('h2load', ['--version']);
    h2loadPresent = result.code === 0;
  }
  return h2loadPresent;
}

export async function grpcLoad(options: GrpcLoadOptions): Promise<LoadResult> {
  return (await hasH2load()) ? h2loadRun(options) : grpcjsRun(options);
}

interface H2loadCounts {
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  s2xx: number;
  s3xx: number;
  s4xx: number;
  s5xx: number;
}

function parseH2load(stdout: string): H2loadCounts {
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(stdout);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
  if (req === null || codes === null) throw new Error(`cannot parse h2load output:\n${stdout}`);
  const n = (m: RegExpExecArray, i: number): number => Number(m[i]);
  return {
    done: n(req, 3), succeeded: n(req, 4), failed: n(req, 5), errored: n(req, 6), timeout: n(req, 7),
    s2xx: n(codes, 1), s3xx: n(codes, 2), s4xx: n(codes, 3), s5xx: n(codes, 4),
  };
}

async function h2loadRun(options: GrpcLoadOptions): Promise<LoadResult> {
  const name = `h2-${options.path.split('/').pop() ?? 'x'}-${options.shape}-${Date.now()}`;
  const bodies = startRotatingBodies(options.tmpDir, name, H2LOAD_PROCS, options.shape, (key) => grpcFrame(options.encode(key)));
  const logs = bodies.paths.map((_, i) => join(options.tmpDir, `${name}-${i}.log`));
  try {
    const url = `http://127.0.0.1:${options.port}${options.path}`;
    options.onStart?.();
    const runs = await Promise.all(bodies.paths.map((data, i) => runCommand('h2load', [
      '-c', String(H2LOAD_CONNECTIONS), '-m', String(H2LOAD_STREAMS), '-t', '1',
      '-D', `${Math.round(options.seconds * 1000)}ms`,
      ...(options.measure ? ['--log-file', logs[i] ?? ''] : []),
      '-d', data,
      '-H', 'content-type: application/grpc', '-H', 'te: trailers',
      url,
    ], (options.seconds + 30) * 1000)));
    const counts = runs.map((run) => parseH2load(run.stdout));
    const sum = (f: (c: H2loadCounts) => number): number => counts.reduce((a, c) => a + f(c), 0);
    let p50 = Number.NaN;
    let p99 = Number.NaN;
    if (options.measure) {
      const latencies: number[] = [];
      for (const log of logs) {
        for (const line of readFileSync(log, 'utf8').split('\n')) {
          const micros = Number(line.split('\t')[2]);
          if (line !== '' && Number.isFinite(micros)) latencies.push(micros / 1000);
        }
      }
      latencies.sort((a, b) => a - b);
      p50 = percentile(latencies, 50);
      p99 = percentile(latencies, 99);
    }
    const done = sum((c) => c.done);
    return {
      generator: `h2load ${H2LOAD_PROCS}x(c=${H2LOAD_CONNECTIONS},m=${H2LOAD_STREAMS})`,
      responses: done,
      rate: done / options.seconds,
      p50Ms: p50,
      p99Ms: p99,
      // Streams whose headers arrived but not the end are in the status counts, not in done: clip at 0.
      errors: sum((c) => Math.max(0, c.failed, c.done - c.s2xx)),
      statuses: { '2xx': sum((c) => c.s2xx), '3xx': sum((c) => c.s3xx), '4xx': sum((c) => c.s4xx), '5xx': sum((c) => c.s5xx) },
      seconds: options.seconds,
    };
  } finally {
    bodies.stop();
    for (const path of [...bodies.paths, ...logs]) rmSync(path, { force: true });
  }
}

/** Result line printed by grpc-client-load.ts. */
interface ClientLoadOutput {
  calls: number;
  errors: number;
  byCode: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
}

async function grpcjsRun(options: GrpcLoadOptions): Promise<LoadResult> {
  // The fallback builds the same requests itself, in its own process.
  const script = new URL('./grpc-client-load.ts', import.meta.url).pathname;
  options.onStart?.();
  const child = spawnChild('grpc-client-load', process.execPath, [
    '--import', 'tsx', script,
    '--port', String(options.port), '--path', options.path, '--shape', options.shape,
    '--seconds', String(options.seconds), '--concurrency', String(GRPCJS_CONCURRENCY),
  ]);
  const code = await new Promise<number | null>((resolve) => child.proc.once('exit', (c) => resolve(c)));
  const line = child.output().trim().split('\n').pop() ?? '';
  if (code !== 0) throw new Error(`grpc-js load client failed (${String(code)}):\n${child.output()}`);
  const out = JSON.parse(line) as ClientLoadOutput;
  return {
    generator: `grpc-js client (1 proc, ${GRPCJS_CONCURRENCY} in flight)`,
    responses: out.calls,
    rate: out.calls / options.seconds,
    p50Ms: out.p50Ms,
    p99Ms: out.p99Ms,
    errors: out.errors,
    statuses: out.byCode,
    seconds: options.seconds,
  };
}
