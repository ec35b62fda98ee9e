// A deadline that measures Redis, not this process's event loop (docs/design.md#exactness-is-a-contract-also-under-load).
import { ReplyError } from 'ioredis';
import { RateLimitError, StoreCallError } from '../../errors.js';

/** A timer may fire this late (ms) on an idle loop; more is the loop's own lag. */
const LAG_TOLERANCE_MS = 1;
/** The loop's lag may extend a deadline to at most this many times its length. */
const MAX_EXTENSION_FACTOR = 10;

/** Whether a call failed only because it missed its deadline: Redis still has it and will decide it. */
export function timedOut(error: unknown): boolean {
  return error instanceof StoreCallError && error.timedOut;
}

/**
 * Whether a call that failed with `error` after it was written may still
 * have been applied by Redis: its connection closed while it was in flight.
 * Not so when Redis answered with an error, when ioredis refused to write it
 * (no connection), or for our own errors (breaker open, store closed).
 */
export function fateUnknown(error: unknown): boolean {
  if (error instanceof ReplyError) return false;
  if (error instanceof RateLimitError) return timedOut(error);
  const message = error instanceof Error ? error.message : String(error);
  return !/Stream isn't writeable|enableOfflineQueue/i.test(message);
}

export interface DeadlineEvents {
  /** The loop lagged past the deadline, which was extended by `lagMs`. */
  extended?(lagMs: number): void;
}

/**
 * Resolves or rejects like `call`, or rejects with StoreCallError once
 * `timeoutMs` has passed in which this process could have read the reply.
 * Call it right after the command was written to the socket: time a request
 * spent queued in this process before that does not count.
 *
 * When the timer fires, the verdict waits for the next poll phase (one
 * setImmediate): a reply that already sits in the socket is read there, so it
 * is never late because the loop was busy. When the loop itself lagged past
 * the deadline (the timer fired late, or the poll phase took long), that lag
 * is added to the deadline: a busy or descheduled sidecar is not news about
 * Redis. The extension is bounded (MAX_EXTENSION_FACTOR), so a hung Redis is
 * still detected under load. A call abandoned here may still be answered;
 * `call` keeps its own handlers for that.
 */
export function withRedisDeadline<T>(call: Promise<T>, timeoutMs: number, what: string, events?: DeadlineEvents): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let dueAtMs = performance.now() + timeoutMs;
    const lastChanceMs = dueAtMs + (MAX_EXTENSION_FACTOR - 1) * timeoutMs;
    let timer: NodeJS.Timeout;
    const check = (): void => {
      if (settled) return;
      const nowMs = performance.now();
      const lagMs = nowMs - dueAtMs;
      if (lagMs > LAG_TOLERANCE_MS && nowMs < lastChanceMs) {
        const extendMs = Math.min(lagMs, lastChanceMs - nowMs);
        dueAtMs = nowMs + extendMs;
        events?.extended?.(extendMs);
        timer = setTimeout(onTimer, extendMs);
        return;
      }
      settled = true;
      reject(new StoreCallError(`redis: ${what} not answered within its ${timeoutMs} ms deadline`, { timedOut: true }));
    };
    const onTimer = (): void => {
      setImmediate(check);
    };
    timer = setTimeout(onTimer, timeoutMs);
    call.then(
      (value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
