// Coalesces concurrent decisions into one script call per Redis node per event-loop turn.
import type { BucketOp } from '../../core/types.js';
import { timedOut, withRedisDeadline, type DeadlineEvents } from './deadline.js';
import type { RedisLibrary, TakeResult } from './library.js';

/** Most ops in one script call; more waiting ops go in further calls of the same turn. */
const MAX_OPS_PER_CALL = 512;

/** One request's ops for one node, waiting to be sent. */
export interface PendingBatch {
  node: string;
  ops: readonly BucketOp[];
  /** One of the batch's keys: declared in KEYS so Redis (and ioredis) route the call to its node. */
  routingKey: string;
  resolve(result: TakeResult): void;
  reject(error: unknown): void;
  /** Called with the reply when it arrives after the batch was already rejected at its deadline. */
  late(result: TakeResult): void;
  /** Called when a call already rejected at its deadline fails after all (its connection closed, or Redis answered an error). */
  lost(error: unknown): void;
}

export interface BatcherEvents extends DeadlineEvents {
  /** One script call finished (`ok` false: it failed or missed its deadline, with `error`); seconds from write to reply. */
  call(node: string, seconds: number, ok: boolean, error?: unknown): void;
  /** A call missed its deadline (Redis, not this process, was too slow). */
  timeout(node: string): void;
  /** A call that missed its deadline was answered after all. */
  lateReply(node: string, seconds: number): void;
}

/**
 * The batches submitted for one node during one event-loop turn go out as ONE
 * lua/openclaw.lua `take` call (each batch still decided all-or-nothing on its
 * own, in submission order). Node CPU per decision, not Redis, bounds a rate
 * limiter, and most of it is the client's per-command cost: paid once per turn
 * instead of once per request. The wait is one setImmediate: the requests that
 * arrived together. With a batch window (`windowMs`), the first batch queued
 * waits that long for others instead: fewer, larger calls when requests come
 * spread out, for up to windowMs more latency. Each call's deadline starts
 * when it is written.
 */
export class Batcher {
  private queues = new Map<string, PendingBatch[]>();
  private scheduled = false;

  constructor(
    private readonly library: RedisLibrary,
    private readonly timeoutMs: number,
    private readonly events: BatcherEvents,
    /** 0: a call per node per event-loop turn (setImmediate); N > 0: batches wait up to N ms for others (`--redis-batch-window-ms`). */
    private readonly windowMs = 0,
    private readonly maxOpsPerCall = MAX_OPS_PER_CALL,
  ) {}

  /**
   * Queues a request's batch for its node (the master serving its routing
   * key's slot); batches of one `queue` (usually the node's name) may share a
   * call. Exactly one of its `resolve` and `reject` is called, later; then
   * `late` if the call missed its deadline and is answered after all. Its
   * callbacks must not throw.
   */
  enqueue(queueName: string, batch: PendingBatch): void {
    let queue = this.queues.get(queueName);
    if (queue === undefined) {
      queue = [];
      this.queues.set(queueName, queue);
    }
    queue.push(batch);
    if (!this.scheduled) {
      this.scheduled = true;
      if (this.windowMs > 0) setTimeout(() => this.flush(), this.windowMs);
      else setImmediate(() => this.flush());
    }
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
        while (end < queue.length && (end === start || ops + queue[end]!.ops.length <= this.maxOpsPerCall)) {
          ops += queue[end]!.ops.length;
          end++;
        }
        this.send(queue[start]!.node, queue.slice(start, end));
        start = end;
      }
    }
  }

  private send(node: string, batches: readonly PendingBatch[]): void {
    const call = this.library.take(batches[0]!.routingKey, batches.map((batch) => batch.ops));
    const writtenAtMs = performance.now();
    const seconds = (): number => (performance.now() - writtenAtMs) / 1000;
    withRedisDeadline(call, this.timeoutMs, `script call to ${node}`, this.events).then(
      (results) => {
        this.events.call(node, seconds(), true);
        settleEach(batches, (batch, i) => batch.resolve(results[i]!));
      },
      (error: unknown) => {
        this.events.call(node, seconds(), false, error);
        settleEach(batches, (batch) => batch.reject(error));
        if (!timedOut(error)) return;
        this.events.timeout(node);
        // A reply that comes after the deadline still tells what Redis decided.
        call.then((results) => {
          this.events.lateReply(node, seconds());
          settleEach(batches, (batch, i) => batch.late(results[i]!));
        }, (lateError: unknown) => settleEach(batches, (batch) => batch.lost(lateError)));
      },
    );
  }
}

/**
 * Runs `settle` for each batch of a call. Its callbacks must not throw
 * (enqueue's contract); one that does anyway must not keep the call's other
 * batches from their answers.
 */
function settleEach(batches: readonly PendingBatch[], settle: (batch: PendingBatch, i: number) => void): void {
  for (let i = 0; i < batches.length; i++) {
    try {
      settle(batches[i]!, i);
    } catch {
      // Its request is the caller's to answer (see request-path.ts); the others go on.
    }
  }
}
