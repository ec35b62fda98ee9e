/**
 * The Redis store: bucket state in one Redis node or a Redis Cluster, so every
 * sidecar enforces one global limit.
 *
 * A request's ops are grouped by the master serving their slots (one group on
 * a single node); each group is one all-or-nothing batch of lua/openclaw.lua
 * `take`, and concurrent requests' batches for one node travel in one script
 * call per event-loop turn (batcher.ts). The script returns the states it
 * read; the JavaScript reference model (core/algorithms/) computes every
 * reported number from them, and checks that it agrees with what Redis did.
 *
 * All-or-nothing across groups (Cluster): when one group denies while others
 * committed, the committed groups' takes are given back (`refund`, a second
 * round trip on that denial path only). Under-admission in between is
 * accepted; over-admission is not.
 *
 * Failures are per node. Each call has a deadline that measures Redis, not
 * this process's event loop (deadline.ts); each master has its own circuit
 * breaker (node-health.ts); a group whose node failed, or whose breaker is
 * open, is decided by the failure policy (failure-policy.ts) while the other
 * groups of the request stay exact. A batch that comes back MOVED (a
 * resharding moved a slot) wrote nothing and is sent again to the new owner.
 *
 * Where each part lives: one request's way (request-path.ts), its answer from
 * its groups' outcomes (settlement.ts), replies after the deadline
 * (late-replies.ts), writes after a decision (write-back.ts), the local
 * mirror (mirror.ts), who serves which key (topology.ts), one script call per
 * node and turn (batcher.ts); limits with scope: global are a layer around
 * this store (global-limits-layer.ts).
 */
import type { Cluster } from 'ioredis';
import type { StoreDecision, StoreHealth } from '../../core/store.js';
import type { BucketOp, BucketOutcome } from '../../core/types.js';
import { StoreCallError, errorMessage } from '../../errors.js';
import { Batcher } from './batcher.js';
import { RedisBucketAdmin } from './bucket-admin.js';
import { connectedServer, createRedisConnection, type RedisConnection } from './connection.js';
import { watchConnection } from './connection-watch.js';
import { withRedisDeadline } from './deadline.js';
import { redisErrorWords } from './error-words.js';
import { EvictionWatch } from './eviction-watch.js';
import { FailurePolicy } from './failure-policy.js';
import { withGlobalLimits, type RegionalStore } from './global-limits-layer.js';
import { LateReplies } from './late-replies.js';
import { withLocalLeases } from './local-leases.js';
import { misconfigurationOf } from './misconfiguration.js';
import { RedisLibrary } from './library.js';
import { Mirror } from './mirror.js';
import { NodeHealth } from './node-health.js';
import { Presence } from './presence.js';
import { RequestPath } from './request-path.js';
import { Topology } from './topology.js';
import { WriteBack } from './write-back.js';
import type { RedisStore, RedisStoreOptions, StoreEvents, StoreLogger } from './options.js';

export type { RedisStore, RedisStoreEvents, RedisStoreOptions, StoreEvents } from './options.js';

const CLOSE_TIMEOUT_MS = 1_000;
/** Errors that no node's down line already tells are logged at most this often (no per-request lines). */
const ERROR_LOG_INTERVAL_MS = 60_000;
/** At close, how long charges and admissions owed to Redis may take to be written back. */
const FLUSH_ON_CLOSE_MS = 500;

const SILENT_LOGGER: StoreLogger = { info() {}, warn() {}, error() {} };

/**
 * Creates the store (with global limits around it when `region` and
 * `regions` are set); connects in the background (the server may start while
 * Redis is unreachable: the failure policy decides until it connects).
 * Throws SettingsError on a bad address and the fs error for an unreadable TLS file.
 */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  const store = new RedisStoreImpl(options);
  const outer = withGlobalLimits(store, options);
  // Only a sidecar leases: the inspect and reset commands decide nothing.
  if (options.localLeases === false || options.sidecar === false) return outer;
  return withLocalLeases(outer, {
    library: store.library,
    topology: store.topology,
    events: options.events ?? {},
    onError: (error, message) => store.noteError(error, message),
    usable: () => store.usable,
    observed: (op, tokens) => store.observeTokens(op, tokens),
  });
}

class RedisStoreImpl implements RegionalStore {
  readonly kind = 'redis' as const;
  readonly mode: 'single' | 'cluster';
  readonly topology: Topology;
  readonly library: RedisLibrary;
  sidecars = 1;
  private readonly connection: RedisConnection;
  private readonly nodeHealth: NodeHealth;
  private readonly mirror: Mirror;
  private readonly writeBack: WriteBack;
  private readonly path: RequestPath;
  private readonly timeoutMs: number;
  private readonly logger: StoreLogger;
  private readonly events: Partial<StoreEvents>;
  private readonly presence: Presence | undefined;
  private readonly keyPrefix: string;
  private readonly eviction: EvictionWatch;
  private readonly admin: RedisBucketAdmin;
  /** Set at close: no new decisions; what is owed is still written back. */
  private closing = false;
  private closed = false;
  private lastError = '';
  private lastErrorLogMs = -Infinity;

  constructor(options: RedisStoreOptions) {
    this.connection = createRedisConnection(options);
    const { client } = this.connection;
    this.mode = this.connection.mode;
    this.topology = new Topology(this.connection);
    this.timeoutMs = options.redisTimeoutMs;
    this.logger = options.logger ?? SILENT_LOGGER;
    this.events = options.events ?? {};
    const policy = new FailurePolicy(options.onStoreFailure, options.local, options.fallbackDivisor === 'auto' ? 1 : options.fallbackDivisor);
    this.library = new RedisLibrary(client);
    this.keyPrefix = options.redisKeyPrefix;
    this.nodeHealth = new NodeHealth({
      probe: (node) => this.probe(node),
      // Only once connected: before that (at start, reconnecting) the connection's own events say a node is down.
      masters: () => (this.closed || client.status !== 'ready' ? [] : this.topology.masters()),
      events: {
        state: (node, state, previous, reason, misconfigured) => {
          if (state === 'open' && !this.closed) void this.topology.refresh();
          this.events.nodeState?.(node, state, previous, reason, misconfigured);
        },
        stillDown: (node, reason, downMs, misconfigured) => this.events.nodeStillDown?.(node, reason, downMs, misconfigured),
        misconfigured: (node, misconfiguration) => this.events.misconfigured?.(node, misconfiguration?.cause, misconfiguration?.words),
      },
      ...(options.breaker?.failureThreshold === undefined ? {} : { failureThreshold: options.breaker.failureThreshold }),
    });
    const batcher = new Batcher(this.library, this.timeoutMs, {
      call: (node, seconds, ok, error) => {
        if (ok) this.nodeHealth.success(node);
        else this.nodeHealth.failure(node, error);
        this.events.call?.(node, seconds, ok);
      },
      timeout: (node) => this.events.timeout?.(node),
      lateReply: (node) => this.events.lateReply?.(node),
      extended: () => this.events.deadlineExtended?.(),
    }, options.redisBatchWindowMs ?? 0);
    // Through Sentinels: one that is down or refuses us (the others may still answer).
    client.on('sentinelError', (error: unknown) =>
      this.noteError(new StoreCallError(`redis sentinel: ${redisErrorWords(error)}`, { cause: error }), 'redis sentinel error'));
    let lastServer: string | undefined;
    client.on('ready', () => {
      // Logged once, and again only when the server changed (a Sentinel failover): a reconnect is the node's "back" line.
      const server = connectedServer(this.connection);
      if (lastServer === undefined || server !== lastServer) {
        this.logger.info({ mode: this.mode, node: this.connection.address, server }, 'redis store connected');
      }
      lastServer = server ?? '';
      void this.library.preload(client);
    });
    client.on('end', () => {
      if (!this.closed) this.logger.warn({ mode: this.mode }, 'redis store connection ended');
    });
    watchConnection({
      connection: this.connection,
      topology: this.topology,
      health: this.nodeHealth,
      // Twice: ioredis sends a socket's first script call as EVAL and the next ones as EVALSHA; both must be allowed.
      check: async (node) => {
        await this.probe(node);
        await this.probe(node);
      },
      closed: () => this.closed,
    });
    // After watchConnection: a connection error is first its node's (down, misconfigured), then noted.
    client.on('error', (error: unknown) => this.noteError(error, 'redis connection error'));
    this.eviction = new EvictionWatch({
      topology: this.topology,
      usable: () => !this.closed && client.status === 'ready',
      events: this.events,
      logger: this.logger,
    });
    client.on('ready', () => this.eviction.check());
    if (this.mode === 'cluster') {
      let known = '';
      (client as Cluster).on('refresh', () => {
        // ioredis refreshes the slot map every 2 s. Node health forgets nodes that serve no
        // slot on every refresh (a node a failover replaced is never reported down for good);
        // the script is loaded again only when the masters changed.
        const masters = this.topology.masters();
        if (masters.length === 0) return;
        this.nodeHealth.retain(new Set(masters));
        const current = masters.join(',');
        if (current === known) return;
        known = current;
        void this.library.preload(client);
      });
    }
    // Heartbeats count the sidecars: the automatic divisor, and the lease sizes of global limits.
    const decides = options.sidecar !== false;
    if (decides && (options.fallbackDivisor === 'auto' || (options.region !== undefined && options.regions !== undefined))) {
      const presenceKey = `${options.redisKeyPrefix}{sidecars}presence`;
      const presence = new Presence(this.library, presenceKey, this.timeoutMs,
        () => !this.closed && client.status === 'ready',
        (count) => {
          this.sidecars = count;
          if (options.fallbackDivisor === 'auto') policy.setDivisor(count);
          this.events.sidecars?.(count);
        },
        (error) => {
          // Refused as a decision would be (a wrong password, an ACL): its node's misconfiguration, logged once there.
          const node = this.topology.nodeOf(presenceKey);
          if (node !== undefined && misconfigurationOf(error) !== undefined) this.nodeHealth.failure(node, error);
          this.noteError(error, 'redis presence heartbeat failed; the local policy keeps its last divisor');
        });
      client.on('ready', () => void presence.beat());
      this.presence = presence;
    }
    this.writeBack = new WriteBack({
      library: this.library,
      topology: this.topology,
      health: this.nodeHealth,
      timeoutMs: this.timeoutMs,
      usable: () => !this.closed && client.status === 'ready',
      onError: (error, message) => this.noteError(error, message),
      uncertain: () => this.events.uncertainCall?.(),
      overAdmitted: (tokens) => this.events.fallbackOverAdmitted?.(tokens),
    });
    this.mirror = new Mirror(options.local, options.mirror, this.logger, (key) => this.writeBack.owes(key));
    this.admin = new RedisBucketAdmin(this.connection, this.topology, this.timeoutMs);
    const noteError = (error: unknown, message: string): void => this.noteError(error, message);
    const closed = (): boolean => this.closed;
    const closing = (): boolean => this.closing || this.closed;
    this.path = new RequestPath({
      topology: this.topology,
      health: this.nodeHealth,
      batcher,
      writeBack: this.writeBack,
      mirror: this.mirror,
      lateReplies: new LateReplies({ mirror: this.mirror, writeBack: this.writeBack, events: this.events, closed, noteError }),
      policy,
      events: this.events,
      closed: closing,
      lastError: () => this.lastError,
      noteError,
    });
    client.connect().catch((error: unknown) => this.noteError(error, 'redis initial connect failed'));
  }

  /** What a local lease call found a bucket holding: the mirror learns it. */
  observeTokens(op: BucketOp, tokens: number): void {
    this.mirror.observeTokens(op, tokens);
  }

  /** Connected and not closing: calls off the request path may be made. */
  get usable(): boolean {
    return !this.closing && !this.closed && this.client.status === 'ready';
  }

  private get client(): RedisConnection['client'] {
    return this.connection.client;
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

  /** A request the mirror already denies is answered at once, without a promise; else Redis decides. */
  apply(ops: readonly BucketOp[]): StoreDecision | Promise<StoreDecision> {
    if (ops.length === 0) return { outcomes: [], fallback: undefined };
    const denial = this.mirror.denial(ops);
    if (denial === undefined) return this.path.decision(ops);
    this.events.localDenial?.();
    return denial;
  }

  decideInRedis(ops: readonly BucketOp[]): Promise<StoreDecision> {
    return this.path.decision(ops);
  }

  /**
   * The script with nothing to decide, on a key of ours that `node` serves,
   * within a decision's deadline: it needs what a decision needs (a connection,
   * the password, the ACL's scripting and key permissions, Lua, a Redis that
   * accepts writes: not OOM, not a replica) and changes nothing.
   */
  private probe(node: string): Promise<unknown> {
    let key: string;
    try {
      key = this.topology.probeKey(node, this.keyPrefix);
    } catch (error: unknown) {
      return Promise.reject(error);
    }
    // The decisions' deadline: a Redis too slow for them is not up for them either.
    return withRedisDeadline(this.library.take(key, []), this.timeoutMs, `probe of ${node}`);
  }

  /** What Redis holds (never the mirror), for each op's cost, nothing taken. */
  inspect(ops: readonly BucketOp[]): Promise<BucketOutcome[]> {
    return this.admin.inspect(ops);
  }

  /** Deletes the buckets in Redis, then this sidecar's mirror of them (which would deny from what they held). */
  async reset(ops: readonly BucketOp[]): Promise<number> {
    try {
      return await this.admin.reset(ops);
    } finally {
      this.mirror.forget(ops);
    }
  }

  health(): StoreHealth {
    const status = this.client.status;
    const unavailable = this.nodeHealth.unavailable();
    const misconfigured = this.nodeHealth.misconfigured();
    const connected = status === 'ready';
    // Through Sentinels the mode is single; the detail names the master role instead ("redis sentinel:NAME ready").
    let detail = `redis ${this.connection.address.startsWith('sentinel:') ? this.connection.address : this.mode} ${status}`;
    const down = unavailable.filter((node) => !misconfigured.some((m) => m.node === node));
    if (down.length > 0) detail += `, unavailable: ${down.join(', ')}`;
    if (this.lastError !== '' && (!connected || down.length > 0) && misconfigured.length === 0) detail += ` (last error: ${this.lastError})`;
    const causes = misconfigured.map(({ node, misconfiguration }) => `${node}: ${misconfiguration.words}`);
    if (causes.length > 0) detail += `, misconfigured: ${causes.join('; ')}`;
    const warnings = this.eviction.warnings();
    if (warnings.length > 0) detail += `, warning: ${warnings.join('; ')}`;
    return {
      ready: connected && unavailable.length === 0 && !this.closed,
      detail,
      ...(causes.length === 0 ? {} : { misconfigured: causes.join('; ') }),
    };
  }

  /**
   * Writes back what is owed (the failure policy's admissions, token-budget
   * charges; late replies still being judged), within FLUSH_ON_CLOSE_MS,
   * then closes the connection. What is still owed after that is logged.
   */
  async close(): Promise<void> {
    if (this.closing || this.closed) return;
    this.closing = true;
    this.writeBack.stop();
    const left = await this.writeBack.flushOnClose(FLUSH_ON_CLOSE_MS, () => this.mirror.holding);
    if (left > 0) this.logger.warn({ mode: this.mode, keys: left }, 'redis store closed with admissions or charges still owed to Redis; they are lost');
    this.closed = true;
    this.presence?.stop();
    this.nodeHealth.close();
    this.eviction.stop();
    this.connection.stopWatching();
    try {
      await withRedisDeadline(this.client.quit(), CLOSE_TIMEOUT_MS, 'QUIT');
    } catch {
      // Not connected or too slow: drop the sockets instead.
    }
    this.client.disconnect();
  }

  /**
   * Remembers the error for health(); logs it at most once per interval, and
   * not while a node is down or misconfigured (that node's own lines tell
   * it: no per-request logs). Never throws: it is called where a throw would
   * strand other requests (a logger that throws is logged nowhere).
   */
  noteError(error: unknown, msg: string): void {
    this.lastError = redisErrorWords(error); // /readyz and circuit-open answers show it: our words
    const now = performance.now();
    if (this.closed || now - this.lastErrorLogMs < ERROR_LOG_INTERVAL_MS) return;
    if (this.nodeHealth.unavailable().length > 0 || this.nodeHealth.misconfigured().length > 0) return;
    this.lastErrorLogMs = now;
    try {
      this.logger.warn({ mode: this.mode, err: this.lastError, cause: errorMessage(error) }, msg);
    } catch {
      // The logger failed; the error is still the caller's to answer.
    }
  }
}
