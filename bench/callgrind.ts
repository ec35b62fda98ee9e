// Instructions per request, counted by valgrind's callgrind: repeatable on a
// busy machine, where timings are not (on the shared 2-core box a load
// average of 5-10 moves req/s by ±30%, instruction counts by well under 1%).
//
// The server runs under `valgrind --tool=callgrind --instr-atstart=no` with
// V8's --single-threaded (compiler and GC on the main thread, so every
// instruction spent on the requests is counted, and no helper thread's
// background work lands by chance in the window). It is warmed up (JIT
// settled), then counting is switched on for exactly `count` requests on the
// same keep-alive connections (no connection churn: new connections
// deoptimize node's http code), switched off and dumped. The count covers
// user space (V8, node, libuv, llhttp, libc), not the kernel.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts, makeTempDir, removeTempDir, runCommand, sleep, waitForPort } from './procs.js';
import { AUTHZ_PATH, RLS_PATH, authzRequest, grpcFrame, rlsRequest } from './grpc-messages.js';
import { RawH2Session, grpcRequestHeaders } from './raw-h2.js';
import { RawConnection, getRequest, postRequest, sendCount } from './raw-http.js';
import { CLIENT_COUNT, checkBody, clientKey } from './workload.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export type CountedServer = 'ours' | 'bare';
/** HTTP POST /v1/check, GET /v1/auth; gRPC ShouldRateLimit (rls) and ext_authz Check (authz), ours only. */
export type CountedApi = 'check' | 'auth' | 'rls' | 'authz';
const isGrpc = (api: CountedApi): api is 'rls' | 'authz' => api === 'rls' || api === 'authz';

export interface CountOptions {
  readonly server: CountedServer;
  readonly api: CountedApi;
  /** Our build to run (default ROOT/dist). */
  readonly dist?: string;
  readonly warm: number;
  readonly count: number;
  readonly connections?: number;
  /** Extra V8 flags (e.g. --no-turbo-inlining for a per-function split). */
  readonly v8Flags?: readonly string[];
  /** Keep the callgrind dump and the JIT code names (--perf-basic-prof) for a per-function split. */
  readonly profile?: boolean;
  /** More flags for our server, e.g. ['--redis', 'redis://127.0.0.1:6379'] (a Redis the caller runs). */
  readonly serverArgs?: readonly string[];
}

export interface CountResult {
  readonly total: number;
  readonly perRequest: number;
  /**
   * Of perRequest, the garbage collector's share. It is lumpy (a window holds
   * one scavenge more or less, a major GC or none), so A/B compare
   * perRequest - gcPerRequest and treat GC separately, over long windows.
   */
  readonly gcPerRequest: number;
  readonly statuses: string;
  /** The callgrind dump (with `profile`). */
  readonly dump?: string;
  /** V8's perf map (with `profile`): JIT code address ranges and names. */
  readonly jitMap?: string;
}

/** The requests each API is measured with: one per api_key, as the bench workload. */
function requestsFor(api: 'check' | 'auth'): Buffer[] {
  return Array.from({ length: CLIENT_COUNT }, (_, i) => (api === 'auth'
    ? getRequest('/v1/auth/rating?q=1', [`X-Api-Key: ${clientKey(i)}`, 'User-Agent: bench', 'Accept: */*'], 'api.example')
    : postRequest('/v1/check', checkBody(clientKey(i)))));
}

export async function countInstructions(options: CountOptions): Promise<CountResult> {
  const [httpPort, grpcPort] = await freePorts(2);
  if (httpPort === undefined || grpcPort === undefined) throw new Error('no free ports');
  const tmp = makeTempDir('rl-callgrind-');
  const dist = options.dist ?? join(ROOT, 'dist');
  const serverArgs = options.server === 'bare'
    ? ['--import', 'tsx', join(ROOT, 'bench', 'servers', 'bare-fastify.ts'), '--port', String(httpPort)]
    : [join(dist, 'main.js'), 'serve', '--config', join(ROOT, 'bench', 'bench.yaml'), '--host', '127.0.0.1',
      '--http-port', String(httpPort), '--grpc-port', String(grpcPort), '--admin-port', '0', '--log-level', 'warn', ...(options.serverArgs ?? [])];
  const valgrind = spawn('valgrind', [
    '--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${join(tmp, 'cg.%p.out')}`,
    process.execPath, '--single-threaded', ...(options.profile === true ? ['--perf-basic-prof', '--no-logfile-per-isolate', `--logfile=${join(tmp, 'v8.log')}`] : []),
    ...(options.v8Flags ?? []), ...serverArgs,
  ], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => { output = (output + chunk.toString()).slice(-4000); };
  valgrind.stdout.on('data', keep);
  valgrind.stderr.on('data', keep);
  const pid = valgrind.pid;
  if (pid === undefined) throw new Error('valgrind did not start (is it installed?)');
  const control = async (...args: string[]): Promise<void> => {
    const result = await runCommand('callgrind_control', [...args, String(pid)]);
    if (result.code !== 0) throw new Error(`callgrind_control ${args.join(' ')}: ${result.stdout}${result.stderr}`);
  };
  const jitMapPath = `/tmp/perf-${pid}.map`;
  try {
    const exited = new Promise<never>((_resolve, reject) => {
      valgrind.once('exit', (code) => reject(new Error(`the server exited (code ${code}) before it listened`)));
    });
    exited.catch(() => undefined);
    await Promise.race([waitForPort(httpPort, 180_000), exited]);
    const connectionCount = options.connections ?? 4;
    let send: (count: number) => Promise<Map<number | string, number>>;
    let close: () => void;
    if (isGrpc(options.api)) {
      await waitForPort(grpcPort, 30_000);
      const api = options.api;
      const headers = grpcRequestHeaders(api === 'rls' ? RLS_PATH : AUTHZ_PATH, '127.0.0.1');
      const bodies = Array.from({ length: CLIENT_COUNT }, (_, i) => grpcFrame((api === 'rls' ? rlsRequest : authzRequest)(clientKey(i))));
      const sessions = await Promise.all(Array.from({ length: connectionCount }, () => RawH2Session.open(grpcPort)));
      send = (count) => sendGrpcCount(sessions, headers, bodies, count);
      close = () => { for (const session of sessions) session.close(); };
    } else {
      const requests = requestsFor(options.api);
      const connections = await Promise.all(Array.from({ length: connectionCount }, () => RawConnection.open(httpPort)));
      send = (count) => sendCount(connections, requests, count);
      close = () => { for (const connection of connections) connection.close(); };
    }
    await send(options.warm);
    await sleep(300);
    await control('--zero');
    await control('--instr=on');
    const statuses = await send(options.count);
    await control('--instr=off');
    await control('--dump');
    close();
    let file: string | undefined;
    for (let i = 0; i < 50 && file === undefined; i++) {
      await sleep(200);
      file = readdirSync(tmp).filter((name) => name.startsWith(`cg.${pid}.out.`)).sort().pop();
    }
    if (file === undefined) throw new Error(`no callgrind dump in ${tmp}`);
    const dump = readFileSync(join(tmp, file), 'utf8');
    const total = Number(/^totals:\s*(\d+)/m.exec(dump)?.[1] ?? Number.NaN);
    const jitMap = options.profile === true && existsSync(jitMapPath) ? readFileSync(jitMapPath, 'utf8') : '';
    return {
      total,
      perRequest: total / options.count,
      gcPerRequest: gcInstructions(parseDump(dump, jitMap)) / options.count,
      statuses: [...statuses].map(([status, n]) => `${status}×${n}`).join(' '),
      ...(options.profile === true ? { dump, jitMap } : {}),
    };
  } catch (error: unknown) {
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${output}`);
  } finally {
    valgrind.kill('SIGKILL');
    rmSync(jitMapPath, { force: true });
    removeTempDir(tmp);
  }
}

/**
 * Closed loop over HTTP/2 sessions, one call in flight on each, until `count`
 * calls were answered; resolves with the grpc-status values seen ('-' none).
 */
async function sendGrpcCount(sessions: readonly RawH2Session[], headers: Buffer, bodies: readonly Buffer[], count: number): Promise<Map<number | string, number>> {
  const statuses = new Map<number | string, number>();
  let next = 0;
  await Promise.all(sessions.map(async (session) => {
    while (next < count) {
      const body = bodies[next % bodies.length]!;
      next++;
      const status = await new Promise<string>((resolve, reject) => {
        const started = session.call(headers, body, (error, answer) => (error === undefined ? resolve(answer?.grpcStatus ?? '-') : reject(error)));
        if (started === undefined) reject(new Error('HTTP/2 session closed'));
      });
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  }));
  return statuses;
}

/** One function of a callgrind dump: its own instructions and what it spent in each callee. */
export interface FunctionCost {
  self: number;
  /** Callee name → inclusive instructions spent in calls from this function. */
  calls: Map<string, number>;
}

/**
 * Per-function costs of a callgrind dump, JIT code (which callgrind knows
 * only by address) named through V8's perf map. Functions with one name
 * (several code objects of one JS function) are merged.
 */
export function parseDump(dump: string, jitMap: string): Map<string, FunctionCost> {
  const jit: { start: number; end: number; name: string }[] = [];
  for (const line of jitMap.split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
    if (m !== null) jit.push({ start: parseInt(m[1]!, 16), end: parseInt(m[1]!, 16) + parseInt(m[2]!, 16), name: m[3]! });
  }
  const named = new Map<string, string>();
  const nameOf = (raw: string): string => {
    const address = /^0x([0-9a-f]+)$/.exec(raw);
    if (address === null) return raw;
    let name = named.get(raw);
    if (name === undefined) {
      name = raw;
      const at = parseInt(address[1]!, 16);
      // Code moves and addresses are reused: the latest entry that covers the address wins.
      for (let i = jit.length - 1; i >= 0; i--) {
        const entry = jit[i]!;
        if (at >= entry.start && at < entry.end) {
          name = entry.name;
          break;
        }
      }
      named.set(raw, name);
    }
    return name;
  };
  // Compressed names: "fn=(12) name" defines id 12, "fn=(12)" reuses it; cfn shares the id space.
  const ids = new Map<string, string>();
  const functions = new Map<string, FunctionCost>();
  const costOf = (name: string): FunctionCost => {
    let cost = functions.get(name);
    if (cost === undefined) {
      cost = { self: 0, calls: new Map() };
      functions.set(name, cost);
    }
    return cost;
  };
  let current = costOf('(none)');
  let callee: string | undefined;
  let inCall = false;
  for (const line of dump.split('\n')) {
    if (line.startsWith('fn=') || line.startsWith('cfn=')) {
      const m = /^c?fn=\((\d+)\)(?: (.*))?$/.exec(line);
      if (m === null) continue;
      if (m[2] !== undefined) ids.set(m[1]!, nameOf(m[2]));
      const name = ids.get(m[1]!) ?? m[1]!;
      if (line.startsWith('fn=')) {
        current = costOf(name);
        inCall = false;
      } else {
        callee = name;
      }
      continue;
    }
    if (line.startsWith('calls=')) {
      inCall = true; // the next cost line is the call's inclusive cost
      continue;
    }
    const m = /^(?:[+-]?\d+|\*) (\d+)$/.exec(line);
    if (m === null) continue;
    const ir = Number(m[1]);
    if (inCall && callee !== undefined) {
      current.calls.set(callee, (current.calls.get(callee) ?? 0) + ir);
      inCall = false;
    } else {
      current.self += ir;
    }
  }
  return functions;
}

/** Entry points of V8's garbage collector (scavenges, incremental and full marking, sweeping, their tasks). */
export const GC_ENTRY = /^v8::internal::(Heap::(CollectGarbage|CollectAllGarbage|FinalizeIncrementalMarking|PerformGarbageCollection)|MinorGCJob::|ScavengeJob::|IncrementalMarkingJob::|IncrementalMarking::|ScavengerCollector::|MarkCompactCollector::|MinorMarkCompactCollector::|Sweeper::|MemoryReducer::|ConcurrentMarking::|ArrayBufferSweeper::)/;

/**
 * Own instructions of every function, given to the class of the nearest
 * caller that `classify` names (a root), shared among callers in proportion
 * to what each spent in the function (as gprof propagates time). Functions
 * with no classified caller get `fallback`. A caller already on the path (a
 * cycle: callbacks, recursion) is left out of the weighting.
 */
export function attributeSelf<K extends string>(functions: ReadonlyMap<string, FunctionCost>, classify: (name: string) => K | undefined, fallback: K): Map<K, number> {
  const callers = new Map<string, [string, number][]>();
  for (const [caller, cost] of functions) {
    for (const [callee, ir] of cost.calls) {
      if (callee === caller || ir === 0) continue;
      let list = callers.get(callee);
      if (list === undefined) callers.set(callee, list = []);
      list.push([caller, ir]);
    }
  }
  type Distribution = Map<K, number>;
  const roots = new Map<string, K | undefined>();
  const rootOf = (name: string): K | undefined => {
    if (!roots.has(name)) roots.set(name, classify(name));
    return roots.get(name);
  };
  const distributions = new Map<string, Distribution>();
  const fallbackOnly: Distribution = new Map([[fallback, 1]]);
  const visiting = new Set<string>();
  const distributionOf = (name: string): Distribution => {
    const root = rootOf(name);
    if (root !== undefined) return new Map([[root, 1]]);
    const known = distributions.get(name);
    if (known !== undefined) return known;
    const list = callers.get(name);
    if (list === undefined) return fallbackOnly;
    visiting.add(name);
    const mixed: Distribution = new Map();
    let sum = 0;
    for (const [caller, ir] of list) {
      if (visiting.has(caller)) continue;
      sum += ir;
      for (const [callerClass, share] of distributionOf(caller)) mixed.set(callerClass, (mixed.get(callerClass) ?? 0) + share * ir);
    }
    visiting.delete(name);
    const result: Distribution = sum === 0 ? fallbackOnly : new Map([...mixed].map(([key, value]) => [key, value / sum]));
    distributions.set(name, result);
    return result;
  };
  const totals = new Map<K, number>();
  for (const [name, cost] of functions) {
    for (const [key, share] of distributionOf(name)) totals.set(key, (totals.get(key) ?? 0) + cost.self * share);
  }
  return totals;
}

/** Instructions spent in the garbage collector (its entry points and what they call). */
function gcInstructions(functions: ReadonlyMap<string, FunctionCost>): number {
  return attributeSelf(functions, (name) => (GC_ENTRY.test(name) ? 'gc' : undefined), 'other').get('gc') ?? 0;
}
