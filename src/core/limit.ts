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

/**
 * Derives the integer scale of a limit: the token bucket's ticks and levels,
 * or the sliding window's tick (the finest of 1 µs, 1 ms, 1 s for which
 * 2 × requests_per_unit × window-in-ticks stays below 2^53: the largest
 * product its arithmetic forms; see core/bucket.ts).
 * Throws LimitSpecError when the numbers cannot be represented exactly.
 */
export function compileLimit(input: {
  requestsPerUnit: number;
  unit: Unit;
  unitMultiplier?: number | undefined;
  burst?: number | undefined;
  algorithm?: Algorithm | undefined;
  name?: string | undefined;
  scope?: Scope | undefined;
}): LimitSpec {
  const { requestsPerUnit, unit } = input;
  const algorithm = input.algorithm ?? 'token_bucket';
  const unitMultiplier = input.unitMultiplier ?? 1;
  const burst = input.burst ?? requestsPerUnit;
  if (!Number.isSafeInteger(requestsPerUnit) || requestsPerUnit < 0) {
    throw new LimitSpecError('requests_per_unit must be a non-negative integer');
  }
  if (!Number.isSafeInteger(burst) || burst < 0) {
    throw new LimitSpecError('burst must be a non-negative integer');
  }
  if (!Number.isSafeInteger(unitMultiplier) || unitMultiplier < 1) {
    throw new LimitSpecError('unit_multiplier must be a whole number, 1 or more');
  }
  if (UNIT_SECONDS[unit] * unitMultiplier > MAX_PERIOD_SECONDS) {
    throw new LimitSpecError(`a period of ${unitMultiplier} × ${unit} is longer than 50 years`);
  }
  const unitUs = UNIT_SECONDS[unit] * unitMultiplier * SECOND_US;
  const period = periodText(unit, unitMultiplier);
  let tickUs = 1;
  let refillPerTick = 0;
  let levelPerToken = 1;
  let capacityLevel = burst;
  if (algorithm === 'token_bucket' && requestsPerUnit > 0) {
    let found = false;
    for (const tick of TICKS_US) {
      const unitTicks = unitUs / tick;
      const divisor = gcd(requestsPerUnit, unitTicks);
      const perToken = unitTicks / divisor;
      if (burst * perToken <= Number.MAX_SAFE_INTEGER) {
        tickUs = tick;
        refillPerTick = requestsPerUnit / divisor;
        levelPerToken = perToken;
        capacityLevel = burst * perToken;
        found = true;
        break;
      }
    }
    if (!found) throw new LimitSpecError(`burst ${burst} is too large for a ${unit} unit`);
  } else if (algorithm === 'sliding_window') {
    const tick = TICKS_US.find((t) => 2 * requestsPerUnit * (unitUs / t) <= Number.MAX_SAFE_INTEGER);
    if (tick === undefined) {
      throw new LimitSpecError(`requests_per_unit ${requestsPerUnit} is too large for a sliding window of ${period}`);
    }
    tickUs = tick;
  }
  const prefix = algorithm === 'token_bucket' ? 'tb' : algorithm === 'fixed_window' ? 'fw' : 'sw';
  // "/N" only when the multiplier is not 1, so keys of existing limits do not change.
  const rate = unitMultiplier === 1 ? `${requestsPerUnit}${period}` : `${requestsPerUnit}/${period}`;
  const scope = input.scope ?? 'region';
  // A global limit's buckets are other keys than a regional one's of the same numbers ("g" first).
  const fingerprint = `${scope === 'global' ? 'g' : ''}${algorithm === 'token_bucket' ? `${prefix}${rate}b${burst}` : `${prefix}${rate}`}`;
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
  });
}
