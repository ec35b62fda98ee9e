// An operator's reads and resets of buckets in one Redis deployment (single,
// Cluster or through Sentinels): plain GET / HGETALL / TIME / DEL, pipelined
// per master, never the script and never the local mirror. The reference
// model (core/bucket.ts) evaluates what was read at the node's own TIME.
import type { Cluster } from 'ioredis';
import { inspectBucket, type BucketState } from '../../core/bucket.js';
import type { BucketOp, BucketOutcome } from '../../core/types.js';
import { StoreUnavailableError } from '../../errors.js';
import type { RedisConnection } from './connection.js';
import { withRedisDeadline } from './deadline.js';
import { redisErrorWords } from './error-words.js';
import { storedState } from '../../core/algorithms/table.js';
import { outstandingLeases } from './stored-state.js';
import type { Topology } from './topology.js';

/**
 * Deadline of one admin pipeline. An operator's call is not on a decision's
 * path: it may wait longer than --redis-timeout-ms, but never hangs.
 */
const MIN_ADMIN_DEADLINE_MS = 1_000;

/** A key's stored value (and, for a global home bucket, its lease hash) with the TIME of the node that holds it. */
interface Read {
  text: string | null;
  leases: Record<string, string> | undefined;
  nowUs: number;
}

type Reply = [Error | null, unknown][] | null;

export class RedisBucketAdmin {
  private readonly deadlineMs: number;

  constructor(
    private readonly connection: RedisConnection,
    private readonly topology: Topology,
    timeoutMs: number,
  ) {
    this.deadlineMs = Math.max(MIN_ADMIN_DEADLINE_MS, timeoutMs);
  }

  /**
   * Each op's bucket now, for its cost, nothing taken. An op whose limit is
   * a global token bucket is read as a home bucket: its key's state less what
   * unexpired leases hold (the key's `:l` hash), as the script reads it.
   */
  async inspect(ops: readonly BucketOp[]): Promise<BucketOutcome[]> {
    const reads = await this.read(ops);
    return ops.map((op, i) => {
      const { text, leases, nowUs } = reads[i]!;
      return inspectBucket(op.limit, stateOf(op, text, leases, nowUs), nowUs, op.cost);
    });
  }

  /** Deletes each op's key; resolves with how many existed. */
  async reset(ops: readonly BucketOp[]): Promise<number> {
    const distinct = [...new Map(ops.map((op) => [op.key, op])).values()];
    if (distinct.length === 0) return 0;
    let count = 0;
    await Promise.all(this.topology.groups(distinct).map(async (group) => {
      const pipeline = this.pipeline();
      for (const i of group.indices) pipeline.del(distinct[i]!.key);
      const replies = await this.exec(pipeline, 'reset');
      for (const reply of replies) count += Number(reply);
    }));
    return count;
  }

  /** Per op: its key's value and the TIME of the master serving it, read after the value (so no state is later than its time). */
  private async read(ops: readonly BucketOp[]): Promise<Read[]> {
    const reads: Read[] = new Array(ops.length);
    if (ops.length === 0) return reads;
    await Promise.all(this.topology.groups(ops).map(async (group) => {
      const pipeline = this.pipeline();
      for (const i of group.indices) {
        pipeline.get(ops[i]!.key);
        if (isHomeBucket(ops[i]!)) pipeline.hgetall(`${ops[i]!.key}:l`);
      }
      pipeline.time();
      const replies = await this.exec(pipeline, 'inspect');
      const [seconds, micros] = replies[replies.length - 1] as [string, string];
      const nowUs = Number(seconds) * 1_000_000 + Number(micros);
      let at = 0;
      for (const i of group.indices) {
        const text = replies[at++] as string | null;
        const leases = isHomeBucket(ops[i]!) ? replies[at++] as Record<string, string> : undefined;
        reads[i] = { text, leases, nowUs };
      }
    }));
    return reads;
  }

  private pipeline(): ReturnType<Cluster['pipeline']> {
    return this.connection.client.pipeline();
  }

  /** The replies of a pipeline within the deadline; any failure is a StoreUnavailableError in our words. */
  private async exec(pipeline: ReturnType<Cluster['pipeline']>, what: string): Promise<unknown[]> {
    let reply: Reply;
    try {
      reply = await withRedisDeadline(pipeline.exec(), this.deadlineMs, what);
    } catch (error: unknown) {
      throw new StoreUnavailableError(`${what}: ${redisErrorWords(error)}`, { cause: error });
    }
    if (reply === null) throw new StoreUnavailableError(`${what}: redis unreachable (not connected)`);
    return reply.map(([error, value]) => {
      if (error !== null) throw new StoreUnavailableError(`${what}: ${redisErrorWords(error)}`, { cause: error });
      return value;
    });
  }
}

/** A global limit's home bucket (the layer around the store names its key `<key>:g`). */
function isHomeBucket(op: BucketOp): boolean {
  return op.limit.algorithm === 'home_bucket';
}

function stateOf(op: BucketOp, text: string | null, leases: Record<string, string> | undefined, nowUs: number): BucketState | null {
  const state = storedState(op.limit, text);
  if (leases === undefined) return state;
  const outstanding = outstandingLeases(leases, op.limit, nowUs);
  if (outstanding === 0) return state;
  // No state while leases are out: full up to what they leave (the script's with_leases).
  return state === null
    ? { level: op.limit.capacityLevel - outstanding, tsUs: nowUs, outstanding }
    : { ...state, outstanding };
}
