/**
 * A userspace TCP delay proxy on loopback: this kernel has no netem (NOTES.md),
 * so WAN latency and partitions between the lab's regions come from here.
 *
 * Every chunk read from one side is written to the other side `delayMs` later,
 * in both directions, in the order it was read (one FIFO per direction with
 * due times; a due time never precedes the previous chunk's, so lowering the
 * delay cannot reorder bytes). A direction holding `maxQueuedBytes` stops
 * reading its source (a full TCP window) until it drains below half of that;
 * a destination that answers `write() === false` is waited for ('drain').
 *
 * Partition model:
 * - `cut()`: nothing is forwarded any more, in either direction, on existing
 *   connections; they stay open, so clients see a hang (no reset, no FIN). New
 *   connections are accepted (the proxy's kernel completes the handshake, so a
 *   client's *connect* timeout never fires: only its command or ready-check
 *   deadline does) and black-holed: the target never hears of them.
 * - `heal()` (default, `reset`): every connection that lived through the cut
 *   is reset (RST to the client, the target's side closed) and what it held is
 *   discarded; new connections forward normally. This models a partition that
 *   outlived the connections' state, which is what a client with per-command
 *   deadlines meets after a multi-second WAN cut behind NAT/load balancers, and
 *   it makes recovery deterministic: the client reconnects and its next command
 *   answers in 2 × delay.
 * - `heal({ resume: true })`: the TCP-retransmission model of a short blip:
 *   held bytes are delivered (no earlier than heal + delay), connections
 *   accepted during the cut are connected to the target now. Requests a client
 *   gave up on are then executed late — the case that strands tokens.
 *
 * Known simplifications: the TCP handshake itself is not delayed (a new
 * connection costs 0 RTT instead of 1); a reset (error) on one side reaches the
 * other side after `delayMs`, an orderly FIN is queued like data.
 */
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import type { Teardown } from './redis.js';

const LOOPBACK = '127.0.0.1';
const DEFAULT_DELAY_MS = 60;
const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024;
const LISTEN_TIMEOUT_MS = 5_000;

export interface DelayProxyOptions {
  /** Closes the proxy on test teardown. */
  t?: Teardown;
  /** Where to forward. */
  target: { host?: string; port: number };
  /** One-way delay applied to every chunk, each direction (default 60 ms). */
  delayMs?: number;
  /** Port to listen on (default: a free one). */
  port?: number;
  /** Listen address (default 127.0.0.1). */
  host?: string;
  /**
   * Local address of the connections to the target, e.g. '127.0.0.11': lets
   * the target (CLIENT LIST) tell which proxy, hence which region, a client
   * came through. Any 127.x.y.z works on Linux loopback; redis-server then
   * needs `--protected-mode no` (it only trusts 127.0.0.1 otherwise).
   */
  sourceAddress?: string;
  /** Cap on bytes queued per connection and direction (default 1 MiB); above it the source is paused. */
  maxQueuedBytes?: number;
  /** A name for error messages. */
  name?: string;
}

export interface HealOptions {
  /** Deliver held bytes instead of resetting the connections that lived through the cut. */
  resume?: boolean;
}

export interface DelayProxyStats {
  /** Connections accepted since start. */
  connections: number;
  /** Connections open now. */
  open: number;
  /** Bytes written to the target / to the clients. */
  bytesToTarget: number;
  bytesToClient: number;
  /** Bytes read but not yet written (both directions, every connection). */
  bytesQueued: number;
  /** Bytes thrown away: held when a connection was reset or closed. */
  bytesDiscarded: number;
  /** Connections reset by heal() (default mode). */
  resets: number;
}

export interface DelayProxy {
  readonly host: string;
  readonly port: number;
  /** "host:port" to give clients. */
  readonly address: string;
  readonly target: { host: string; port: number };
  readonly delayMs: number;
  /** Whether the proxy is cut (partitioned). */
  readonly isCut: boolean;
  cut(): void;
  heal(options?: HealOptions): void;
  /** Applies to chunks read from now on (order is kept even when the delay drops). */
  setDelay(ms: number): void;
  stats(): DelayProxyStats;
  /** Destroys every connection and closes the listener; idempotent. */
  close(): Promise<void>;
}

interface Item {
  /** `null` = the source ended (FIN). */
  chunk: Buffer | null;
  due: number;
}

interface ProxyState {
  delayMs: number;
  isCut: boolean;
  maxQueuedBytes: number;
  stats: DelayProxyStats;
}

/** One direction of one connection: a FIFO of chunks with due times. */
class DelayedPipe {
  private readonly queue: Item[] = [];
  private head = 0;
  private queuedBytes = 0;
  private lastDue = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingDrain = false;
  private sourcePaused = false;
  private done = false;
  dest: Socket | undefined;

  constructor(
    private readonly state: ProxyState,
    private readonly source: Socket,
    private readonly direction: 'bytesToTarget' | 'bytesToClient',
  ) {}

  get pending(): number {
    return this.queuedBytes;
  }

  push(chunk: Buffer | null): void {
    if (this.done) return;
    const due = Math.max(performance.now() + this.state.delayMs, this.lastDue);
    this.lastDue = due;
    this.queue.push({ chunk, due });
    if (chunk !== null) {
      this.queuedBytes += chunk.length;
      this.state.stats.bytesQueued += chunk.length;
      if (this.queuedBytes >= this.state.maxQueuedBytes && !this.sourcePaused) {
        this.sourcePaused = true;
        this.source.pause();
      }
    }
    this.schedule();
  }

  /** After a resumed heal: nothing held is delivered before `notBefore`. */
  restamp(notBefore: number): void {
    for (let i = this.head; i < this.queue.length; i++) {
      const item = this.queue[i]!;
      item.due = Math.max(item.due, notBefore);
    }
    this.lastDue = Math.max(this.lastDue, notBefore);
  }

  schedule(): void {
    if (this.done || this.timer !== undefined || this.waitingDrain || this.state.isCut || this.dest === undefined) return;
    const next = this.queue[this.head];
    if (next === undefined) return;
    const wait = next.due - performance.now();
    // Timers may fire early by the loop's cached-time staleness: flush() re-checks.
    this.timer = setTimeout(() => this.flush(), Math.max(0, Math.ceil(wait)));
  }

  private flush(): void {
    this.timer = undefined;
    const dest = this.dest;
    if (this.done || this.state.isCut || dest === undefined) return;
    const now = performance.now();
    while (!this.waitingDrain) {
      const item = this.queue[this.head];
      if (item === undefined || item.due > now) break;
      this.queue[this.head] = undefined as unknown as Item;
      this.head++;
      if (item.chunk === null) {
        dest.end();
        this.done = true;
        break;
      }
      this.queuedBytes -= item.chunk.length;
      this.state.stats.bytesQueued -= item.chunk.length;
      this.state.stats[this.direction] += item.chunk.length;
      if (!dest.write(item.chunk)) {
        this.waitingDrain = true;
        dest.once('drain', () => {
          this.waitingDrain = false;
          this.schedule();
        });
      }
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (this.sourcePaused && this.queuedBytes < this.state.maxQueuedBytes / 2) {
      this.sourcePaused = false;
      this.source.resume();
    }
    this.schedule();
  }

  /** Stops for good, discarding what is held; returns the bytes discarded. */
  discard(): number {
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const discarded = this.queuedBytes;
    this.state.stats.bytesQueued -= discarded;
    this.state.stats.bytesDiscarded += discarded;
    this.queuedBytes = 0;
    this.queue.length = 0;
    this.head = 0;
    return discarded;
  }
}

class Connection {
  upstream: Socket | undefined;
  readonly up: DelayedPipe;
  down: DelayedPipe | undefined;
  /** Lived through a cut: reset at a default heal. */
  cutThrough = false;
  /** A failure that happened while cut, to pass on at a resumed heal. */
  private failedWhileCut = false;
  private clientClosed = false;
  private upstreamClosed = false;
  private finished = false;
  private failTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly state: ProxyState,
    readonly client: Socket,
    private readonly target: { host: string; port: number },
    private readonly sourceAddress: string | undefined,
    private readonly onFinished: (connection: Connection) => void,
  ) {
    this.up = new DelayedPipe(state, client, 'bytesToTarget');
    client.on('data', (chunk: Buffer) => this.up.push(chunk));
    client.on('end', () => this.up.push(null));
    client.on('error', () => this.fail());
    client.on('close', (hadError: boolean) => {
      this.clientClosed = true;
      this.down?.discard(); // nobody left to deliver it to
      if (hadError) this.fail();
      this.finishIfDone();
    });
  }

  /** Opens the connection to the target (never while cut: a partitioned target does not hear of it). */
  connectUpstream(): void {
    if (this.upstream !== undefined || this.finished || this.clientClosed) return;
    const upstream = connect({
      host: this.target.host, port: this.target.port, allowHalfOpen: true, noDelay: true,
      ...(this.sourceAddress !== undefined ? { localAddress: this.sourceAddress } : {}),
    });
    this.upstream = upstream;
    const down = new DelayedPipe(this.state, upstream, 'bytesToClient');
    down.dest = this.client;
    this.down = down;
    upstream.on('data', (chunk: Buffer) => down.push(chunk));
    upstream.on('end', () => down.push(null));
    upstream.on('error', () => this.fail());
    upstream.on('close', (hadError: boolean) => {
      this.upstreamClosed = true;
      this.up.discard();
      if (hadError) this.fail();
      this.finishIfDone();
    });
    this.up.dest = upstream;
    this.up.schedule();
  }

  schedule(): void {
    this.up.schedule();
    this.down?.schedule();
  }

  /** A resumed heal: held bytes go no earlier than `notBefore`, a failure held by the cut passes now. */
  resume(notBefore: number): void {
    this.cutThrough = false;
    this.up.restamp(notBefore);
    this.down?.restamp(notBefore);
    this.connectUpstream();
    this.schedule();
    if (this.failedWhileCut) {
      this.failedWhileCut = false;
      this.fail();
    }
  }

  /**
   * An error on either side (a reset, a refused connection) reaches the other
   * side one delay later, as a reset for the client; while cut it does not get
   * through at all (the heal decides).
   */
  private fail(): void {
    if (this.finished || this.failTimer !== undefined) return;
    if (this.state.isCut) {
      this.cutThrough = true;
      this.failedWhileCut = true;
      return;
    }
    this.failTimer = setTimeout(() => this.destroy(true), this.state.delayMs);
  }

  /** Closes both sides now; `reset` sends the client an RST instead of a FIN. */
  destroy(reset: boolean): void {
    if (this.finished) return;
    if (reset && !this.client.destroyed) this.client.resetAndDestroy();
    else this.client.destroy();
    this.upstream?.destroy();
    this.clientClosed = true;
    this.upstreamClosed = true;
    this.finishIfDone();
  }

  private finishIfDone(): void {
    if (this.finished || !this.clientClosed || (this.upstream !== undefined && !this.upstreamClosed)) return;
    this.finished = true;
    if (this.failTimer !== undefined) clearTimeout(this.failTimer);
    this.up.discard();
    this.down?.discard();
    this.upstream?.destroy();
    this.onFinished(this);
  }
}

/** Starts a delay proxy to `options.target`; resolves once it listens. */
export async function startDelayProxy(options: DelayProxyOptions): Promise<DelayProxy> {
  const target = { host: options.target.host ?? LOOPBACK, port: options.target.port };
  const host = options.host ?? LOOPBACK;
  const name = options.name ?? `delay proxy to ${target.host}:${target.port}`;
  const state: ProxyState = {
    delayMs: checkDelay(options.delayMs ?? DEFAULT_DELAY_MS),
    isCut: false,
    maxQueuedBytes: options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
    stats: { connections: 0, open: 0, bytesToTarget: 0, bytesToClient: 0, bytesQueued: 0, bytesDiscarded: 0, resets: 0 },
  };
  if (!(state.maxQueuedBytes > 0)) throw new Error(`${name}: maxQueuedBytes must be > 0`);
  const connections = new Set<Connection>();
  let closing: Promise<void> | undefined;

  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: false, noDelay: true }, (client) => {
    if (closing !== undefined) {
      client.destroy();
      return;
    }
    state.stats.connections++;
    state.stats.open++;
    const connection = new Connection(state, client, target, options.sourceAddress, (finished) => {
      if (connections.delete(finished)) state.stats.open--;
    });
    connections.add(connection);
    if (state.isCut) connection.cutThrough = true;
    else connection.connectUpstream();
  });
  server.on('error', () => undefined); // listen errors are reported below; later ones cannot happen on a bound server
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: listen timed out`)), LISTEN_TIMEOUT_MS);
    server.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    server.listen(options.port ?? 0, host, () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound !== null ? bound.port : 0;

  const proxy: DelayProxy = {
    host,
    port,
    address: `${host}:${port}`,
    target,
    get delayMs() {
      return state.delayMs;
    },
    get isCut() {
      return state.isCut;
    },
    cut() {
      if (state.isCut) return;
      state.isCut = true;
      for (const connection of connections) connection.cutThrough = true;
    },
    heal(healOptions: HealOptions = {}) {
      if (!state.isCut) return;
      state.isCut = false;
      const notBefore = performance.now() + state.delayMs;
      for (const connection of [...connections]) {
        if (!connection.cutThrough) continue;
        if (healOptions.resume === true) {
          connection.resume(notBefore);
        } else {
          state.stats.resets++;
          connection.destroy(true);
        }
      }
    },
    setDelay(ms: number) {
      state.delayMs = checkDelay(ms);
    },
    stats() {
      return { ...state.stats };
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const connection of [...connections]) connection.destroy(false);
        connections.clear();
        state.stats.open = 0;
        server.close(() => resolve());
      });
      return closing;
    },
  };
  options.t?.teardown(() => proxy.close());
  return proxy;
}

function checkDelay(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`delay must be a finite number of ms >= 0, got ${ms}`);
  return ms;
}
