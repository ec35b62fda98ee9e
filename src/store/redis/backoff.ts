// Delays for reconnects and probes: exponential, capped and jittered, so a
// fleet of sidecars that lost one Redis does not come back to it in lockstep.

export interface BackoffSteps {
  /** The first delay. */
  readonly baseMs: number;
  /** No delay is longer than this. */
  readonly maxMs: number;
}

/** Each delay is drawn from ±JITTER around its exponential step (grpc-js's backoff-timeout does the same). */
const JITTER = 0.2;
const FACTOR = 2;

/**
 * The delay before attempt number `attempt` (1 = the first retry): baseMs ×
 * 2^(attempt − 1), capped at maxMs, then moved by up to ±20 % at random (and
 * capped again).
 */
export function backoffDelayMs(attempt: number, steps: BackoffSteps, random: () => number = Math.random): number {
  const step = Math.min(steps.maxMs, steps.baseMs * FACTOR ** Math.min(30, Math.max(0, attempt - 1)));
  return Math.round(Math.min(steps.maxMs, step * (1 - JITTER + 2 * JITTER * random())));
}
