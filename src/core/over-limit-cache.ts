/**
 * Keys known to be empty, and until when (µs, the limiter's local clock).
 *
 * After the store answers that a bucket lacks even one token, with
 * `retryAfterUs` until that token exists, no request of cost >= 1 can pass
 * before then: tokens only refill with time, and other sidecars can only take
 * more. So denying such requests locally, without a store call, never admits
 * more than the store would; it can deny slightly longer (by the store round
 * trip) — the documented accuracy trade-off. Bounded: least recently added
 * entries are evicted past `maxKeys`; expired entries are dropped on lookup.
 */
export interface EmptyBucket {
  /** When a token exists again (µs). */
  untilUs: number;
  /** When the bucket is full again (µs), for X-RateLimit-Reset. */
  fullAtUs: number;
}

export class OverLimitCache {
  private readonly until = new Map<string, EmptyBucket>();
  constructor(private readonly maxKeys: number) {}

  get size(): number {
    return this.until.size;
  }

  /** What is known of `key` at `nowUs`: undefined unless it is known to be empty. */
  emptyUntil(key: string, nowUs: number): EmptyBucket | undefined {
    const empty = this.until.get(key);
    if (empty === undefined) return undefined;
    if (empty.untilUs <= nowUs) {
      this.until.delete(key);
      return undefined;
    }
    return empty;
  }

  remember(key: string, empty: EmptyBucket): void {
    if (this.maxKeys <= 0) return;
    this.until.delete(key);
    this.until.set(key, empty);
    if (this.until.size > this.maxKeys) {
      const oldest = this.until.keys().next();
      if (oldest.done !== true) this.until.delete(oldest.value);
    }
  }

  clear(): void {
    this.until.clear();
  }
}
