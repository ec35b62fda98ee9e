/**
 * The Redis store: bucket state in one Redis node or a Redis Cluster, so every
 * sidecar enforces one global limit.
 *
 * One round trip per decision. On a single node the whole batch is one atomic
 * lua/token-bucket.lua batch. In a Cluster, a request's ops are grouped by the
 * master node that serves their slots (computed from each key, see
 * cluster-slot.ts); each group is one atomic batch on that node, and all
 * groups are sent at once. Concurrent requests are coalesced: the batches
 * for one node in one event-loop turn travel in one script call
 * (script-batcher.ts), so a busy sidecar makes far fewer calls than decisions.
 *
 * All-or-nothing across groups (Cluster only): a group only commits when all its non-shadow
 * ops are allowed, but groups on different nodes cannot see each other. When
 * one group does not commit while others did, the request is denied and the
 * committed groups' takes are given back by lua/refund.lua (a second round
 * trip on that denial path only). Between the take and the give-back other
 * requests may be denied (under-admission, accepted); nothing is ever given
 * back beyond what this request took (no over-admission). If the give-back
 * fails or runs out of time, the tokens stay taken (under-admission again).
 * Likewise a call that passed its deadline may still run on Redis later and
 * take tokens for a request that the failure policy decided: under-admission.
 *
 * Failure behaviour: every `apply` has a deadline (`timeoutMs`, default 50 ms)
 * and rejects with StoreCallError after it; the offline queue is off, so a
 * disconnected client rejects at once; a circuit breaker refuses calls for a
 * cool-down after consecutive failures and then lets one probe through. The
 * limiter above applies the `--on-store-failure` policy.
 *
 * Keys arrive complete in BucketOp.key (prefix and {hash tag} included by the
 * limiter); this store never rewrites them.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis } from 'ioredis';
import type { ClusterOptions, RedisOptions } from 'ioredis';
import type { BucketOp, BucketOutcome, LimitSpec } from '../core/types.js';
import { StoreCallError, errorMessage } from '../errors.js';
import { CircuitBreaker } from './circuit-breaker.js';
import type { BreakerListener, BreakerState, CircuitBreakerOptions } from './circuit-breaker.js';
import { clusterSlot } from './cluster-slot.js';
import { REFUND_SCRIPT, TOKEN_BUCKET_FIELDS_PER_OP, TOKEN_BUCKET_SCRIPT } from './redis-scripts.js';
import { ScriptBatcher, type ScriptCall } from './script-batcher.js';
import type { Store, StoreHealth } from './store.js';

export const REDIS_DEADLINE_MS = 50;
export const DEFAULT_KEY_PREFIX = 'rl:';
const CONNECT_TIMEOUT_MS = 1_000;
const CLOSE_TIMEOUT_MS = 1_000;
/** How often an open breaker is probed with PING (it lets a probe through after its cool-down). */
const PROBE_INTERVAL_MS = 250;
const RECONNECT_STEP_MS = 100;
const RECONNECT_MAX_MS = 1_000;
const ERROR_LOG_INTERVAL_MS = 10_000;

/** Exported so a test can pin it: a script change must be deliberate. */
export const TOKEN_BUCKET_SHA = TOKEN_BUCKET_SCRIPT.sha;
export const REFUND_SHA = REFUND_SCRIPT.sha;

/** Any pino-like logger. */
export interface StoreLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface RedisStoreOptions {
  /** Single node: `redis://[user:pass@]host:port[/db]`, or `rediss://` for TLS. */
  url?: string | undefined;
  /** Redis Cluster seed nodes: `host:port,host:port,...` (or an array of `host:port`). */
  cluster?: string | readonly string[] | undefined;
  /** ACL user and password; win over those in `url`. */
  username?: string | undefined;
  password?: string | undefined;
  /** Use TLS (implied by `rediss://` and by any tls* option). */
  tls?: boolean | undefined;
  /** PEM file paths. */
  tlsCa?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  tlsServername?: string | undefined;
  /** Skip certificate verification (tests only). */
  tlsInsecure?: boolean | undefined;
  /**
   * Key prefix for the limiter to pass to `bucketKey` (default `rl:`). The
   * store itself uses BucketOp.key unchanged; this is exposed as `keyPrefix`.
   */
  keyPrefix?: string | undefined;
  /** Deadline of one `apply`, default 50 ms. */
  timeoutMs?: number | undefined;
  /** TCP connect timeout, default 1000 ms. */
  connectTimeoutMs?: number | undefined;
  breaker?: CircuitBreakerOptions | undefined;
  logger?: StoreLogger | undefined;
}

export interface RedisStore extends Store {
  readonly kind: 'redis';
  readonly mode: 'single' | 'cluster';
  readonly keyPrefix: string;
  readonly breakerState: BreakerState;
  /** Follows the breaker (closed/open/half_open), e.g. for the fallback gauge. */
  onStateChange(listener: BreakerListener): () => void;
  /** Resolves true once connected, or false after `timeoutMs` (the store keeps connecting). */
  waitUntilConnected(timeoutMs: number): Promise<boolean>;
}

type Client = (Redis | Cluster) & Record<string, unknown>;

const SILENT_LOGGER: StoreLogger = { info() {}, warn() {}, error() {} };

/**
 * Creates the store; connects in the background (the server may start while
 * Redis is unreachable: calls then fail fast until it connects).
 * Throws TypeError on invalid options (no address, both addresses, bad URL)
 * and the fs error when a TLS file cannot be read.
 */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStoreImpl(options);
}

interface GroupResult {
  committed: boolean;
  /** Indices into the request's ops. */
  indices: number[];
  fields: number[];
}

class RedisStoreImpl implements RedisStore {
  readonly kind = 'redis' as const;
  readonly mode: 'single' | 'cluster';
  readonly keyPrefix: string;
  private readonly client: Client;
  private readonly timeoutMs: number;
  private readonly breaker: CircuitBreaker;
  private readonly logger: StoreLogger;
  private readonly limitArgs = new WeakMap<LimitSpec, readonly string[]>();
  private readonly batcher: ScriptBatcher;
  private closed = false;
  private lastError = '';
  private lastErrorLogMs = -Infinity;

  constructor(options: RedisStoreOptions) {
    this.keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.timeoutMs = options.timeoutMs ?? REDIS_DEADLINE_MS;
    if (!(this.timeoutMs > 0)) throw new TypeError('timeoutMs must be > 0');
    this.logger = options.logger ?? SILENT_LOGGER;
    this.breaker = new CircuitBreaker(options.breaker);
    const hasUrl = options.url !== undefined && options.url !== '';
    const seeds = parseSeeds(options.cluster);
    if (hasUrl === (seeds.length > 0)) {
      throw new TypeError('the Redis store needs exactly one of a url or a cluster seed list');
    }
    this.mode = hasUrl ? 'single' : 'cluster';
    this.client = (hasUrl ? createSingle(options) : createCluster(seeds, options)) as Client;
    for (const script of [TOKEN_BUCKET_SCRIPT, REFUND_SCRIPT]) {
      this.client.defineCommand(script.name, { lua: script.lua });
    }
    const tokenBucket = (this.client[TOKEN_BUCKET_SCRIPT.name] as ScriptCall).bind(this.client);
    this.batcher = new ScriptBatcher(tokenBucket, TOKEN_BUCKET_FIELDS_PER_OP);
    this.client.on('error', (error: unknown) => this.noteError(error, 'redis connection error'));
    this.client.on('ready', () => this.logger.info({ mode: this.mode }, 'redis store connected'));
    // While the breaker is open, probe in the background: a sidecar that is
    // unready (policy deny) gets no traffic, so decisions alone would never
    // find out that Redis is back.
    this.breaker.onStateChange((state) => {
      if (state === 'open') this.startProbing();
    });
    this.client.on('end', () => {
      if (!this.closed) this.logger.warn({ mode: this.mode }, 'redis store connection ended');
    });
    this.client.connect().catch((error: unknown) => this.noteError(error, 'redis initial connect failed'));
  }

  get breakerState(): BreakerState {
    return this.breaker.state;
  }

  onStateChange(listener: BreakerListener): () => void {
    return this.breaker.onStateChange(listener);
  }

  private probeTimer: NodeJS.Timeout | undefined;

  private startProbing(): void {
    if (this.probeTimer !== undefined || this.closed) return;
    this.probeTimer = setInterval(() => {
      if (this.closed || this.breaker.state === 'closed') {
        clearInterval(this.probeTimer);
        this.probeTimer = undefined;
        return;
      }
      if (!this.breaker.tryAcquire()) return;
      withDeadline(this.client.ping(), this.timeoutMs, 'PING').then(
        () => this.breaker.success(),
        (error: unknown) => {
          this.lastError = errorMessage(error);
          this.breaker.failure();
        },
      );
    }, PROBE_INTERVAL_MS);
    this.probeTimer.unref();
  }

  waitUntilConnected(timeoutMs: number): Promise<boolean> {
    if (this.client.status === 'ready') return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const done = (connected: boolean): void => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        resolve(connected);
      };
      const onReady = (): void => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.client.on('ready', onReady);
    });
  }

  async apply(ops: readonly BucketOp[]): Promise<BucketOutcome[]> {
    if (ops.length === 0) return [];
    if (this.closed) throw new StoreCallError('redis store is closed');
    if (!this.breaker.tryAcquire()) {
      throw new StoreCallError(`redis circuit breaker is open (last error: ${this.lastError})`);
    }
    const startedMs = performance.now();
    try {
      const outcomes = await this.decide(ops, startedMs);
      this.breaker.success();
      return outcomes;
    } catch (error: unknown) {
      this.noteError(error, 'redis call failed; the store-failure policy decided');
      this.breaker.failure();
      if (error instanceof StoreCallError) throw error;
      throw new StoreCallError(`redis: ${errorMessage(error)}`, { cause: error });
    }
  }

  health(): StoreHealth {
    const status = this.client.status;
    const state = this.breaker.state;
    const connected = status === 'ready';
    let detail = `redis ${this.mode} ${status}, breaker ${state}`;
    if (this.lastError !== '' && (!connected || state !== 'closed')) detail += ` (last error: ${this.lastError})`;
    return { ready: connected && state === 'closed' && !this.closed, fallbackActive: state !== 'closed', detail };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.probeTimer);
    try {
      await withDeadline(this.client.quit(), CLOSE_TIMEOUT_MS, 'QUIT');
    } catch {
      // Not connected or too slow: drop the sockets instead.
    }
    this.client.disconnect();
  }

  private async decide(ops: readonly BucketOp[], startedMs: number): Promise<BucketOutcome[]> {
    // A single node has no slots to respect: the whole batch is one atomic call.
    const groups = this.mode === 'single' ? SINGLE_NODE_GROUP(ops) : groupByNode(ops, (this.client as unknown as Cluster).slots);
    const calls = groups.map(({ node, indices }) => this.runGroup(ops, node, indices));
    if (calls.length === 1) {
      const only = await withDeadline(calls[0]!, this.timeoutMs, 'token-bucket script');
      return toOutcomes(ops, [only], only.committed);
    }
    const settled = withDeadline(Promise.allSettled(calls), this.timeoutMs, 'token-bucket scripts');
    const results: GroupResult[] = [];
    let failure: unknown;
    for (const entry of await settled) {
      if (entry.status === 'fulfilled') results.push(entry.value);
      else failure ??= entry.reason;
    }
    const committed = failure === undefined && results.every((r) => r.committed);
    if (!committed) {
      const refund = this.refund(ops, results.filter((r) => r.committed));
      if (failure !== undefined) {
        // The caller gets an error; give back in the background, best effort.
        refund.catch((error: unknown) => this.noteError(error, 'redis refund failed'));
        throw failure;
      }
      const leftMs = this.timeoutMs - (performance.now() - startedMs);
      try {
        await withDeadline(refund, Math.max(1, leftMs), 'refund script');
      } catch (error: unknown) {
        // The denial stands; the takes stay (under-admission only).
        this.noteError(error, 'redis refund failed; tokens stay taken');
      }
    }
    return toOutcomes(ops, results, committed);
  }

  private async runGroup(ops: readonly BucketOp[], node: string, indices: number[]): Promise<GroupResult> {
    const argv: string[] = [];
    for (const i of indices) {
      const op = ops[i]!;
      argv.push(op.key);
      for (const value of this.argsOf(op.limit)) argv.push(value);
      argv.push(String(op.cost), op.shadow ? '1' : '0');
    }
    const reply = await this.batcher.submit(node, indices.length, ops[indices[0]!]!.key, argv);
    return parseGroupReply(reply, indices);
  }

  private async refund(ops: readonly BucketOp[], committed: readonly GroupResult[]): Promise<void> {
    const calls: Promise<unknown>[] = [];
    for (const group of committed) {
      const argv: string[] = [];
      group.indices.forEach((i, k) => {
        const op = ops[i]!;
        const allowed = group.fields[k * TOKEN_BUCKET_FIELDS_PER_OP] === 1;
        if (!allowed || op.cost <= 0) return;
        const { algorithm, tickUs, refillPerTick, levelPerToken, capacityLevel } = op.limit;
        const stateTs = group.fields[k * TOKEN_BUCKET_FIELDS_PER_OP + 6]!;
        argv.push(op.key, algorithm, String(tickUs), String(refillPerTick), String(levelPerToken),
          String(capacityLevel), String(op.cost), String(stateTs));
      });
      // One routing key in KEYS (declared keys must share a slot); every key is in ARGV.
      if (argv.length > 0) calls.push((this.client[REFUND_SCRIPT.name] as ScriptCall)(1, argv[0]!, ...argv));
    }
    await Promise.all(calls);
  }

  /** The per-limit ARGV values, built once per compiled limit. */
  private argsOf(limit: LimitSpec): readonly string[] {
    let args = this.limitArgs.get(limit);
    if (args === undefined) {
      args = Object.freeze([
        limit.algorithm, String(limit.tickUs), String(limit.refillPerTick), String(limit.levelPerToken),
        String(limit.capacityLevel), String(limit.unitUs), String(limit.requestsPerUnit),
      ]);
      this.limitArgs.set(limit, args);
    }
    return args;
  }

  /** Remembers the error for health(); logs at most once per interval (no per-request logs). */
  private noteError(error: unknown, msg: string): void {
    this.lastError = errorMessage(error);
    const now = performance.now();
    if (this.closed || now - this.lastErrorLogMs < ERROR_LOG_INTERVAL_MS) return;
    this.lastErrorLogMs = now;
    this.logger.warn({ mode: this.mode, err: this.lastError }, msg);
  }
}

interface NodeGroup {
  /** The master serving these keys ("host:port"), or "slot:N" before the slot map is known. */
  node: string;
  indices: number[];
}

function SINGLE_NODE_GROUP(ops: readonly BucketOp[]): NodeGroup[] {
  return [{ node: 'single', indices: ops.map((_, i) => i) }];
}

/**
 * Groups a request's ops by the master that serves each key's slot, per the
 * client's slot map. A stale map costs a failed call (Redis refuses a key it
 * does not serve), never a wrong decision.
 */
function groupByNode(ops: readonly BucketOp[], slots: readonly (readonly string[] | undefined)[]): NodeGroup[] {
  const nodeOf = (op: BucketOp): string => {
    const slot = clusterSlot(op.key);
    return slots[slot]?.[0] ?? `slot:${slot}`;
  };
  const first = nodeOf(ops[0]!);
  const nodes = ops.map((op, i) => (i === 0 ? first : nodeOf(op)));
  if (nodes.every((node) => node === first)) return [{ node: first, indices: ops.map((_, i) => i) }];
  const groups = new Map<string, number[]>();
  nodes.forEach((node, i) => {
    const group = groups.get(node);
    if (group === undefined) groups.set(node, [i]);
    else group.push(i);
  });
  return [...groups].map(([node, indices]) => ({ node, indices }));
}

/** A batch reply as ScriptBatcher delivers it (already checked): [committed, nowUs, ...fields]. */
function parseGroupReply(reply: readonly number[], indices: number[]): GroupResult {
  return { committed: reply[0] === 1, indices, fields: reply.slice(2) };
}

function toOutcomes(ops: readonly BucketOp[], results: readonly GroupResult[], committed: boolean): BucketOutcome[] {
  const outcomes = new Array<BucketOutcome>(ops.length);
  for (const { indices, fields } of results) {
    indices.forEach((i, k) => {
      const base = k * TOKEN_BUCKET_FIELDS_PER_OP;
      outcomes[i] = {
        allowed: fields[base] === 1,
        remaining: fields[base + (committed ? 1 : 4)]!,
        resetUs: fields[base + (committed ? 2 : 5)]!,
        retryAfterUs: fields[base + 3]!,
      };
    });
  }
  return outcomes;
}

/** Resolves or rejects like `work`, or rejects with StoreCallError after `ms`. */
function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new StoreCallError(`redis: ${what} exceeded its ${Math.round(ms)} ms deadline`)), ms);
    work.then(
      (value) => { clearTimeout(timer); resolve(value); },
      (error: unknown) => { clearTimeout(timer); reject(error); },
    );
  });
}

function parseSeeds(cluster: RedisStoreOptions['cluster']): { host: string; port: number }[] {
  if (cluster === undefined) return [];
  const list = typeof cluster === 'string' ? cluster.split(',') : [...cluster];
  return list.map((s) => s.trim()).filter((s) => s !== '').map((seed) => {
    const at = seed.lastIndexOf(':');
    const host = at > 0 ? seed.slice(0, at).replace(/^\[(.*)\]$/, '$1') : seed;
    const port = at > 0 ? Number(seed.slice(at + 1)) : 6379;
    if (!Number.isInteger(port) || port <= 0 || port > 65535) {
      throw new TypeError(`invalid Redis Cluster seed "${seed}" (expected host:port)`);
    }
    return { host, port };
  });
}

function tlsOptions(options: RedisStoreOptions, forced: boolean): ConnectionOptions | undefined {
  const wanted = forced || options.tls === true || options.tlsCa !== undefined || options.tlsCert !== undefined
    || options.tlsKey !== undefined || options.tlsServername !== undefined || options.tlsInsecure === true;
  if (!wanted) return undefined;
  const tls: ConnectionOptions = { rejectUnauthorized: options.tlsInsecure !== true };
  if (options.tlsCa !== undefined) tls.ca = readFileSync(options.tlsCa);
  if (options.tlsCert !== undefined) tls.cert = readFileSync(options.tlsCert);
  if (options.tlsKey !== undefined) tls.key = readFileSync(options.tlsKey);
  if (options.tlsServername !== undefined) tls.servername = options.tlsServername;
  return tls;
}

function reconnectDelayMs(times: number): number {
  return Math.min(RECONNECT_STEP_MS * times, RECONNECT_MAX_MS);
}

/** Options shared by single-node connections and cluster node connections. */
function connectionOptions(options: RedisStoreOptions): RedisOptions {
  return {
    connectTimeout: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    // A decision whose caller already gave up must not be replayed after a
    // reconnect: it would take tokens nobody used (under-admission).
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    enableAutoPipelining: false,
    keepAlive: 10_000,
    noDelay: true,
    connectionName: 'openclaw-ratelimit',
  };
}

function createSingle(options: RedisStoreOptions): Redis {
  let url: URL;
  try {
    url = new URL(options.url!);
  } catch {
    throw new TypeError(`invalid Redis URL "${options.url!}"`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new TypeError(`invalid Redis URL "${options.url!}": the scheme must be redis:// or rediss://`);
  }
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new TypeError(`invalid Redis URL "${options.url!}": bad db number`);
  const tls = tlsOptions(options, url.protocol === 'rediss:');
  const config: RedisOptions = {
    ...connectionOptions(options),
    host: url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: url.port === '' ? 6379 : Number(url.port),
    db,
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    retryStrategy: reconnectDelayMs,
  };
  const username = options.username ?? (url.username !== '' ? decodeURIComponent(url.username) : undefined);
  const password = options.password ?? (url.password !== '' ? decodeURIComponent(url.password) : undefined);
  if (username !== undefined) config.username = username;
  if (password !== undefined) config.password = password;
  if (tls !== undefined) config.tls = tls;
  return new Redis(config);
}

function createCluster(seeds: { host: string; port: number }[], options: RedisStoreOptions): Cluster {
  const redisOptions: NonNullable<ClusterOptions['redisOptions']> = connectionOptions(options);
  if (options.username !== undefined) redisOptions.username = options.username;
  if (options.password !== undefined) redisOptions.password = options.password;
  const tls = tlsOptions(options, false);
  if (tls !== undefined) redisOptions.tls = tls;
  return new Cluster(seeds, {
    redisOptions,
    scaleReads: 'master',
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    // Redirections and cluster-down retries are bounded; the apply deadline cuts them anyway.
    maxRedirections: 3,
    retryDelayOnMoved: 0,
    retryDelayOnFailover: 50,
    retryDelayOnClusterDown: 50,
    retryDelayOnTryAgain: 50,
    slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
    slotsRefreshInterval: 2_000,
    clusterRetryStrategy: reconnectDelayMs,
  });
}
