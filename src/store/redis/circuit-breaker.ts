/**
 * A consecutive-failure circuit breaker for one Redis master.
 *
 * closed  calls pass; `failureThreshold` failures in a row open it, and so
 *         does `trip()` at once (the connection closed, the connect was
 *         refused, Redis is misconfigured: no need to wait for more failures).
 * open    calls are refused at once; the owner probes the node in the
 *         background (node-health.ts) and a successful probe closes it.
 *
 * No decision is ever the probe: while a node is down every decision on its
 * keys is answered by the failure policy without waiting for Redis.
 */
export type BreakerState = 'closed' | 'open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the breaker. Default 5. */
  failureThreshold?: number;
}

export type BreakerListener = (state: BreakerState, previous: BreakerState) => void;

const DEFAULT_FAILURE_THRESHOLD = 5;

export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private readonly threshold: number;
  private readonly listeners = new Set<BreakerListener>();

  constructor(options: CircuitBreakerOptions = {}) {
    this.threshold = Math.max(1, options.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD);
  }

  get state(): BreakerState {
    return this.current;
  }

  success(): void {
    this.failures = 0;
    if (this.current !== 'closed') this.transition('closed');
  }

  /** One more failure in a row; the threshold-th opens the breaker. */
  failure(): void {
    this.failures++;
    if (this.current === 'closed' && this.failures >= this.threshold) this.transition('open');
  }

  /** Opens at once. */
  trip(): void {
    this.failures = Math.max(this.failures, this.threshold);
    if (this.current === 'closed') this.transition('open');
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
