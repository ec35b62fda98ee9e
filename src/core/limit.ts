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

interface LimitInput {
  requestsPerUnit: number;
  unit: Unit;
  burst?: number | undefined;
  algorithm?: Algorithm | undefined;
  name?: string | undefined;
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

/**
 * Why compileLimit would refuse these numbers, or undefined when it would
 * compile them. Pure and allocation-free on success: transports use it to
 * refuse a request's own limit (an RLS override) before it reaches the limiter.
 */
export function limitSpecProblem(input: LimitInput): string | undefined {
  const { requestsPerUnit } = input;
  const burst = input.burst ?? requestsPerUnit;
  if (!Number.isSafeInteger(requestsPerUnit) || requestsPerUnit < 0) return 'requests_per_unit must be a non-negative integer';
  if (!Number.isSafeInteger(burst) || burst < 0) return 'burst must be a non-negative integer';
  if ((input.algorithm ?? 'token_bucket') !== 'token_bucket' || requestsPerUnit === 0) return undefined;
  const unitUs = UNIT_SECONDS[input.unit] * SECOND_US;
  // The coarsest tick (1 s) needs the smallest level per token: if it fits, a scale exists.
  const unitTicks = unitUs / TICKS_US[2];
  if (burst * (unitTicks / gcd(requestsPerUnit, unitTicks)) <= Number.MAX_SAFE_INTEGER) return undefined;
  return `burst ${burst} is too large for a ${input.unit} unit`;
}

/**
 * Derives the integer token-bucket scale of a limit.
 * Throws LimitSpecError (with limitSpecProblem's text) when the numbers cannot
 * be represented exactly.
 */
export function compileLimit(input: LimitInput): LimitSpec {
  const problem = limitSpecProblem(input);
  if (problem !== undefined) throw new LimitSpecError(problem);
  const { requestsPerUnit, unit } = input;
  const algorithm = input.algorithm ?? 'token_bucket';
  const burst = input.burst ?? requestsPerUnit;
  const unitUs = UNIT_SECONDS[unit] * SECOND_US;
  let scale: BucketScale = { tickUs: 1, refillPerTick: 0, levelPerToken: 1, capacityLevel: burst };
  if (algorithm === 'token_bucket' && requestsPerUnit > 0) {
    const found = bucketScale(requestsPerUnit, unitUs, burst);
    // limitSpecProblem checked the coarsest tick; unreachable.
    if (found === undefined) throw new LimitSpecError(`burst ${burst} is too large for a ${unit} unit`);
    scale = found;
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
    ...scale,
    fingerprint,
  });
}
