// Health per Redis master: its circuit breaker, what is wrong with it, and the
// background probes that find out when it is back (or gone, while idle).
import { errorMessage } from '../../errors.js';
import { backoffDelayMs, type BackoffSteps } from './backoff.js';
import { CircuitBreaker, type BreakerState } from './circuit-breaker.js';
import { redisErrorWords } from './error-words.js';
import { misconfigurationOf, type Misconfiguration } from './misconfiguration.js';
import { UNKNOWN_NODE } from './node-groups.js';

/** Probes of a node that is down: 250 ms, 500 ms, 1 s, then every 2 s (each ±20 %). */
const DOWN_PROBES: BackoffSteps = { baseMs: 250, maxMs: 2_000 };
/** A master with no successful call for this long is probed (a dead idle master is seen within about a second). */
const IDLE_PROBE_MS = 1_000;
/** While a node stays down, one reminder at most this often. */
const REMINDER_MS = 60_000;

/** Socket codes and ioredis messages that say the connection is gone: the node is down now, not maybe. */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
const CONNECTION_MESSAGES = /Stream isn't writeable|Connection is closed|enableOfflineQueue|Cluster isn't ready|connect ECONNREFUSED/i;

function connectionLost(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return (typeof code === 'string' && CONNECTION_CODES.has(code)) || CONNECTION_MESSAGES.test(errorMessage(error));
}

interface NodeHealthEvents {
  /** The node's breaker opened or closed; `reason` in our words (the last error, or "answering again"). */
  state(node: string, state: BreakerState, previous: BreakerState, reason: string, misconfigured: boolean): void;
  /** The node has been down for `downMs` (at most once a minute per node). */
  stillDown(node: string, reason: string, downMs: number, misconfigured: boolean): void;
  /** The node's misconfiguration was found (a cause) or is gone (undefined). */
  misconfigured(node: string, misconfiguration: Misconfiguration | undefined): void;
}

export interface NodeHealthOptions {
  /**
   * One call that exercises what decisions need on `node` (the script, on a
   * key of ours that the node serves), within a deadline; rejects as the
   * node's decisions would fail.
   */
  probe(node: string): Promise<unknown>;
  /** The masters serving slots now (probed while idle). */
  masters(): readonly string[];
  events: NodeHealthEvents;
  failureThreshold?: number;
  nowMs?: () => number;
}

interface NodeState {
  readonly breaker: CircuitBreaker;
  /** When a call or probe last succeeded. */
  okAtMs: number;
  downSinceMs: number;
  remindedAtMs: number;
  attempt: number;
  timer: NodeJS.Timeout | undefined;
  probing: boolean;
  reason: string;
  misconfiguration: Misconfiguration | undefined;
}

/**
 * One CircuitBreaker per master ("host:port"). A node's breaker opens after
 * consecutive failed calls to that node (errors, real deadline misses), or at
 * once when its connection closes, a connect is refused or Redis is
 * misconfigured; never because of another node. No decision waits on a node
 * that is down: its keys go to the failure policy (or, misconfigured, are
 * refused) at once, while the node is probed in the background with the
 * script itself (not PING: a Redis that answers PING but refuses scripts,
 * OOM or NOPERM, is not up) on a jittered, capped exponential backoff. A
 * master without traffic is probed every second, so a dead idle master is
 * named as soon as one with traffic.
 */
export class NodeHealth {
  private readonly nodes = new Map<string, NodeState>();
  private readonly idleTimer: NodeJS.Timeout;
  private readonly nowMs: () => number;
  private closed = false;
  /** How many nodes are misconfigured now (why() looks further only when some are). */
  private misconfiguredNodes = 0;

  constructor(private readonly options: NodeHealthOptions) {
    this.nowMs = options.nowMs ?? (() => performance.now());
    this.idleTimer = setInterval(() => this.probeIdle(), IDLE_PROBE_MS);
    this.idleTimer.unref();
  }

  private node(node: string): NodeState {
    let state = this.nodes.get(node);
    if (state === undefined) {
      const breaker = new CircuitBreaker(this.options.failureThreshold === undefined ? {} : { failureThreshold: this.options.failureThreshold });
      const created: NodeState = {
        breaker, okAtMs: this.nowMs(), downSinceMs: 0, remindedAtMs: 0, attempt: 0, timer: undefined, probing: false, reason: '', misconfiguration: undefined,
      };
      breaker.onStateChange((next, previous) => this.changed(node, created, next, previous));
      this.nodes.set(node, created);
      state = created;
    }
    return state;
  }

  /** May a call go to `node` now? (false while it is down). */
  tryAcquire(node: string): boolean {
    return this.closed || this.nodes.get(node)?.breaker.state !== 'open';
  }

  /**
   * Why `node` is down, in our words, and whether it is misconfigured. Keys
   * whose node is unknown (a Cluster refused at connect has no slot map)
   * share any misconfiguration found.
   */
  why(node: string): { reason: string; misconfiguration: Misconfiguration | undefined } {
    const state = this.nodes.get(node);
    let misconfiguration = state?.misconfiguration;
    if (misconfiguration === undefined && this.misconfiguredNodes > 0 && node === UNKNOWN_NODE) {
      misconfiguration = [...this.nodes.values()].find((other) => other.misconfiguration !== undefined)?.misconfiguration;
    }
    return { reason: state?.reason ?? '', misconfiguration };
  }

  success(node: string): void {
    const state = this.nodes.get(node);
    if (state === undefined) return;
    state.okAtMs = this.nowMs();
    state.attempt = 0;
    if (state.misconfiguration !== undefined) {
      state.misconfiguration = undefined;
      this.misconfiguredNodes--;
      this.options.events.misconfigured(node, undefined);
    }
    state.breaker.success();
  }

  /**
   * A call to `node` failed with `error`. A closed connection, a refused
   * connect or a misconfiguration opens the breaker at once; other failures
   * (deadline misses, error replies) count towards the threshold.
   */
  failure(node: string, error: unknown): void {
    // A late failure of a node that a failover replaced (a call sent before
    // the new slot map, failing after it): that node is gone for good, and
    // tracking it again would report it down, and the server not ready, until
    // the masters change again. Before the first slot map every node counts.
    if (!this.nodes.has(node) && !this.mayTrack(node)) return;
    const state = this.node(node);
    const misconfiguration = misconfigurationOf(error);
    state.reason = misconfiguration?.words ?? redisErrorWords(error);
    if (misconfiguration !== undefined && misconfiguration !== state.misconfiguration) {
      if (state.misconfiguration === undefined) this.misconfiguredNodes++;
      state.misconfiguration = misconfiguration;
      this.options.events.misconfigured(node, misconfiguration);
    }
    if (misconfiguration !== undefined || connectionLost(error)) state.breaker.trip();
    else state.breaker.failure();
  }

  /** The node's connection is up again (a reconnect): probe it now rather than at its next backoff step. */
  reconnected(node: string): void {
    const state = this.nodes.get(node);
    if (state === undefined || state.breaker.state === 'closed') return;
    clearTimeout(state.timer);
    state.timer = undefined;
    this.probe(node, state);
  }

  /** Whether a node not tracked yet may be: a current master, or any node before the first slot map. */
  private mayTrack(node: string): boolean {
    const masters = this.options.masters();
    return masters.length === 0 || masters.includes(node);
  }

  /** Nodes that are down. */
  unavailable(): string[] {
    return [...this.nodes].filter(([, state]) => state.breaker.state === 'open').map(([node]) => node);
  }

  /** Nodes whose Redis is misconfigured, with the cause. */
  misconfigured(): { node: string; misconfiguration: Misconfiguration }[] {
    return [...this.nodes].flatMap(([node, state]) => state.misconfiguration === undefined ? [] : [{ node, misconfiguration: state.misconfiguration }]);
  }

  stateOf(node: string): BreakerState {
    return this.nodes.get(node)?.breaker.state ?? 'closed';
  }

  /** Forgets nodes that no longer serve slots (a failover replaced them); their state is reported closed. */
  retain(current: ReadonlySet<string>): void {
    for (const [node, state] of this.nodes) {
      if (current.has(node)) continue;
      clearTimeout(state.timer);
      this.nodes.delete(node);
      if (state.misconfiguration !== undefined) {
        this.misconfiguredNodes--;
        this.options.events.misconfigured(node, undefined);
      }
      if (state.breaker.state !== 'closed') this.options.events.state(node, 'closed', state.breaker.state, 'no longer a master', false);
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.idleTimer);
    for (const state of this.nodes.values()) clearTimeout(state.timer);
  }

  private changed(node: string, state: NodeState, next: BreakerState, previous: BreakerState): void {
    const misconfigured = state.misconfiguration !== undefined;
    if (next === 'open') {
      state.downSinceMs = this.nowMs();
      state.remindedAtMs = state.downSinceMs;
      state.attempt = 0;
      this.schedule(node, state);
    } else {
      clearTimeout(state.timer);
      state.timer = undefined;
    }
    this.options.events.state(node, next, previous, next === 'open' ? state.reason : 'answering again', misconfigured);
  }

  private schedule(node: string, state: NodeState): void {
    if (this.closed || state.timer !== undefined) return;
    state.attempt++;
    state.timer = setTimeout(() => {
      state.timer = undefined;
      this.probe(node, state);
    }, backoffDelayMs(state.attempt, DOWN_PROBES));
    state.timer.unref();
  }

  private probe(node: string, state: NodeState): void {
    if (this.closed || state.probing || this.nodes.get(node) !== state) return;
    state.probing = true;
    this.options.probe(node).then(
      () => {
        state.probing = false;
        if (this.nodes.get(node) === state) this.success(node);
      },
      (error: unknown) => {
        state.probing = false;
        if (this.closed || this.nodes.get(node) !== state) return;
        this.failure(node, error);
        if (state.breaker.state !== 'open') return;
        const nowMs = this.nowMs();
        if (nowMs - state.remindedAtMs >= REMINDER_MS) {
          state.remindedAtMs = nowMs;
          this.options.events.stillDown(node, state.reason, nowMs - state.downSinceMs, state.misconfiguration !== undefined);
        }
        this.schedule(node, state);
      },
    );
  }

  /** Masters with no successful call for a second are probed: a dead master is found without traffic. */
  private probeIdle(): void {
    if (this.closed) return;
    const nowMs = this.nowMs();
    for (const node of this.options.masters()) {
      const state = this.node(node);
      if (state.breaker.state === 'closed' && nowMs - state.okAtMs >= IDLE_PROBE_MS) this.probe(node, state);
    }
  }
}
