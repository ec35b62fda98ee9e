// One process of the paced load generator (load-rate.ts starts N of them):
// sends `count` requests at intended times t0 + i/rate whatever the answers
// (open loop), and measures each from its intended time, so a slow answer
// cannot delay the next sends and hide its own cost (coordinated omission).
// Over the IPC channel: the parent sends a PacedJob, we open the connections
// and answer 'ready'; it sends a PacedStart, we run and answer with a
// PacedWorkerResult, then exit.
import { percentile } from './load-result.js';
import { RawH2Session, grpcRequestHeaders } from './raw-h2.js';
import { RawConnection } from './raw-http.js';

export interface PacedJob {
  readonly port: number;
  /** '/v1/check' is HTTP/1.1; any other path is a gRPC method (HTTP/2). */
  readonly path: string;
  /** This worker's requests per second. */
  readonly rate: number;
  readonly count: number;
  /** Shift of this worker's schedule as a fraction of its period, so the workers interleave. */
  readonly phase: number;
  /** HTTP/1.1 keep-alive connections, or HTTP/2 sessions. */
  readonly connections: number;
  readonly timeoutMs: number;
  /** Every key's request bytes (HTTP: whole requests; gRPC: framed bodies), concatenated; request k ends at `ends[k]`. */
  readonly bytes: Uint8Array;
  readonly ends: Uint32Array;
  /** Request i sends request bytes (offset + i) % ends.length. */
  readonly offset: number;
}

export interface PacedStart {
  /** When a phase-0 worker's request 0 is due: ms on process.hrtime, the one clock all processes of the machine share (CLOCK_MONOTONIC). */
  readonly startMs: number;
}

export interface PacedWorkerResult {
  /** Latency from the intended send time, ms, of every answered request (unsorted). */
  readonly latencies: Float64Array;
  readonly answered: number;
  readonly errors: number;
  /** Why requests failed, e.g. { "timeout": 2, "http 500": 1 }. */
  readonly errorKinds: Record<string, number>;
  /** When the generator handed the request to a connection − its intended send time, ms: the generator's own lag (timer granularity, scheduling). */
  readonly lagP50Ms: number;
  readonly lagP99Ms: number;
  /** Requests that found every HTTP/1.1 connection busy and waited for one (their wait is in the latency). */
  readonly queued: number;
  /** p99 of the latency from the actual write, ms. */
  readonly fromWriteP99Ms: number;
  /** When the last answer (or failure) came, ms after PacedStart.startMs. */
  readonly lastDoneMs: number;
  /** CPU of this process during the run, % of one core. */
  readonly cpuPercent: number;
}

const WARM_UP_REQUESTS = 3000;
const WARM_UP_IN_FLIGHT = 8;

/** Calls `done` once: undefined for a success, else why it failed. */
type Done = (error: string | undefined) => void;

interface Transport {
  /** Writes the request now (true) or, on HTTP/1.1 with every connection busy, queues it (FIFO, false); `onWrite` runs at the write. */
  dispatch(request: Buffer, intended: number, onWrite: () => void, done: Done): boolean;
  /** Fails as 'timeout' whatever was due before `cutoff` (performance.now() ms) and is unanswered. */
  expire(cutoff: number): void;
  close(): void;
}

interface Pending {
  readonly request: Buffer;
  readonly intended: number;
  readonly onWrite: () => void;
  readonly done: Done;
}

/** HTTP/1.1: keep-alive connections opened up front, one request in flight each; a due request finding none free waits in a FIFO. */
async function httpTransport(job: PacedJob): Promise<Transport> {
  const idle = await Promise.all(Array.from({ length: job.connections }, () => RawConnection.open(job.port)));
  const busy = new Map<RawConnection, Pending>();
  let waiting: Pending[] = [];
  let waitingHead = 0;
  let closed = false;

  const write = (connection: RawConnection, pending: Pending): void => {
    busy.set(connection, pending);
    connection.send(pending.request).then(({ status }) => {
      if (busy.get(connection) !== pending) return;
      release(connection);
      pending.done(status === 200 || status === 429 ? undefined : `http ${status}`);
    }, (error: unknown) => {
      if (busy.get(connection) !== pending) return;
      replace(connection);
      pending.done(error instanceof Error ? error.message : String(error));
    });
    pending.onWrite();
  };
  const release = (connection: RawConnection): void => {
    busy.delete(connection);
    const next = waiting[waitingHead];
    if (next === undefined) {
      idle.push(connection);
      return;
    }
    waitingHead++;
    if (waitingHead === waiting.length) {
      waiting = [];
      waitingHead = 0;
    }
    write(connection, next);
  };
  // A connection that failed or holds a timed-out request is closed and replaced, so the pool keeps its size.
  const replace = (connection: RawConnection): void => {
    busy.delete(connection);
    connection.close();
    if (closed) return;
    RawConnection.open(job.port).then((fresh) => {
      if (closed) fresh.close();
      else release(fresh);
    }, () => undefined);
  };
  return {
    dispatch(request, intended, onWrite, done) {
      const pending = { request, intended, onWrite, done };
      const connection = idle.pop();
      if (connection === undefined) {
        waiting.push(pending);
        return false;
      }
      write(connection, pending);
      return true;
    },
    expire(cutoff) {
      for (let next = waiting[waitingHead]; next !== undefined && next.intended < cutoff; next = waiting[++waitingHead]) next.done('timeout');
      for (const [connection, pending] of busy) {
        if (pending.intended >= cutoff) continue;
        replace(connection);
        pending.done('timeout');
      }
    },
    close() {
      closed = true;
      for (const connection of [...idle, ...busy.keys()]) connection.close();
    },
  };
}

interface GrpcCall {
  readonly session: RawH2Session;
  streamId: number;
  readonly intended: number;
  readonly done: Done;
}

/** gRPC: HTTP/2 sessions (raw-h2.ts) taken round-robin, one stream per request; success = :status 200 and grpc-status 0. */
async function grpcTransport(job: PacedJob): Promise<Transport> {
  const sessions = await Promise.all(Array.from({ length: job.connections }, () => RawH2Session.open(job.port)));
  const headers = grpcRequestHeaders(job.path, `127.0.0.1:${job.port}`);
  const inFlight = new Set<GrpcCall>();
  let turn = 0;
  let closed = false;
  // A session that closed is replaced, so the pool keeps its size.
  const replace = (slot: number): void => {
    RawH2Session.open(job.port).then((fresh) => {
      if (closed) fresh.close();
      else sessions[slot] = fresh;
    }, () => undefined);
  };
  return {
    dispatch(request, intended, onWrite, done) {
      const slot = turn++ % sessions.length;
      const session = sessions[slot];
      if (session === undefined) throw new Error('no HTTP/2 session');
      const call: GrpcCall = { session, streamId: 0, intended, done };
      const streamId = session.call(headers, request, (error, answer) => {
        if (!inFlight.delete(call)) return;
        if (error !== undefined) done(error.message);
        else if (answer?.status !== 200) done(`http ${answer?.status}`);
        else done(answer.grpcStatus === '0' ? undefined : `grpc-status ${answer.grpcStatus ?? 'missing'}`);
      });
      if (streamId === undefined) {
        replace(slot);
        done('session closed');
        return true;
      }
      call.streamId = streamId;
      inFlight.add(call);
      onWrite();
      return true;
    },
    expire(cutoff) {
      for (const call of inFlight) {
        if (call.intended >= cutoff) continue;
        inFlight.delete(call);
        call.session.cancel(call.streamId);
        call.done('timeout');
      }
    },
    close() {
      closed = true;
      for (const session of sessions) session.close();
    },
  };
}

/** Waits for the next message from the parent. */
function nextMessage<T>(): Promise<T> {
  return new Promise((resolve) => process.once('message', (message) => resolve(message as T)));
}

function requestsOf(job: PacedJob): Buffer[] {
  const bytes = Buffer.from(job.bytes.buffer, job.bytes.byteOffset, job.bytes.byteLength);
  return Array.from(job.ends, (end, k) => bytes.subarray(k === 0 ? 0 : job.ends[k - 1], end));
}

/**
 * Closed loop, `inFlight` at a time, before the clock starts: a fresh process
 * runs its client code in the interpreter at first, and the stalls while V8
 * compiles it would be charged to the server.
 */
async function warmUp(transport: Transport, requests: readonly Buffer[], count: number, inFlight: number): Promise<void> {
  let sent = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (sent < count) {
      const request = requests[sent++ % requests.length] ?? Buffer.alloc(0);
      await new Promise<void>((resolve) => transport.dispatch(request, performance.now(), () => undefined, () => resolve()));
    }
  }));
}

async function run(job: PacedJob, transport: Transport, requests: readonly Buffer[], start: PacedStart): Promise<PacedWorkerResult> {
  const periodMs = 1000 / job.rate;
  // The schedule runs on performance.now(), which counts from this process's own origin.
  const startedAt = start.startMs - (Number(process.hrtime.bigint()) / 1e6 - performance.now());
  const t0 = startedAt + job.phase * periodMs;
  const latencies = new Float64Array(job.count);
  const lags = new Float64Array(job.count);
  const fromWrite = new Float64Array(job.count);
  const errorKinds: Record<string, number> = {};
  let answered = 0;
  let settled = 0;
  let next = 0;
  let lastDone = 0;
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();

  let stopped = false;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => {
    finish = () => {
      stopped = true;
      resolve();
    };
  });

  const sendOne = (i: number, now: number): void => {
    const intended = t0 + i * periodMs;
    let written = 0;
    lags[i] = now - intended;
    const writtenNow = transport.dispatch(requests[(job.offset + i) % requests.length] ?? Buffer.alloc(0), intended, () => {
      written = performance.now();
    }, (error) => {
      const at = performance.now();
      lastDone = at;
      if (error === undefined) {
        latencies[answered] = at - intended;
        fromWrite[answered] = at - written;
        answered++;
      } else {
        errorKinds[error] = (errorKinds[error] ?? 0) + 1;
      }
      if (++settled === job.count) finish();
      pump();
    });
    if (!writtenNow) queued++;
  };
  // Every wake-up sends whatever has come due: the timer's (libuv counts whole
  // milliseconds, so it fires ~1 ms after it is set at the soonest) and, at
  // higher rates far more often, an answer's.
  const pump = (): void => {
    if (stopped) return;
    const now = performance.now();
    while (next < job.count && t0 + next * periodMs <= now) sendOne(next++, now);
    if (next < job.count && timer === undefined) {
      timer = setTimeout(() => {
        timer = undefined;
        pump();
      }, t0 + next * periodMs - now);
    }
  };
  const sweep = setInterval(() => transport.expire(performance.now() - job.timeoutMs), Math.min(50, job.timeoutMs / 4));
  // The run is bounded: whatever is unanswered this long after the last intended send counts as failed.
  const deadline = setTimeout(finish, Math.max(0, t0 + job.count * periodMs + job.timeoutMs * 2 - performance.now()));
  pump();
  await finished;
  clearTimeout(deadline);
  clearInterval(sweep);
  clearTimeout(timer);
  const cpu = process.cpuUsage(cpu0);
  const wallMs = performance.now() - wall0;
  const unsettled = job.count - settled;
  if (unsettled > 0) errorKinds['unanswered at the deadline'] = unsettled;

  const sent = lags.subarray(0, next).sort();
  const byWrite = fromWrite.subarray(0, answered).sort();
  return {
    latencies: latencies.slice(0, answered),
    answered,
    errors: job.count - answered,
    errorKinds,
    lagP50Ms: percentile(sent, 50),
    lagP99Ms: percentile(sent, 99),
    queued,
    fromWriteP99Ms: percentile(byWrite, 99),
    lastDoneMs: lastDone - startedAt,
    cpuPercent: (100 * (cpu.user + cpu.system)) / 1000 / wallMs,
  };
}

const job = await nextMessage<PacedJob>();
const transport = await (job.path === '/v1/check' ? httpTransport(job) : grpcTransport(job));
const requests = requestsOf(job);
await warmUp(transport, requests, WARM_UP_REQUESTS, WARM_UP_IN_FLIGHT);
process.send?.('ready');
const result = await run(job, transport, requests, await nextMessage<PacedStart>());
transport.close();
process.send?.(result, () => process.disconnect());
