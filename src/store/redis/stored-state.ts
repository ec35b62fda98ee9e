// A global limit's lease hash as lua/openclaw.lua stores it, read back by this
// process (the admin's inspect; a bucket's own state is read by its algorithm
// module, core/algorithms/table.ts storedState).
import type { LimitSpec } from '../../core/types.js';

/**
 * What regions hold of a global limit's home bucket: the sum of unexpired
 * leases in its lease hash (region → "<tokens>:<expiresAtUs>:<gen>"), in
 * level units, as the script's `with_leases` counts it.
 */
export function outstandingLeases(leases: Readonly<Record<string, string>>, limit: LimitSpec, nowUs: number): number {
  let out = 0;
  for (const value of Object.values(leases)) {
    const match = /^(\d+):(\d+)/.exec(value);
    if (match !== null && Number(match[2]) > nowUs) out += Number(match[1]) * limit.levelPerToken;
  }
  return out;
}
