/**
 * The Redis store: bucket state in one Redis node or a Redis Cluster, so every
 * sidecar enforces one global limit.
 *
 * A request's ops are grouped by the master serving their slots (one group on
 * a single node); each group is one all-or-nothing batch of lua/openclaw.lua
 * `take`, and concurrent requests' batches for one node travel in one script
 * call per event-loop turn (batcher.ts). The script returns the states it
 * read; the JavaScript reference model (core/bucket.ts) computes every
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
 * The local mirror: every Redis reply (late ones too) records the states of
 * its keys in a MemoryStore, on the local clock. Tokens only refill with time
 * and other sidecars only take more, so a request that those states deny is
 * denied without a call, and the `local` policy decides from what Redis was
 * last known to hold instead of from full buckets.
 */
import type { Cluster } from 'ioredis';
import type { StoreDecision, StoreHealth } from '../../core/store.js';
import type { BucketOp } from '../../core/types.js';
import { StoreCallError, errorMessage } from '../../errors.js';
import type { MemoryStore } from '../memory-store.js';
import { Batcher } from './batcher.js';
import { connectedServer, createRedisConnection, type RedisConnection } from './connection.js';
import { withRedisDeadline } from './deadline.js';
import { redisErrorWords } from './error-words.js';
import { FailurePolicy } from './failure-policy.js';
import { GlobalLimits } from './global-limits.js';
import { RedisLibrary, type TakeResult } from './library.js';
import { WriteBack } from './local-debits.js';
import { NodeHealth } from './node-health.js';
import type { OpGroup } from './node-groups.js';
import { Presence } from './presence.js';
import { NOTHING_DECIDED, Settlement, type GroupResult, type LateReplies } from './settlement.js';
import { Topology } from './topology.js';
import type { RedisStore, RedisStoreOptions, StoreEvents, StoreLogger } from './options.js';

export type { RedisStore, RedisStoreEvents, RedisStoreOptions } from './options.js';

const CLOSE_TIMEOUT_MS = 1_000;
const ERROR_LOG_INTERVAL_MS = 10_000;
/** A MOVED batch is sent again at most this often (a resharding is in progress). */
const MAX_MOVED_ROUNDS = 3;

const SILENT_LOGGER: StoreLogger = { info() {}, warn() {}, error() {} };

/**
 * Creates the store; connects in the background (the server may start while
 * Redis is unreachable: the failure policy decides until it connects).
 * Throws SettingsError on a bad address and the fs error for an unreadable TLS file.
 */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStoreImpl(options);
}

class RedisStoreImpl implements RedisStore {
  readonly kind = 'redis' as const;
  readonly mode: 'single' | 'cluster';
  private readonly connection: RedisConnection;
  private readonly topology: Topology;
  private readonly library: RedisLibrary;
  private readonly batcher: Batcher;
  private readonly health_: NodeHealth;
  private readonly policy: FailurePolicy;
  private readonly local: MemoryStore;
  private readonly mirror: boolean;
  private readonly timeoutMs: number;
  private readonly logger: StoreLogger;
  private readonly events: Partial<StoreEvents>;
  private readonly global: GlobalLimits | undefined;
  private sidecarCount = 1;
  private readonly writeBack: WriteBack;
  private readonly settlement: Settlement;
  private readonly presence: Presence | undefined;
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
    this.local = options.local;
    this.mirror = options.mirror;
    this.policy = new FailurePolicy(options.onStoreFailure, options.local, options.fallbackDivisor === 'auto' ? 1 : options.fallbackDivisor);
    this.library = new RedisLibrary(client);
    this.health_ = new NodeHealth({
      ping: (node) => withRedisDeadline(this.topology.ping(node), this.timeoutMs, `PING ${node}`),
      onStateChange: (node, state, previous) => {
        if (state === 'open' && !this.closed) void this.topology.refresh();
        this.events.nodeState?.(node, state, previous);
      },
      ...options.breaker,
    });
    this.batcher = new Batcher(this.library, this.timeoutMs, {
      call: (node, seconds, ok) => {
        if (ok) this.health_.success(node);
        else this.health_.failure(node);
        this.events.call?.(node, seconds, ok);
      },
      timeout: (node) => this.events.timeout?.(node),
      lateReply: (node) => this.events.lateReply?.(node),
      extended: () => this.events.deadlineExtended?.(),
    });
    client.on('error', (error: unknown) => this.noteError(error, 'redis connection error'));
    // Through Sentinels: one that is down or refuses us (the others may still answer).
    client.on('sentinelError', (error: unknown) => this.noteError(error, 'redis sentinel error'));
    client.on('ready', () => {
      // Through Sentinels the server changes with each failover: say which master this is.
      this.logger.info({ mode: this.mode, node: this.connection.address, server: connectedServer(this.connection) }, 'redis store connected');
      void this.library.preload(client);
    });
    client.on('end', () => {
      if (!this.closed) this.logger.warn({ mode: this.mode }, 'redis store connection ended');
    });
    if (this.mode === 'cluster') {
      let known = '';
      (client as Cluster).on('refresh', () => {
        // ioredis refreshes the slot map every 2 s; act only when the masters changed (a failover).
        const masters = this.topology.masters();
        const current = masters.join(',');
        if (masters.length === 0 || current === known) return;
        known = current;
        this.health_.retain(new Set(masters));
        void this.library.preload(client);
      });
    }
    const regional = options.region !== undefined && options.regions !== undefined;
    if (options.fallbackDivisor === 'auto' || regional) {
      const presence = new Presence(this.library, `${options.redisKeyPrefix}{sidecars}presence`, this.timeoutMs,
        () => !this.closed && client.status === 'ready',
        (count) => {
          this.sidecarCount = count;
          if (options.fallbackDivisor === 'auto') this.policy.setDivisor(count);
          this.events.sidecars?.(count);
        },
        (error) => this.noteError(error, 'redis presence heartbeat failed; the local policy keeps its last divisor'));
      client.on('ready', () => void presence.beat());
      this.presence = presence;
    }
    this.writeBack = new WriteBack({
      library: this.library,
      topology: this.topology,
      health: this.health_,
      timeoutMs: this.timeoutMs,
      usable: () => !this.closed && client.status === 'ready',
      onError: (error) => this.noteError(error, 'redis write-back of local admissions failed; retrying'),
    });
    this.settlement = new Settlement({
      policy: this.policy,
      local: this.local,
      mirror: this.mirror,
      logger: this.logger,
      events: this.events,
      writeBack: this.writeBack,
      library: this.library,
      timeoutMs: this.timeoutMs,
      closed: () => this.closed,
      noteError: (error, msg) => this.noteError(error, msg),
    });
    this.global = !regional ? undefined : new GlobalLimits({
      ...options,
      region: options.region!,
      regions: options.regions!,
      library: this.library,
      topology: this.topology,
      sidecars: () => this.sidecarCount,
      events: this.events,
      onError: (error, message) => this.noteError(error, message),
    });
    client.connect().catch((error: unknown) => this.noteError(error, 'redis initial connect failed'));
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

  apply(given: readonly BucketOp[]): StoreDecision | Promise<StoreDecision> {
    if (given.length === 0) return { outcomes: [], fallback: undefined };
    const ops = this.global === undefined ? given : this.global.route(given);
    // Global limits: the lease and home buckets change by grants too, so the mirror cannot judge them.
    if (ops !== given) return this.decideGlobal(ops);
    if (this.mirror) {
      // What Redis last reported, refilled locally, can only have more tokens than Redis has now.
      const known = this.local.peek(ops);
      if (!known.commits) {
        this.events.localDenial?.();
        return { outcomes: known.outcomes, fallback: undefined };
      }
    }
    return this.decide(ops);
  }

  private async decideGlobal(ops: readonly BucketOp[]): Promise<StoreDecision> {
    const decision = await this.decide(ops);
    this.global!.observe(ops, decision.outcomes);
    return decision;
  }

  /**
   * Redis decides. The usual request — every key on one master whose breaker
   * is closed, nothing owed to Redis — costs one promise and no async frame;
   * anything else goes the general way (decideGroups, then combine).
   */
  private decide(ops: readonly BucketOp[]): Promise<StoreDecision> {
    const group = this.topology.soleGroup(ops);
    if (group === undefined || this.closed || this.health_.stateOf(group.node) !== 'closed' || this.writeBack.debits.size > 0) {
      return this.decideGroups(ops, group === undefined ? this.topology.groups(ops) : [group], 1)
        .then((results) => this.settlement.combine(ops, results));
    }
    return new Promise<StoreDecision>((resolve) => {
      const late: LateReplies = { final: undefined, pending: undefined };
      // None of these may throw (Batcher.enqueue): whatever goes wrong becomes this request's answer.
      this.batcher.enqueue(group.queue, {
        node: group.node,
        ops,
        routingKey: group.routingKey,
        resolve: (result) => {
          try {
            resolve(this.decidedAlone(ops, group, late, result));
          } catch (error: unknown) {
            this.failedAlone(ops, group, late, error, resolve);
          }
        },
        reject: (error) => this.failedAlone(ops, group, late, error, resolve),
        late: (reply) => {
          try {
            this.settlement.onLateReply(ops, group, late, reply);
          } catch (error: unknown) {
            this.noteErrorSafely(error, 'a late redis reply could not be read');
          }
        },
      });
    });
  }

  /** As runGroup's catch: the call failed or its reply could not be read, so the policy decides. */
  private failedAlone(ops: readonly BucketOp[], group: OpGroup, late: LateReplies, error: unknown, resolve: (decision: Promise<StoreDecision>) => void): void {
    this.noteErrorSafely(error, 'redis call failed; the store-failure policy decided');
    resolve(this.settlement.combine(ops, [{ ops, group, late, error }]));
  }

  /** What `combine` makes of one group that Redis decided, without its generality. */
  private decidedAlone(ops: readonly BucketOp[], group: OpGroup, late: LateReplies, result: TakeResult): StoreDecision | Promise<StoreDecision> {
    if (result.status === 'moved') {
      const moved: GroupResult = { ops, group, late, decided: { result, evaluation: NOTHING_DECIDED } };
      return this.nextRound(ops, [moved], 1).then((results) => this.settlement.combine(ops, results));
    }
    const evaluation = this.settlement.evaluateReply(ops, result);
    late.final = evaluation.commits ? 'allowed' : 'denied';
    // Denied by Redis: nothing was taken, so each op reports its untaken state.
    return { outcomes: evaluation.commits ? evaluation.outcomes : evaluation.evaluations.map((e) => e.untaken), fallback: undefined };
  }

  health(): StoreHealth {
    const status = this.client.status;
    const unavailable = this.health_.unavailable();
    const connected = status === 'ready';
    let detail = `redis ${this.mode} ${status}`;
    if (unavailable.length > 0) detail += `, unavailable: ${unavailable.join(', ')}`;
    if (this.lastError !== '' && (!connected || unavailable.length > 0)) detail += ` (last error: ${this.lastError})`;
    return { ready: connected && unavailable.length === 0 && !this.closed, detail };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.writeBack.stop();
    this.presence?.stop();
    this.global?.close();
    this.health_.close();
    this.connection.stopWatching();
    try {
      await withRedisDeadline(this.client.quit(), CLOSE_TIMEOUT_MS, 'QUIT');
    } catch {
      // Not connected or too slow: drop the sockets instead.
    }
    this.client.disconnect();
  }

  /** Sends each group; MOVED batches go again, slot by slot, to their new owners. Never rejects. */
  private async decideGroups(ops: readonly BucketOp[], groups: readonly OpGroup[], round: number): Promise<GroupResult[]> {
    // One group (every key of the request on one master: the usual case) needs no Promise.all.
    const results = groups.length === 1 ? [await this.runGroup(ops, groups[0]!)] : await Promise.all(groups.map((group) => this.runGroup(ops, group)));
    return this.nextRound(ops, results, round);
  }

  /** The results of round `round`, with the batches that came back MOVED sent again. */
  private async nextRound(ops: readonly BucketOp[], results: GroupResult[], round: number): Promise<GroupResult[]> {
    const moved = results.filter((r) => r.decided?.result.status === 'moved');
    if (moved.length === 0) return results;
    const settled = results.filter((r) => r.decided?.result.status !== 'moved');
    if (round >= MAX_MOVED_ROUNDS) {
      for (const r of moved) settled.push({ ...r, decided: undefined, error: new StoreCallError('redis: keys still moving after retries (resharding)') });
      return settled;
    }
    await this.topology.refresh();
    const again = moved.flatMap((r) => this.topology.groupsBySlot(ops, r.group.indices));
    return settled.concat(await this.decideGroups(ops, again, round + 1));
  }

  private async runGroup(ops: readonly BucketOp[], group: OpGroup): Promise<GroupResult> {
    const groupOps = group.indices.map((i) => ops[i]!);
    const late: LateReplies = { final: undefined, pending: undefined };
    const base = { ops: groupOps, group, late };
    if (this.closed) return { ...base, error: new StoreCallError('redis store is closed', { countsAsFailure: false }) };
    if (!this.health_.tryAcquire(group.node)) {
      return { ...base, error: new StoreCallError(`redis ${group.node} unavailable (circuit open; last error: ${this.lastError})`, { countsAsFailure: false }) };
    }
    try {
      // Admissions made locally while this key's master was down: Redis learns them before it decides again.
      const owed = this.writeBack.before(group, groupOps);
      if (owed !== undefined) await owed;
      const result = await this.batcher.submit(group.queue, group.node, group.routingKey, groupOps, (reply) => this.settlement.onLateReply(groupOps, group, late, reply));
      if (result.status === 'moved') return { ...base, decided: { result, evaluation: NOTHING_DECIDED } };
      return { ...base, decided: { result, evaluation: this.settlement.evaluateReply(groupOps, result) } };
    } catch (error: unknown) {
      this.noteError(error, 'redis call failed; the store-failure policy decided');
      return { ...base, error };
    }
  }

  /** noteError where a throw would strand other requests (a logger that throws is logged nowhere). */
  private noteErrorSafely(error: unknown, msg: string): void {
    try {
      this.noteError(error, msg);
    } catch {
      // The logger failed; the error is still this request's to answer.
    }
  }

  /** Remembers the error for health(); logs at most once per interval (no per-request logs). */
  private noteError(error: unknown, msg: string): void {
    this.lastError = redisErrorWords(error); // /readyz and circuit-open answers show it: our words
    const now = performance.now();
    if (this.closed || now - this.lastErrorLogMs < ERROR_LOG_INTERVAL_MS) return;
    this.lastErrorLogMs = now;
    this.logger.warn({ mode: this.mode, err: this.lastError, cause: errorMessage(error) }, msg);
  }
}


