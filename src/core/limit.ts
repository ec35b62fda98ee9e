import { LimitSpecError } from '../errors.js';
import type { Algorithm, LimitSpec, Unit } from './types.js';

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

/** Time resolutions tried in order; the finest that keeps state below 2^53 wins. */
const TICKS_US = [1, 1_000, 1_000_000] as const;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * Derives the integer token-bucket scale of a limit.
 * Throws LimitSpecError when the numbers cannot be represented exactly.
 */
export function compileLimit(input: {
  requestsPerUnit: number;
  unit: Unit;
  burst?: number | undefined;
  algorithm?: Algorithm | undefined;
  name?: string | undefined;
}): LimitSpec {
  const { requestsPerUnit, unit } = input;
  const algorithm = input.algorithm ?? 'token_bucket';
  const burst = input.burst ?? requestsPerUnit;
  if (!Number.isSafeInteger(requestsPerUnit) || requestsPerUnit < 0) {
    throw new LimitSpecError('requests_per_unit must be a non-negative integer');
  }
  if (!Number.isSafeInteger(burst) || burst < 0) {
    throw new LimitSpecError('burst must be a non-negative integer');
  }
  const unitUs = UNIT_SECONDS[unit] * SECOND_US;
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
  }
  const short = UNIT_SHORT[unit];
  const fingerprint = algorithm === 'token_bucket'
    ? `tb${requestsPerUnit}${short}b${burst}`
    : `fw${requestsPerUnit}${short}`;
  return Object.freeze({
    name: input.name,
    unit,
    unitUs,
    requestsPerUnit,
    burst,
    algorithm,
    tickUs,
    refillPerTick,
    levelPerToken,
    capacityLevel,
    fingerprint,
  });
}
