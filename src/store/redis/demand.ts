// A key's demand as both kinds of lease size it (global-limits.ts: a region's
// lease of a global limit; local-leases.ts: a sidecar's lease of a busy
// bucket): an exponentially weighted rate of what was asked in each regular
// tick, over the time that really passed (a lagging event loop makes ticks late).

/** Each tick keeps this much of the old rate. */
const DEMAND_DECAY = 0.8;

/** The time between regular ticks, as it really passed. */
export class TickClock {
  private lastMs = performance.now();

  /** Seconds since the last lap (at least 1 ms); `nowMs` becomes the last. */
  lap(nowMs: number): number {
    const seconds = Math.max(0.001, (nowMs - this.lastMs) / 1000);
    this.lastMs = nowMs;
    return seconds;
  }
}

/** The rate after a tick in which `asked` tokens were asked over `seconds`. */
export function decayedRate(rate: number, asked: number, seconds: number): number {
  return DEMAND_DECAY * rate + (1 - DEMAND_DECAY) * (asked / seconds);
}
