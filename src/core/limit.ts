import { LimitSpecError } from '../errors.js';
import type { Algorithm, LimitSpec, Scope, Unit } from './types.js';

const SECOND_US = 1_000_000;

/** Unit lengths as envoyproxy/ratelimit: month = 30 days, year = 365 days. */
export const UNIT_SECONDS: Readonly<Record<Unit, number>> = Object.freeze({
  second: 1,
  minute: 60,
  hour: 3_600,
  day: 86_400,
  week: 604_800,
  month: 2_592_000,
  year: 31_536_000,
});

export const UNITS = Object.keys(UNIT_SECONDS) as Unit[];

/** Parses a unit name case-insensitively; undefined when it is not one. */
export function parseUnit(text: string): Unit | undefined {
  const lower = text.toLowerCase();
  return lower in UNIT_SECONDS ? (lower as Unit) : undefined;
}

const UNIT_SHORT: Readonly<Record<Unit, string>> = {
  second: 's', minute: 'm', hour: 'h', day: 'd', week: 'w', month: 'mo', year: 'y',
};

/** The period as short text: `s`, `5m`, `mo` (no number when the multiplier is 1). */
export function periodText(unit: Unit, unitMultiplier = 1): string {
  return unitMultiplier === 1 ? UNIT_SHORT[unit] : `${unitMultiplier}${UNIT_SHORT[unit]}`;
}

/**
 * The longest period a limit may have: 50 years of 365 days. Window ends
 * (`now + 2 × period`) then stay far below 2^53 µs for centuries.
 */
export const MAX_PERIOD_SECONDS = 50 * UNIT_SECONDS.year;

/** Time resolutions tried in order; the finest that keeps state below 2^53 wins. */
const TICKS_US = [1, 1_000, 1_000_000] as const;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

interface LimitInput {
  requestsPerUnit: number;
  unit: Unit;
  unitMultiplier?: number | undefined;
  burst?: number | undefined;
  algorithm?: Algorithm | undefined;
  name?: string | undefined;
  scope?: Scope | undefined;
  /** A token budget: charges are always recorded, the balance may go below zero. */
  overdraft?: boolean | undefined;
}

interface BucketScale {
  tickUs: number;
  refillPerTick: number;
  levelPerToken: number;
  capacityLevel: number;
}

/** The finest integer scale that keeps a token bucket's state below 2^53, or undefined when none does. */
function bucketScale(requestsPerUnit: number, unitUs: number, burst: number): BucketScale | undefined {
  for (const tick of TICKS_US) {
    const unitTicks = unitUs / tick;
    const divisor = gcd(requestsPerUnit, unitTicks);
    const perToken = unitTicks / divisor;
    if (burst * perToken <= Number.MAX_SAFE_INTEGER) {
      return { tickUs: tick, refillPerTick: requestsPerUnit / divisor, levelPerToken: perToken, capacityLevel: burst * perToken };
    }
  }
  return undefined;
}

/** The sliding window's tick: the finest for which 2 × requests_per_unit × window-in-ticks stays below 2^53. */
function slidingTick(requestsPerUnit: number, unitUs: number): number | undefined {
  return TICKS_US.find((t) => 2 * requestsPerUnit * (unitUs / t) <= Number.MAX_SAFE_INTEGER);
}

/**
 * Why compileLimit would refuse these numbers, or undefined when it would
 * compile them. Pure: transports use it to refuse a request's own limit (an
 * RLS override) with INVALID_ARGUMENT before it reaches the limiter.
 */
export function limitSpecProblem(input: LimitInput): string | undefined {
  const { requestsPerUnit, unit } = input;
  const algorithm = input.algorithm ?? 'token_bucket';
  const unitMultiplier = input.unitMultiplier ?? 1;
  const burst = input.burst ?? requestsPerUnit;
  if (!Number.isSafeInteger(requestsPerUnit) || requestsPerUnit < 0) return 'requests_per_unit must be a non-negative integer';
  if (!Number.isSafeInteger(burst) || burst < 0) return 'burst must be a non-negative integer';
  if (!Number.isSafeInteger(unitMultiplier) || unitMultiplier < 1) return 'unit_multiplier must be a whole number, 1 or more';
  if (UNIT_SECONDS[unit] * unitMultiplier > MAX_PERIOD_SECONDS) return `a period of ${unitMultiplier} × ${unit} is longer than 50 years`;
  if (input.overdraft === true) {
    if (algorithm !== 'token_bucket') return `overdraft applies only to token_bucket limits (this limit uses ${algorithm})`;
    if (requestsPerUnit === 0) return 'overdraft needs requests_per_unit above 0 (refills pay the debt)';
    if (input.scope === 'global') return 'overdraft is not supported on scope: global limits';
  }
  const unitUs = UNIT_SECONDS[unit] * unitMultiplier * SECOND_US;
  if (algorithm === 'token_bucket' && requestsPerUnit > 0) {
    // The coarsest tick (1 s) needs the smallest level per token: if it fits, a scale exists.
    const unitTicks = unitUs / TICKS_US[2];
    if (burst * (unitTicks / gcd(requestsPerUnit, unitTicks)) > Number.MAX_SAFE_INTEGER) return `burst ${burst} is too large for a ${unit} unit`;
  } else if (algorithm === 'sliding_window' && slidingTick(requestsPerUnit, unitUs) === undefined) {
    return `requests_per_unit ${requestsPerUnit} is too large for a sliding window of ${periodText(unit, unitMultiplier)}`;
  }
  return undefined;
}

/**
 * Each configurable algorithm's tag in its limits' fingerprints (and so in
 * their Redis keys): different algorithms store different states, so no two
 * may share a tag. A Record, so a new algorithm cannot be left out (a chain
 * of conditionals gave any new one the sliding window's keys).
 */
const KEY_TAG: Readonly<Record<Algorithm, string>> = Object.freeze({ token_bucket: 'tb', fixed_window: 'fw', sliding_window: 'sw' });

/**
 * Derives the integer scale of a limit: the token bucket's ticks and levels,
 * or the sliding window's tick (see core/algorithms/).
 * Throws LimitSpecError (with limitSpecProblem's text) when the numbers cannot
 * be represented exactly.
 */
export function compileLimit(input: LimitInput): LimitSpec {
  const problem = limitSpecProblem(input);
  if (problem !== undefined) throw new LimitSpecError(problem);
  const { requestsPerUnit, unit } = input;
  const algorithm = input.algorithm ?? 'token_bucket';
  const unitMultiplier = input.unitMultiplier ?? 1;
  const burst = input.burst ?? requestsPerUnit;
  const unitUs = UNIT_SECONDS[unit] * unitMultiplier * SECOND_US;
  const period = periodText(unit, unitMultiplier);
  let scale: BucketScale = { tickUs: 1, refillPerTick: 0, levelPerToken: 1, capacityLevel: burst };
  if (algorithm === 'token_bucket' && requestsPerUnit > 0) scale = bucketScale(requestsPerUnit, unitUs, burst)!;
  else if (algorithm === 'sliding_window') scale = { ...scale, tickUs: slidingTick(requestsPerUnit, unitUs)! };
  const { tickUs, refillPerTick, levelPerToken, capacityLevel } = scale;
  const prefix = KEY_TAG[algorithm];
  // "/N" only when the multiplier is not 1, so keys of existing limits do not change.
  const rate = unitMultiplier === 1 ? `${requestsPerUnit}${period}` : `${requestsPerUnit}/${period}`;
  const scope = input.scope ?? 'region';
  // A global limit's buckets are other keys than a regional one's of the same numbers ("g" first).
  const overdraft = input.overdraft === true;
  // A budget's state may be negative: other keys than an ordinary bucket's of the same numbers ("od" last).
  const fingerprint = `${scope === 'global' ? 'g' : ''}${algorithm === 'token_bucket' ? `${prefix}${rate}b${burst}` : `${prefix}${rate}`}${overdraft ? 'od' : ''}`;
  return Object.freeze({
    name: input.name,
    unit,
    unitMultiplier,
    unitUs,
    requestsPerUnit,
    burst,
    algorithm,
    scope,
    tickUs,
    refillPerTick,
    levelPerToken,
    capacityLevel,
    windowTicks: unitUs / tickUs,
    fingerprint,
    overdraft,
  });
}
