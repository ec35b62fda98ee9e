/** Micro-seconds since the Unix epoch, from a monotonic source (never jumps back). */
export type ClockUs = () => number;

/**
 * The memory store's clock: monotonic (performance.now) but anchored to the
 * wall clock once at start, so fixed windows still align to the Unix epoch.
 */
export function monotonicClockUs(): ClockUs {
  const originUs = Date.now() * 1000 - performance.now() * 1000;
  return () => Math.floor(originUs + performance.now() * 1000);
}
