// The typed face of lua/openclaw.lua: loading, argument encoding, reply decoding.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { algorithmOf } from '../../core/algorithms/table.js';
import type { BucketState } from '../../core/bucket.js';
import type { BucketOp, LimitSpec } from '../../core/types.js';
import { InternalError, StoreCallError } from '../../errors.js';
import type { RedisClient } from './connection.js';

/** The script text, read once from the package's lua/ folder (same relative path from src/ and dist/). */
function readLibrary(): string {
  try {
    return readFileSync(new URL('../../../lua/openclaw.lua', import.meta.url), 'utf8');
  } catch (error: unknown) {
    throw new InternalError('lua/openclaw.lua is missing from the installation', { cause: error });
  }
}

export const LIBRARY_LUA = readLibrary();
/** SHA1 of the script, as EVALSHA uses it; pinned in a test so a change is deliberate. */
export const LIBRARY_SHA = createHash('sha1').update(LIBRARY_LUA).digest('hex');
const COMMAND = 'openclawRl';

/** Integers per op in a `take` reply: the op key's state (level, tsUs, extra) when its batch began. */
const STATE_FIELDS = 3;
/** Most keys in one MGET (Lua's unpack has a stack limit near 8000). */
const MAX_KEYS_PER_READ = 1_000;

type BatchStatus = 'denied' | 'committed' | 'moved';
const STATUS: readonly BatchStatus[] = ['denied', 'committed', 'moved'];

/** One batch of a `take` reply. */
export interface TakeResult {
  status: BatchStatus;
  /** Redis TIME of the call, µs. */
  nowUs: number;
  /** Per op of the batch: its key's state when the batch began (null = none: a full bucket). */
  states: (BucketState | null)[];
}

/** How local leases are granted: their life in Redis, the largest share of a bucket one grant takes (1/share), the smallest grant. */
export interface LeaseTerms {
  ttlUs: number;
  share: number;
  minimum: number;
}

export interface LeaseHoldItem {
  key: string;
  limit: LimitSpec;
  wanted: number;
  held: number;
  returned: number;
}

export interface LeaseHoldResult {
  granted: number;
  /** The lease was live in Redis, so `held` still counts (else those tokens are gone). */
  kept: boolean;
  bucketTokens: number;
  /** false: the node does not serve the key (a resharding moved it); nothing changed. */
  served: boolean;
}

type ScriptCall = (numKeys: number, routingKey: string, ...argv: string[]) => Promise<unknown>;

/** The limit table of one call: each distinct limit once (its algorithm's code and arguments), ops refer to it by index. */
class LimitTable {
  readonly argv: string[] = ['0'];
  private readonly index = new Map<LimitSpec, number>();

  indexOf(limit: LimitSpec): number {
    let at = this.index.get(limit);
    if (at === undefined) {
      at = this.index.size + 1;
      this.index.set(limit, at);
      this.argv.push(...limitValues(limit));
      this.argv[0] = String(at);
    }
    return at;
  }

  get size(): number {
    return this.index.size;
  }
}

const limitValueCache = new WeakMap<LimitSpec, readonly string[]>();

function limitValues(limit: LimitSpec): readonly string[] {
  let values = limitValueCache.get(limit);
  if (values === undefined) {
    const algorithm = algorithmOf(limit);
    values = Object.freeze([algorithm.code, ...algorithm.limitArgs(limit)]);
    limitValueCache.set(limit, values);
  }
  return values;
}

/**
 * The keys of one call, each once, in read groups (lua/openclaw.lua reads a
 * group with one MGET): on a Cluster the keys of one hash tag (one slot), on
 * one node every key.
 */
class KeyTable {
  private readonly groups: string[][] = [];
  /** The group still taking keys, per read group id (hash tag, or '' on one node). */
  private readonly open = new Map<string, number>();
  /** Each key's group and place in it. */
  private readonly places = new Map<string, { group: number; at: number }>();

  constructor(private readonly bySlot: boolean) {}

  add(op: BucketOp): void {
    if (this.places.has(op.key)) return;
    const id = this.bySlot ? op.slotTag : '';
    let group = this.open.get(id);
    if (group === undefined || this.groups[group]!.length >= MAX_KEYS_PER_READ) {
      group = this.groups.push([]) - 1;
      this.open.set(id, group);
    }
    this.places.set(op.key, { group, at: this.groups[group]!.length });
    this.groups[group]!.push(op.key);
  }

  /** G, then each group's size and keys; and each key's 1-based index among all keys. */
  encode(): { argv: string[]; indexOf: (key: string) => number } {
    const argv = [String(this.groups.length)];
    const offsets: number[] = [];
    let count = 0;
    for (const group of this.groups) {
      offsets.push(count);
      argv.push(String(group.length), ...group);
      count += group.length;
    }
    return {
      argv,
      indexOf: (key) => {
        const place = this.places.get(key)!;
        return offsets[place.group]! + place.at + 1;
      },
    };
  }
}

/** An op's word: limit index + (L + 1) × flags, flags = joins the previous op's batch + 2 × shadow + 4 × report + 8 × quota group (0: none). */
function opWord(op: BucketOp, limitIndex: number, limits: number, joins: boolean): string {
  const group = op.quotaGroup === undefined ? 0 : op.quotaGroup + 1;
  const flags = (joins ? 1 : 0) + (op.shadow ? 2 : 0) + (op.report === true ? 4 : 0) + 8 * group;
  return String(limitIndex + (limits + 1) * flags);
}

/** lua/openclaw.lua on one client, by EVALSHA with EVAL on NOSCRIPT (ioredis defineCommand). */
export class RedisLibrary {
  private readonly call: ScriptCall;
  /** A Cluster: keys are read one slot (hash tag) at a time. */
  private readonly cluster: boolean;

  constructor(client: RedisClient) {
    this.cluster = 'nodes' in client && typeof client.nodes === 'function';
    client.defineCommand(COMMAND, { lua: LIBRARY_LUA });
    this.call = (client as unknown as Record<typeof COMMAND, ScriptCall>)[COMMAND].bind(client);
  }

  /**
   * Loads the script on every master (SCRIPT LOAD is not replicated), so the
   * first decisions after a connect or a failover need no NOSCRIPT round trip.
   * Best effort: EVALSHA falls back to EVAL anyway.
   */
  async preload(client: RedisClient): Promise<void> {
    const nodes = 'nodes' in client && typeof client.nodes === 'function' ? client.nodes('master') : [client];
    await Promise.allSettled(nodes.map((node) => node.script('LOAD', LIBRARY_LUA)));
  }

  /**
   * Decides batches (each one request's ops on the node that serves
   * `routingKey`) in one call. Rejects with the call's error; a malformed
   * reply is a StoreCallError.
   */
  async take(routingKey: string, batches: readonly (readonly BucketOp[])[]): Promise<TakeResult[]> {
    const limits = new LimitTable();
    const keys = new KeyTable(this.cluster);
    let opCount = 0;
    for (const ops of batches) {
      opCount += ops.length;
      for (const op of ops) {
        limits.indexOf(op.limit);
        keys.add(op);
      }
    }
    const { argv: keyValues, indexOf } = keys.encode();
    const opValues: string[] = new Array(3 * opCount);
    let at = 0;
    for (const ops of batches) {
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i]!;
        opValues[at++] = String(indexOf(op.key));
        opValues[at++] = opWord(op, limits.indexOf(op.limit), limits.size, i > 0);
        opValues[at++] = String(op.cost);
      }
    }
    const reply = await this.call(1, routingKey, 'take', ...limits.argv, ...keyValues, ...opValues);
    return decodeTake(reply, batches, opCount);
  }

  /** Takes `cost` of each op unconditionally (see lua/openclaw.lua `debit`): admissions Redis did not see. Resolves with Redis's time, µs. */
  async debit(routingKey: string, ops: readonly BucketOp[]): Promise<{ nowUs: number; shortfall: number }> {
    const table = new LimitTable();
    const values: string[] = [];
    for (const op of ops) values.push(op.key, String(table.indexOf(op.limit)), String(op.cost));
    const reply = await this.call(1, routingKey, 'debit', ...table.argv, ...values);
    return { nowUs: redisTime(reply, 'debit'), shortfall: Number((reply as unknown[])[2] ?? 0) };
  }

  /** Marks `member` present in the sorted set `key` for `ttlUs`; resolves with how many members are present. */
  async presence(key: string, member: string, ttlUs: number): Promise<number> {
    const count = await this.call(1, key, 'presence', member, String(ttlUs));
    if (typeof count !== 'number') throw new StoreCallError('redis: unexpected reply from lua/openclaw.lua presence');
    return count;
  }

  /**
   * Claims lease refills (SET NX of each `<lease key>:p` for ttlUs). Where
   * this call claimed, also takes the tokens spent from the lease since its
   * last report, with the lease's generation, to go to the home region.
   */
  async leaseClaim(routingKey: string, leaseKeys: readonly string[], ttlUs: number): Promise<{ claimed: boolean; spent: number; gen: number }[]> {
    const reply = await this.call(1, routingKey, 'lease_claim', String(ttlUs), ...leaseKeys);
    if (!Array.isArray(reply) || reply.length !== 3 * leaseKeys.length) throw new StoreCallError('redis: unexpected reply from lua/openclaw.lua lease_claim');
    const values = reply as number[];
    return leaseKeys.map((_, i) => ({ claimed: values[3 * i] === 1, spent: values[3 * i + 1]!, gen: values[3 * i + 2]! }));
  }

  /**
   * In a key's home region: releases what `region` reports spent of its lease
   * (same generation), then moves up to `wanted` tokens of each global bucket
   * into the lease, valid ttlUs. Resolves with Redis's time and, per item,
   * the tokens granted and the lease's generation.
   */
  async leaseGrant(routingKey: string, region: string, ttlUs: number,
    items: readonly { key: string; limit: LimitSpec; wanted: number; spent: number; gen: number }[]): Promise<{ nowUs: number; granted: number[]; gens: number[] }> {
    const table = new LimitTable();
    const values: string[] = [];
    for (const item of items) values.push(item.key, String(table.indexOf(item.limit)), String(item.wanted), String(item.spent), String(item.gen));
    const reply = await this.call(1, routingKey, 'lease_grant', ...table.argv, region, String(ttlUs), ...values);
    if (!Array.isArray(reply) || reply.length !== 1 + 2 * items.length || !reply.every((v) => typeof v === 'number')) {
      throw new StoreCallError('redis: unexpected reply from lua/openclaw.lua lease_grant');
    }
    const numbers = reply as number[];
    return {
      nowUs: numbers[0]!,
      granted: items.map((_, i) => numbers[1 + 2 * i]!),
      gens: items.map((_, i) => numbers[2 + 2 * i]!),
    };
  }

  /** Adds granted tokens to this region's leases (each valid ttlUs from now, of its generation) and frees their claims. */
  async leaseDeposit(routingKey: string, items: readonly { key: string; tokens: number; ttlUs: number; gen: number }[]): Promise<void> {
    const values: string[] = [];
    for (const item of items) values.push(item.key, String(item.tokens), String(Math.max(0, Math.floor(item.ttlUs))), String(item.gen));
    await this.call(1, routingKey, 'lease_deposit', ...values);
  }

  /**
   * Moves tokens between buckets and this sidecar's local leases of them
   * (lua/openclaw.lua `lease_hold`): per item, what the sidecar still holds
   * and keeps, what it gives back, and what more it wants. Resolves per item
   * with the tokens granted, whether `held` still counted (the lease was
   * live in Redis), the bucket's tokens after, and whether this node served
   * the key.
   */
  async leaseHold(routingKey: string, member: string, terms: LeaseTerms, items: readonly LeaseHoldItem[]): Promise<LeaseHoldResult[]> {
    const table = new LimitTable();
    const values: string[] = [];
    for (const item of items) {
      values.push(item.key, String(table.indexOf(item.limit)), String(item.wanted), String(item.held), String(item.returned));
    }
    const reply = await this.call(1, routingKey, 'lease_hold', ...table.argv, member, String(terms.ttlUs), String(terms.share),
      String(terms.minimum), ...values);
    if (!Array.isArray(reply) || reply.length !== 1 + 4 * items.length || !reply.every((v) => typeof v === 'number')) {
      throw new StoreCallError('redis: unexpected reply from lua/openclaw.lua lease_hold');
    }
    const numbers = reply as number[];
    return items.map((_, i) => ({
      granted: numbers[1 + 4 * i]!,
      kept: numbers[2 + 4 * i] === 1,
      bucketTokens: numbers[3 + 4 * i]!,
      served: numbers[4 + 4 * i] !== 2,
    }));
  }

  /** Gives back `cost` of each op (see lua/openclaw.lua `refund`); `chargedStartUs` per op for windows. Resolves with Redis's time, µs. */
  async refund(routingKey: string, ops: readonly BucketOp[], chargedStartUs: readonly number[]): Promise<number> {
    const table = new LimitTable();
    const values: string[] = [];
    ops.forEach((op, i) => values.push(op.key, String(table.indexOf(op.limit)), String(op.cost), String(chargedStartUs[i] ?? 0)));
    return redisTime(await this.call(1, routingKey, 'refund', ...table.argv, ...values), 'refund');
  }
}

/** The time of a refund or debit reply ({ nowUs, changed }). */
function redisTime(reply: unknown, operation: string): number {
  if (!Array.isArray(reply) || typeof reply[0] !== 'number') throw new StoreCallError(`redis: unexpected reply from lua/openclaw.lua ${operation}`);
  return reply[0];
}

function decodeTake(reply: unknown, batches: readonly (readonly BucketOp[])[], opCount: number): TakeResult[] {
  const expected = 1 + batches.length + opCount * STATE_FIELDS;
  if (!Array.isArray(reply) || reply.length !== expected) {
    throw new StoreCallError(`redis: unexpected reply from lua/openclaw.lua take (${String(reply).slice(0, 80)})`);
  }
  const values = reply as unknown[];
  const nowUs = values[0];
  if (typeof nowUs !== 'number') throw new StoreCallError('redis: lua/openclaw.lua take returned no time');
  const results: TakeResult[] = new Array(batches.length);
  let at = 1;
  for (let b = 0; b < batches.length; b++) {
    const status = STATUS[values[at] as number];
    if (status === undefined) throw new StoreCallError(`redis: bad batch status ${String(values[at])} from lua/openclaw.lua`);
    at++;
    const count = batches[b]!.length;
    const states: (BucketState | null)[] = new Array(count);
    for (let i = 0; i < count; i++, at += STATE_FIELDS) {
      // No state: a time of -1 (a token budget's level may be negative, a state's time never is).
      const tsUs = values[at + 1] as number;
      states[i] = tsUs < 0 ? null : algorithmOf(batches[b]![i]!.limit).fromReply(values[at] as number, tsUs, values[at + 2] as number);
    }
    results[b] = { status, nowUs, states };
  }
  return results;
}

