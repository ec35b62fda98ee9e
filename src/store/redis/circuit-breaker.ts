/**
 * A consecutive-failure circuit breaker for store calls.
 *
 * closed    calls pass; `failureThreshold` failures in a row open it.
 * open      calls are refused until `coolDownMs` has passed, then the next
 *           call becomes the single probe (half_open).
 * half_open one probe is in flight, every other call is refused; the probe's
 *           success closes the breaker, its failure opens it for another cool-down.
 *
 * The clock is injected (milli-seconds, monotonic) so tests need no sleeps.
 */
export type BreakerState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the breaker. Default 5. */
  failureThreshold?: number;
  /** How long the breaker stays open before one probe is let through. Default 1000 ms. */
  coolDownMs?: number;
  nowMs?: () => number;
}

export type BreakerListener = (state: BreakerState, previous: BreakerState) => void;

const DEFAULT_FAILURE_THRESHOLD = 5;
const DEFAULT_COOL_DOWN_MS = 1_000;

export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private openedAtMs = 0;
  private readonly threshold: number;
  private readonly coolDownMs: number;
  private readonly nowMs: () => number;
  private readonly listeners = new Set<BreakerListener>();

  constructor(options: CircuitBreakerOptions = {}) {
    this.threshold = Math.max(1, options.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD);
    this.coolDownMs = Math.max(0, options.coolDownMs ?? DEFAULT_COOL_DOWN_MS);
    this.nowMs = options.nowMs ?? (() => performance.now());
  }

  get state(): BreakerState {
    return this.current;
  }

  /**
   * Asks to make one call. True means go ahead and report the result with
   * `success()` or `failure()`; false means refuse the call now.
   */
  tryAcquire(): boolean {
    if (this.current === 'closed') return true;
    if (this.current === 'open' && this.nowMs() - this.openedAtMs >= this.coolDownMs) {
      this.transition('half_open');
      return true;
    }
    return false;
  }

  success(): void {
    this.failures = 0;
    if (this.current !== 'closed') this.transition('closed');
  }

  failure(): void {
    this.failures++;
    if (this.current === 'half_open' || (this.current === 'closed' && this.failures >= this.threshold)) {
      this.openedAtMs = this.nowMs();
      this.transition('open');
    }
  }

  /** Follows state changes (metrics, logs). Returns a function that unsubscribes. */
  onStateChange(listener: BreakerListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private transition(next: BreakerState): void {
    const previous = this.current;
    this.current = next;
    for (const listener of this.listeners) {
      try {
        listener(next, previous);
      } catch {
        // A listener's failure must not break the breaker.
      }
    }
  }
}
