// envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit <-> core types.
import type { Decision, DecisionRequest, Descriptor, DescriptorStatus, Entry, Unit } from '../../core/types.js';
import { periodText } from '../../core/limit.js';
import type { HeaderStyle } from '../../core/response-headers.js';
import { InvalidRequestError } from '../../errors.js';
import {
  RLS_CODE,
  type DescriptorStatusMessage,
  type RateLimitRequestMessage,
  type RateLimitResponseMessage,
} from './messages.js';
import { rateLimitHeaders } from './rate-limit-headers.js';

/** uint32 ceiling: limit_remaining of an unlimited descriptor, and the largest hits_addend we take. */
export const MAX_UINT32 = 4_294_967_295;

/**
 * envoy.type.v3.RateLimitUnit → Unit. 7 (WEEK) is not in that enum but is in
 * RateLimitResponse.RateLimit.Unit, which envoyproxy/ratelimit casts it to; accepted.
 */
const OVERRIDE_UNITS: ReadonlyMap<number, Unit> = new Map<number, Unit>([
  [1, 'second'], [2, 'minute'], [3, 'hour'], [4, 'day'], [5, 'month'], [6, 'year'], [7, 'week'],
]);

/** Unit → RateLimitResponse.RateLimit.Unit. */
const RESPONSE_UNITS: Readonly<Record<Unit, number>> = {
  second: 1, minute: 2, hour: 3, day: 4, month: 5, year: 6, week: 7,
};

function parseHitsAddend(raw: string | number | null | undefined, field: string): number {
  const text = raw === null || raw === undefined ? '0' : String(raw);
  if (!/^\d{1,10}$/.test(text) || Number(text) > MAX_UINT32) {
    throw new InvalidRequestError(field, `must be at most ${MAX_UINT32}`);
  }
  return Number(text);
}

/**
 * Translates a decoded RateLimitRequest. Throws InvalidRequestError naming the
 * field (proto names, e.g. `descriptors[1].limit.unit`) for what only the
 * proto can get wrong: a limit override without a known unit, a hits_addend
 * above 2^32-1. Empty domain, descriptors, entries or keys and the size bounds
 * are checked by DecisionService.decide, with the same field names. The
 * domain is used as sent: an unknown domain is the service's business (OK).
 */
export function decodeRateLimitRequest(message: RateLimitRequestMessage): DecisionRequest {
  const domain = message.domain ?? '';
  const wire = message.descriptors ?? [];
  const descriptors: Descriptor[] = new Array<Descriptor>(wire.length);
  for (let i = 0; i < wire.length; i++) {
    const d = wire[i]!;
    const wireEntries = d.entries ?? [];
    const entries: Entry[] = new Array<Entry>(wireEntries.length);
    for (let j = 0; j < wireEntries.length; j++) {
      entries[j] = { key: wireEntries[j]!.key ?? '', value: wireEntries[j]!.value ?? '' };
    }
    const descriptor: Descriptor = { entries };
    if (d.limit !== null && d.limit !== undefined) {
      const unit = OVERRIDE_UNITS.get(d.limit.unit ?? 0);
      if (unit === undefined) {
        throw new InvalidRequestError(
          `descriptors[${i}].limit.unit`,
          `must be one of SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, YEAR (got ${d.limit.unit ?? 0})`,
        );
      }
      descriptor.limitOverride = { requestsPerUnit: d.limit.requests_per_unit ?? 0, unit };
    }
    if (d.hits_addend !== null && d.hits_addend !== undefined) {
      descriptor.hitsAddend = parseHitsAddend(d.hits_addend.value, `descriptors[${i}].hits_addend`);
    }
    descriptors[i] = descriptor;
  }
  // uint32 on the wire; 0 (unset) is passed through, the service reads it as 1.
  return { domain, descriptors, hitsAddend: message.hits_addend ?? 0 };
}

function clampUint32(n: number): number {
  if (!(n > 0)) return 0;
  return n >= MAX_UINT32 ? MAX_UINT32 : Math.floor(n);
}

/** A non-negative millisecond count as a google.protobuf.Duration. */
export function durationFromMs(ms: number): { seconds: string; nanos: number } {
  const safe = Number.isFinite(ms) && ms > 0 ? ms : 0;
  const seconds = Math.floor(safe / 1000);
  const nanos = Math.min(999_999_999, Math.round((safe - seconds * 1000) * 1_000_000));
  return { seconds: String(seconds), nanos };
}

function encodeStatus(status: DescriptorStatus): DescriptorStatusMessage {
  const code = status.code === 'OVER_LIMIT' ? RLS_CODE.OVER_LIMIT : RLS_CODE.OK;
  if (status.limit === null) {
    // Unknown domain, no matching rule or unlimited: no current_limit, as envoyproxy/ratelimit.
    return { code, current_limit: null, limit_remaining: clampUint32(status.limitRemaining), duration_until_reset: null };
  }
  return {
    code,
    current_limit: {
      requests_per_unit: clampUint32(status.limit.requestsPerUnit),
      unit: RESPONSE_UNITS[status.limit.unit],
      // A period of several units cannot be said in the proto's unit enum: the name says it (`100/5m`).
      name: status.limit.name ?? (status.limit.unitMultiplier === undefined ? '' : `${status.limit.requestsPerUnit}/${periodText(status.limit.unit, status.limit.unitMultiplier)}`),
    },
    limit_remaining: clampUint32(status.limitRemaining),
    duration_until_reset: durationFromMs(status.durationUntilResetMs),
  };
}

/** Encodes a decision; `overall_code` is OK or OVER_LIMIT, never UNKNOWN. */
export function encodeRateLimitResponse(decision: Decision, responseHeaders: boolean, style: HeaderStyle = 'x'): RateLimitResponseMessage {
  return {
    overall_code: decision.overallCode === 'OVER_LIMIT' ? RLS_CODE.OVER_LIMIT : RLS_CODE.OK,
    statuses: decision.statuses.map(encodeStatus),
    response_headers_to_add: responseHeaders ? rateLimitHeaders(decision, style) : [],
  };
}
