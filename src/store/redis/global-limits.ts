/**
 * Limits with `scope: global`: one budget across regions, each with its own
 * Redis (docs/multi-region.md), by token leases.
 *
 * Each global key has a home region (a stable hash over the sorted region
 * names, core/regions.ts). The home region's Redis holds the global bucket
 * (`<key>:g`); its sidecars decide on it directly. Every other region spends
 * a lease in its own Redis (`<key>:lease:<region>`): tokens moved out of the
 * global bucket ahead of need, asynchronously, so no decision waits on another
 * region. The home bucket refills only up to what unexpired leases leave
 * (bucket plus leases never exceed the burst), so over any interval T the
 * regions together admit at most burst + rate × T, whatever the skew.
 *
 * A sidecar tracks the demand it sees per key; every LEASE_TICK_MS the keys
 * whose lease runs low or out (scaled by the region's sidecars) are claimed
 * region-wide (one claim per key and region at a time, lua `lease_claim`),
 * granted by their home region in one call per home node (`lease_grant`,
 * sized by demand, at most the burst) and deposited in this region
 * (`lease_deposit`, valid for less than the home counts them: the grant's age
 * and a margin are taken off). Tokens are moved, never copied: a grant whose
 * deposit fails is stranded (lost, counted), never granted twice.
 *
 * Each request also reports what the region's lease spent since the last
 * one (of the same lease generation): the home stops counting those tokens
 * as held, so its bucket refills into that room again. Without it a lease's
 * tokens would block the bucket until the lease expired, even when spent at
 * once (a region carrying all of a key's traffic would get about burst ÷
 * lease life). Reports only ever release tokens that were spent, so bucket
 * plus unspent leases still never exceed the burst.
 *
 * A home region that does not answer for PARTITION_AFTER_MS is unreachable:
 * this region keeps deciding from its lease, then from a static share of the
 * limit (burst and rate ÷ number of regions, a regional bucket
 * `<key>:share:<region>`); when the link answers again, leases resume.
 */
import { compileLimit } from '../../core/limit.js';
import { homeRegion, type RegionAddress } from '../../core/regions.js';
import type { BucketOp, BucketOutcome, LimitSpec } from '../../core/types.js';
import { createRedisConnection, type RedisConnection, type RedisConnectionOptions } from './connection.js';
import { withRedisDeadline } from './deadline.js';
import { TickClock, decayedRate } from './demand.js';
import { RedisLibrary } from './library.js';
import { Topology } from './topology.js';

/** How often leases are topped up. */
const LEASE_TICK_MS = 50;
/** A grant is counted by the home region this long; the region spends it for less (see DEPOSIT_MARGIN_US). */
const LEASE_TTL_US = 5_000_000;
/** Taken off a lease's life in the region on top of the grant's age: the deposit's own latency and clock-rate drift. */
const DEPOSIT_MARGIN_US = 250_000;
/** A lease is topped up when it ends within this. */
const REFRESH_BEFORE_MS = 2_000;
/** Leases are sized for this much of the region's demand. */
const LEASE_HORIZON_S = 1;
/** Deadline of one call to another region (60-150 ms one-way between regions). */
const REMOTE_DEADLINE_MS = 1_000;
/** A claim lasts this long: a sidecar that dies mid-refill frees the key for another. */
const CLAIM_TTL_US = 2_000_000;
/** A home region whose calls have failed for this long, with no success, is unreachable. */
const PARTITION_AFTER_MS = 1_000;
/** Keys followed per sidecar; those not seen for FORGET_AFTER_MS are dropped. */
const MAX_KEYS = 50_000;
const FORGET_AFTER_MS = 10_000;

export interface GlobalLimitEvents {
  /** Tokens asked of a home region (one claimed key). */
  leaseRequested(home: string, tokens: number): void;
  leaseGranted(home: string, tokens: number): void;
  /** Granted tokens whose deposit failed: lost to the budget (under-admission), never granted twice. */
  leaseStranded(tokens: number): void;
  regionReachable(region: string, reachable: boolean): void;
  /** A decision made from the static share (the key's home unreachable, its lease spent). */
  staticShare(): void;
}

export interface GlobalLimitsOptions extends RedisConnectionOptions {
  region: string;
  regions: readonly RegionAddress[];
  /** This region's script library and topology (claims and deposits go to our own Redis). */
  library: RedisLibrary;
  topology: Topology;
  /** Sidecars deciding in this region (their demand is this one's, roughly, times this). */
  sidecars(): number;
  events: Partial<GlobalLimitEvents>;
  onError(error: unknown, message: string): void;
}

/** What this sidecar knows of one global key homed elsewhere. */
interface KeyState {
  /** The lease op (key, lease spec) and the limit its home bucket has. */
  op: BucketOp;
  base: LimitSpec;
  home: string;
  /** Tokens asked here since the last tick, and the rate they add up to. */
  asked: number;
  rate: number;
  /** The lease's tokens at the last decision here, and whether a request found it short since. */
  remaining: number;
  starved: boolean;
  /** When the lease this sidecar deposited ends (local ms); 0 when unknown. */
  expiresAtMs: number;
  seenAtMs: number;
  inFlight: boolean;
}

interface Region {
  address: RegionAddress;
  connection: RedisConnection;
  library: RedisLibrary;
  topology: Topology;
  /** When the current run of failed calls began; 0 while calls succeed. */
  failingSinceMs: number;
  reachable: boolean;
}

/** A key this sidecar claimed for a refill, with what its lease reported spent. */
interface Claimed {
  state: KeyState;
  tokens: number;
  spent: number;
  gen: number;
}

interface Deposit {
  key: string;
  tokens: number;
  /** When the grant was asked for (local ms): the lease's life counts from then. */
  grantSentAtMs: number;
  gen: number;
  state: KeyState;
}

export class GlobalLimits {
  private readonly keys = new Map<string, KeyState>();
  private readonly remote = new Map<string, Region>();
  private readonly variants = { home_bucket: new WeakMap<LimitSpec, LimitSpec>(), lease: new WeakMap<LimitSpec, LimitSpec>() };
  private readonly shareSpecs = new WeakMap<LimitSpec, LimitSpec>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private soon = false;
  private readonly clock = new TickClock();

  constructor(private readonly options: GlobalLimitsOptions) {
    for (const address of options.regions) {
      if (address.name === options.region) continue;
      const connection = createRedisConnection({
        ...options, redis: address.redis, redisCluster: address.redisCluster, redisSentinel: undefined, natMap: address.natMap,
      });
      connection.client.on('error', (error: unknown) => options.onError(error, `redis of region ${address.name}: connection error`));
      connection.client.connect().catch((error: unknown) => options.onError(error, `redis of region ${address.name}: initial connect failed`));
      this.remote.set(address.name, {
        address, connection, library: new RedisLibrary(connection.client), topology: new Topology(connection),
        failingSinceMs: 0, reachable: true,
      });
    }
    this.timer = setInterval(() => void this.tick(true), LEASE_TICK_MS);
    this.timer.unref();
  }

  /**
   * The ops to decide in this region for a request: a global op becomes a
   * take on its home bucket (home here), on this region's lease, or — home
   * unreachable and lease spent — on the static share. Other ops are kept.
   * Returns `ops` itself when none is global.
   */
  route(ops: readonly BucketOp[]): readonly BucketOp[] {
    let routed: BucketOp[] | undefined;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.limit.scope !== 'global') continue;
      routed ??= [...ops];
      routed[i] = this.routeOne(op);
    }
    return routed ?? ops;
  }

  /** Learns from a decision on routed ops: the lease's tokens, and whether it ran short. */
  observe(routed: readonly BucketOp[], outcomes: readonly BucketOutcome[]): void {
    for (let i = 0; i < routed.length; i++) {
      const op = routed[i]!;
      if (op.limit.algorithm !== 'lease') continue;
      const known = this.keys.get(op.key);
      if (known === undefined) continue;
      const outcome = outcomes[i]!;
      known.remaining = outcome.remaining;
      if (!outcome.allowed) known.starved = true;
    }
  }

  /** This sidecar's region and a key's home region: its name, and its connection when it is another region's Redis. */
  home(key: string): { region: string; home: string; remote: Pick<Region, 'connection' | 'topology'> | undefined } {
    const home = homeRegion(this.options.regions, key);
    return { region: this.options.region, home, remote: this.remote.get(home) };
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const region of this.remote.values()) region.connection.client.disconnect();
  }

  private routeOne(op: BucketOp): BucketOp {
    const home = homeRegion(this.options.regions, op.key);
    const share = this.shareOp(op);
    // This region's Redis failing: the static share decides, home bucket or lease alike (failure-policy.ts).
    if (home === this.options.region) return { ...op, key: `${op.key}:g`, limit: this.homeSpec(op.limit), fallback: share };
    const lease = { ...op, key: `${op.key}:lease:${this.options.region}`, limit: this.leaseSpec(op.limit) };
    const state = this.follow(lease, op.limit, home);
    state.asked += op.cost;
    const region = this.remote.get(home);
    if (region !== undefined && !region.reachable && (state.remaining < Math.max(1, op.cost) || state.starved)) {
      this.options.events.staticShare?.();
      return share;
    }
    return { ...lease, fallback: share };
  }

  private follow(lease: BucketOp, base: LimitSpec, home: string): KeyState {
    const nowMs = performance.now();
    let state = this.keys.get(lease.key);
    if (state === undefined) {
      state = { op: lease, base, home, asked: 0, rate: 0, remaining: 0, starved: true, expiresAtMs: 0, seenAtMs: nowMs, inFlight: false };
      this.keys.set(lease.key, state);
      // A key never seen here has no lease yet: ask at once rather than at the next tick.
      if (!this.soon) {
        this.soon = true;
        setImmediate(() => {
          this.soon = false;
          void this.tick(false);
        });
      }
      if (this.keys.size > MAX_KEYS) this.keys.delete(this.keys.keys().next().value!);
    }
    state.seenAtMs = nowMs;
    return state;
  }

  /** The limit as its home bucket decides it (core/algorithms/home-bucket.ts). */
  private homeSpec(limit: LimitSpec): LimitSpec {
    return this.variant(limit, 'home_bucket', 'H');
  }

  /** The limit as a region's lease decides it (core/algorithms/lease.ts). */
  private leaseSpec(limit: LimitSpec): LimitSpec {
    return this.variant(limit, 'lease', 'L');
  }

  private variant(limit: LimitSpec, algorithm: 'home_bucket' | 'lease', mark: string): LimitSpec {
    const specs = this.variants[algorithm];
    let spec = specs.get(limit);
    if (spec === undefined) {
      spec = Object.freeze({ ...limit, algorithm, fingerprint: `${limit.fingerprint}${mark}` });
      specs.set(limit, spec);
    }
    return spec;
  }

  /** The static share: burst and rate divided by the number of regions (at least 1), a regional bucket. */
  private shareOp(op: BucketOp): BucketOp {
    let spec = this.shareSpecs.get(op.limit);
    if (spec === undefined) {
      const n = this.options.regions.length;
      const share = (x: number): number => (x === 0 ? 0 : Math.max(1, Math.floor(x / n)));
      spec = compileLimit({
        requestsPerUnit: share(op.limit.requestsPerUnit), burst: share(op.limit.burst), unit: op.limit.unit,
        unitMultiplier: op.limit.unitMultiplier, name: op.limit.name,
      });
      this.shareSpecs.set(op.limit, spec);
    }
    return { ...op, key: `${op.key}:share:${this.options.region}`, limit: spec };
  }

  /** One round: which leases need tokens, claim them region-wide, ask their homes, deposit. `timed`: the regular tick (updates demand). */
  private async tick(timed: boolean): Promise<void> {
    if (this.closed) return;
    const nowMs = performance.now();
    const seconds = timed ? this.clock.lap(nowMs) : 0;
    const wanted: { state: KeyState; tokens: number }[] = [];
    const sidecars = Math.max(1, this.options.sidecars());
    for (const [key, state] of this.keys) {
      if (timed) {
        state.rate = decayedRate(state.rate, state.asked, seconds);
        state.asked = 0;
      }
      if (nowMs - state.seenAtMs > FORGET_AFTER_MS) {
        this.keys.delete(key);
        continue;
      }
      if (state.inFlight || state.op.limit.refillPerTick === 0) continue;
      const tokens = Math.min(state.op.limit.burst, Math.max(1, Math.ceil(state.rate * sidecars * LEASE_HORIZON_S)));
      const low = state.starved || state.remaining < tokens / 2 || (state.expiresAtMs > 0 && state.expiresAtMs - nowMs < REFRESH_BEFORE_MS);
      if (low && (state.rate > 0 || state.starved)) wanted.push({ state, tokens });
    }
    if (wanted.length === 0) return;
    for (const { state } of wanted) state.inFlight = true;
    try {
      const claimed = await this.claim(wanted);
      const byHome = new Map<string, Claimed[]>();
      for (const item of claimed) {
        const list = byHome.get(item.state.home) ?? [];
        list.push(item);
        byHome.set(item.state.home, list);
      }
      await Promise.all([...byHome].map(([home, items]) => this.refill(home, items)));
    } finally {
      for (const { state } of wanted) state.inFlight = false;
    }
  }

  /** Claims the keys in this region's Redis; resolves with those this sidecar may refill, with what their leases spent. */
  private async claim(wanted: { state: KeyState; tokens: number }[]): Promise<Claimed[]> {
    const ops = wanted.map(({ state }) => state.op);
    const claimed: Claimed[] = [];
    await Promise.all(this.options.topology.groups(ops).map(async (group) => {
      try {
        const won = await withRedisDeadline(this.options.library.leaseClaim(group.routingKey, group.indices.map((i) => ops[i]!.key), CLAIM_TTL_US),
          REMOTE_DEADLINE_MS, 'lease claim');
        group.indices.forEach((i, k) => {
          const claim = won[k];
          if (claim?.claimed === true) claimed.push({ ...wanted[i]!, spent: claim.spent, gen: claim.gen });
        });
      } catch (error: unknown) {
        this.options.onError(error, 'lease claim failed in this region');
      }
    }));
    return claimed;
  }

  /** Asks `home` for tokens (one call per home node), then deposits what came back here. */
  private async refill(home: string, items: Claimed[]): Promise<void> {
    const region = this.remote.get(home);
    if (region === undefined) return;
    const homeOps = items.map(({ state }) => ({ ...state.op, key: state.op.key.replace(/:lease:[^:]+$/, ':g') }));
    const deposits: Deposit[] = [];
    await Promise.all(region.topology.groups(homeOps).map(async (group) => {
      const grants = group.indices.map((i) => {
        const { state, tokens, spent, gen } = items[i]!;
        this.options.events.leaseRequested?.(home, tokens);
        return { key: homeOps[i]!.key, limit: this.homeSpec(state.base), wanted: tokens, spent, gen };
      });
      const sentAtMs = performance.now();
      try {
        const { granted, gens } = await withRedisDeadline(
          region.library.leaseGrant(group.routingKey, this.options.region, LEASE_TTL_US, grants), REMOTE_DEADLINE_MS, `lease grant from ${home}`);
        this.reached(region, true);
        group.indices.forEach((i, k) => {
          const tokens = granted[k] ?? 0;
          if (tokens > 0) this.options.events.leaseGranted?.(home, tokens);
          deposits.push({ key: items[i]!.state.op.key, tokens, grantSentAtMs: sentAtMs, gen: gens[k] ?? 0, state: items[i]!.state });
        });
      } catch (error: unknown) {
        this.reached(region, false);
        this.options.onError(error, `lease grant from region ${home} failed`);
        // Free the claims at once (a deposit of nothing), so a retry need not wait for their TTL.
        group.indices.forEach((i) => deposits.push({ key: items[i]!.state.op.key, tokens: 0, grantSentAtMs: sentAtMs, gen: 0, state: items[i]!.state }));
      }
    }));
    await this.deposit(deposits);
  }

  private async deposit(deposits: Deposit[]): Promise<void> {
    if (deposits.length === 0) return;
    const ops = deposits.map((d) => d.state.op);
    await Promise.all(this.options.topology.groups(ops).map(async (group) => {
      // The lease's life is taken from the grant's request to this deposit (other home nodes' grants may have come later).
      const sendingAtMs = performance.now();
      const items = group.indices.map((i) => {
        const d = deposits[i]!;
        return { ...d, ttlUs: d.tokens > 0 ? LEASE_TTL_US - (sendingAtMs - d.grantSentAtMs) * 1000 - DEPOSIT_MARGIN_US : 0 };
      });
      try {
        await withRedisDeadline(this.options.library.leaseDeposit(group.routingKey, items), REMOTE_DEADLINE_MS, 'lease deposit');
        const nowMs = performance.now();
        for (const item of items) {
          if (item.tokens <= 0) continue;
          item.state.remaining += item.tokens;
          item.state.starved = false;
          item.state.expiresAtMs = nowMs + item.ttlUs / 1000;
        }
      } catch (error: unknown) {
        const lost = items.reduce((sum, item) => sum + item.tokens, 0);
        if (lost > 0) this.options.events.leaseStranded?.(lost);
        this.options.onError(error, `lease deposit failed: ${lost} granted tokens stranded`);
      }
    }));
  }

  /** A region is unreachable once its calls have failed, with no success in between, for PARTITION_AFTER_MS. */
  private reached(region: Region, ok: boolean): void {
    const nowMs = performance.now();
    if (ok) region.failingSinceMs = 0;
    else if (region.failingSinceMs === 0) region.failingSinceMs = nowMs;
    const reachable = ok || nowMs - region.failingSinceMs < PARTITION_AFTER_MS;
    if (reachable !== region.reachable) {
      region.reachable = reachable;
      this.options.events.regionReachable?.(region.address.name, reachable);
    }
  }
}
