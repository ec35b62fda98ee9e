// What every load generator reports for one measured run.
export interface LoadResult {
  /** e.g. "autocannon c=32", "h2load 2x(c=2,m=16)". */
  readonly generator: string;
  /** Responses received (any status) during the measured seconds. */
  readonly responses: number;
  /** Responses per second. */
  readonly rate: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Transport errors, timeouts, and HTTP statuses that are not 2xx (429 excluded: a denial is a decision). */
  readonly errors: number;
  /** Responses by HTTP status, e.g. { "200": 123, "429": 4 }. */
  readonly statuses: Record<string, number>;
  readonly seconds: number;
}

/** Percentile of an ascending-sorted array (nearest rank). */
export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}
