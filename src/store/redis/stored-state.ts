// A bucket's state as lua/openclaw.lua stores it, read back by this process
// (the admin's inspect: GET, then the reference model at the op's cost).
import type { BucketState } from '../../core/bucket.js';
import type { LimitSpec } from '../../core/types.js';

/** "<level>:<tsUs>", sliding windows "<count>:<windowStartUs>:<previousCount>", leases "<tokens>:<expiresAtUs>:<gen>:<spent>". */
const STORED_STATE = /^(\d+):(\d+)(?::(\d*))?(?::(\d*))?$/;

/**
 * The state a key's value stands for, as the script reads it (`read_state`):
 * null for no value, or a value it would not read (a full bucket, an empty window).
 */
export function decodeStoredState(text: string | null, limit: LimitSpec): BucketState | null {
  if (text === null) return null;
  const match = STORED_STATE.exec(text);
  if (match === null) return null;
  const level = Number(match[1]);
  const tsUs = Number(match[2]);
  if (limit.algorithm === 'sliding_window') return { level, tsUs, prevLevel: match[3] === undefined || match[3] === '' ? 0 : Number(match[3]) };
  return { level, tsUs };
}

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
