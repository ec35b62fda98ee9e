import { StoreCallError } from '../errors.js';

/** Runs lua/token-bucket.lua: (numkeys = 1, routingKey, ...argv) → reply. */
export type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;

/** Most ops in one script call; more waiting ops go in further calls of the same turn. */
export const MAX_OPS_PER_CALL = 512;

interface Batch {
  opCount: number;
  /** One of the batch's keys: declared in KEYS so Redis (and ioredis) route the call to its node. */
  routingKey: string;
  /** The ops' values, each op's key first (see lua/token-bucket.lua). */
  argv: readonly string[];
  resolve(reply: number[]): void;
  reject(error: unknown): void;
}

/**
 * Coalesces concurrent decisions: the batches submitted for one Redis node
 * during one event-loop turn go out as ONE lua/token-bucket.lua call (each
 * batch still decided all-or-nothing on its own, in submission order). Node
 * CPU per decision, not Redis, bounds a rate limiter, and most of it is the
 * per-command cost of the client; this pays it once per turn instead of once
 * per request. The wait is one setImmediate: requests that arrived together.
 */
export class ScriptBatcher {
  private queues = new Map<string, Batch[]>();
  private scheduled = false;

  constructor(
    private readonly call: ScriptCall,
    private readonly fieldsPerOp: number,
    private readonly maxOpsPerCall = MAX_OPS_PER_CALL,
  ) {}

  /**
   * Queues one batch for `node` (any string naming the node its keys live on).
   * Resolves with the batch's reply in the single-batch shape
   * `[committed, nowUs, ...fieldsPerOp per op]`; rejects with the call's error.
   */
  submit(node: string, opCount: number, routingKey: string, argv: readonly string[]): Promise<number[]> {
    return new Promise<number[]>((resolve, reject) => {
      let queue = this.queues.get(node);
      if (queue === undefined) {
        queue = [];
        this.queues.set(node, queue);
      }
      queue.push({ opCount, routingKey, argv, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const queues = this.queues;
    this.queues = new Map();
    for (const queue of queues.values()) {
      let start = 0;
      while (start < queue.length) {
        let end = start;
        let ops = 0;
        while (end < queue.length && (end === start || ops + queue[end]!.opCount <= this.maxOpsPerCall)) {
          ops += queue[end]!.opCount;
          end++;
        }
        this.send(queue.slice(start, end));
        start = end;
      }
    }
  }

  private send(batches: readonly Batch[]): void {
    const counts: string[] = [];
    const argv: string[] = [];
    let opCount = 0;
    for (const batch of batches) {
      counts.push(String(batch.opCount));
      opCount += batch.opCount;
      for (const value of batch.argv) argv.push(value);
    }
    this.call(1, batches[0]!.routingKey, String(batches.length), ...counts, ...argv).then(
      (reply) => this.deliver(batches, opCount, reply),
      (error: unknown) => {
        for (const batch of batches) batch.reject(error);
      },
    );
  }

  private deliver(batches: readonly Batch[], opCount: number, reply: unknown): void {
    const expected = 1 + batches.length + opCount * this.fieldsPerOp;
    if (!Array.isArray(reply) || reply.length !== expected || !reply.every((v) => typeof v === 'number')) {
      const error = new StoreCallError(`redis: unexpected token-bucket script reply (${String(reply).slice(0, 80)})`);
      for (const batch of batches) batch.reject(error);
      return;
    }
    const values = reply as number[];
    const nowUs = values[0]!;
    let at = 1;
    for (const batch of batches) {
      const size = batch.opCount * this.fieldsPerOp;
      batch.resolve([values[at]!, nowUs, ...values.slice(at + 1, at + 1 + size)]);
      at += 1 + size;
    }
  }
}
