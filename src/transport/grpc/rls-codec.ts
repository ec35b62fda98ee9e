// envoy.service.ratelimit.v3: RateLimitRequest bytes -> DecisionRequest, and
// Decision -> RateLimitResponse bytes. Field numbers as proto/envoy/service/
// ratelimit/v3/rls.proto and proto/envoy/extensions/common/ratelimit/v3/
// ratelimit.proto (pinned by test/grpc/golden-bytes.test.ts).
import { limitSpecProblem } from '../../core/limit.js';
import { periodText } from '../../core/limit.js';
import { rateLimitHeaders, type HeaderStyle } from '../../core/response-headers.js';
import type { RequestBounds } from '../../core/request-bounds.js';
import type { Decision, DecisionRequest, Descriptor, DescriptorStatus, Entry, LimitOverride, Unit } from '../../core/types.js';
import { InvalidRequestError } from '../../errors.js';
import { WIRE_LEN, WIRE_VARINT, WireReader, decodeFailure, within } from './wire-reader.js';
import { WireWriter } from './wire-writer.js';

/** uint32 ceiling: limit_remaining of an unlimited descriptor, and the largest hits_addend we take. */
const MAX_UINT32 = 4_294_967_295;

/** RateLimitResponse.Code. */
const RLS_CODE = { UNKNOWN: 0, OK: 1, OVER_LIMIT: 2 } as const;

/**
 * envoy.type.v3.RateLimitUnit → Unit. 7 (WEEK) is not in that enum but is in
 * RateLimitResponse.RateLimit.Unit, which envoyproxy/ratelimit casts it to; accepted.
 */
const OVERRIDE_UNITS: readonly (Unit | undefined)[] = [undefined, 'second', 'minute', 'hour', 'day', 'month', 'year', 'week'];

/** Unit → RateLimitResponse.RateLimit.Unit. */
const RESPONSE_UNITS: Readonly<Record<Unit, number>> = {
  second: 1, minute: 2, hour: 3, day: 4, month: 5, year: 6, week: 7,
};

const tagOf = (field: number, wireType: number): number => field * 8 + wireType;

// RateLimitRequest {1 domain, 2 descriptors, 3 hits_addend}
const REQUEST_DOMAIN = tagOf(1, WIRE_LEN);
const REQUEST_DESCRIPTOR = tagOf(2, WIRE_LEN);
const REQUEST_HITS_ADDEND = tagOf(3, WIRE_VARINT);
const REQUEST_FIELDS = 0b1110;
// RateLimitDescriptor {1 entries, 2 limit, 3 hits_addend (UInt64Value)}
const DESCRIPTOR_ENTRY = tagOf(1, WIRE_LEN);
const DESCRIPTOR_LIMIT = tagOf(2, WIRE_LEN);
const DESCRIPTOR_HITS_ADDEND = tagOf(3, WIRE_LEN);
const DESCRIPTOR_FIELDS = 0b1110;
// Entry {1 key, 2 value}
const ENTRY_KEY = tagOf(1, WIRE_LEN);
const ENTRY_VALUE = tagOf(2, WIRE_LEN);
const ENTRY_FIELDS = 0b110;
// RateLimitOverride {1 requests_per_unit, 2 unit}; UInt64Value {1 value}
const OVERRIDE_REQUESTS_PER_UNIT = tagOf(1, WIRE_VARINT);
const OVERRIDE_UNIT = tagOf(2, WIRE_VARINT);
const OVERRIDE_FIELDS = 0b110;
const UINT64_VALUE = tagOf(1, WIRE_VARINT);
const UINT64_VALUE_FIELDS = 0b10;

const unknownField = (tag: number): string => (tag === 0 ? '' : `(field ${tag >>> 3})`);

function readEntry(r: WireReader, end: number): Entry {
  let key = '';
  let value = '';
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === ENTRY_KEY) key = r.string(end);
      else if (tag === ENTRY_VALUE) value = r.string(end);
      else r.skip(tag, end, ENTRY_FIELDS);
    }
  } catch (error: unknown) {
    throw within(error, tag >>> 3 === 1 ? 'key' : tag >>> 3 === 2 ? 'value' : unknownField(tag));
  }
  return { key, value };
}

/** Fields of a descriptor's `limit` as read so far: a repeated sub-message merges into what came before. */
interface OverrideFields { requestsPerUnit: number; unit: number }

function readOverride(r: WireReader, end: number, into: OverrideFields, path: string): void {
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === OVERRIDE_REQUESTS_PER_UNIT) into.requestsPerUnit = uint32Field(r, end, `${path}.requests_per_unit`);
      else if (tag === OVERRIDE_UNIT) into.unit = r.uint32(end) | 0; // an enum is an int32
      else r.skip(tag, end, OVERRIDE_FIELDS);
    }
  } catch (error: unknown) {
    throw within(error, tag >>> 3 === 1 ? 'requests_per_unit' : tag >>> 3 === 2 ? 'unit' : unknownField(tag));
  }
}

/**
 * A uint32 field, refused when its varint holds more: protobuf would keep the
 * low 32 bits (2^32 + 21 read as 21), a cost or a limit nobody sent.
 */
function uint32Field(r: WireReader, end: number, field: string): number {
  const value = r.uint64(end);
  if (value > MAX_UINT32) throw new InvalidRequestError(field, `must be at most ${MAX_UINT32} (a uint32), got ${value}`);
  return value;
}

/** google.protobuf.UInt64Value: `previous` unless this occurrence sets `value`. */
function readUInt64Value(r: WireReader, end: number, previous: number): number {
  let value = previous;
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === UINT64_VALUE) value = r.uint64(end);
      else r.skip(tag, end, UINT64_VALUE_FIELDS);
    }
  } catch (error: unknown) {
    throw within(error, tag >>> 3 === 1 ? 'value' : unknownField(tag));
  }
  return value;
}

function overrideOf(fields: OverrideFields, index: number): LimitOverride {
  const unit = fields.unit >= 0 ? OVERRIDE_UNITS[fields.unit] : undefined;
  if (unit === undefined) {
    throw new InvalidRequestError(
      `descriptors[${index}].limit.unit`,
      `must be one of SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, YEAR (got ${fields.unit})`,
    );
  }
  const { requestsPerUnit } = fields;
  // Token-bucket state is integer micro-units below 2^53: some uint32 rates per year or month do not fit.
  if (limitSpecProblem({ requestsPerUnit, unit }) !== undefined) {
    throw new InvalidRequestError(
      `descriptors[${index}].limit.requests_per_unit`,
      `${requestsPerUnit} per ${unit} cannot be counted exactly in integers (use a shorter unit or a rounder number)`,
    );
  }
  return { requestsPerUnit, unit };
}

function readDescriptor(r: WireReader, end: number, index: number, maxEntries: number): Descriptor {
  const entries: Entry[] = [];
  let override: OverrideFields | undefined;
  let hitsAddend = -1;
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === DESCRIPTOR_ENTRY) {
        if (entries.length === maxEntries) {
          throw new InvalidRequestError(`descriptors[${index}].entries`, `at most ${maxEntries} entries per descriptor`);
        }
        const stop = r.lengthEnd(end);
        entries.push(readEntry(r, stop));
      } else if (tag === DESCRIPTOR_LIMIT) {
        const stop = r.lengthEnd(end);
        override ??= { requestsPerUnit: 0, unit: 0 };
        readOverride(r, stop, override, `descriptors[${index}].limit`);
      } else if (tag === DESCRIPTOR_HITS_ADDEND) {
        const stop = r.lengthEnd(end);
        hitsAddend = readUInt64Value(r, stop, hitsAddend < 0 ? 0 : hitsAddend);
      } else {
        r.skip(tag, end, DESCRIPTOR_FIELDS);
      }
    }
  } catch (error: unknown) {
    const field = tag >>> 3;
    throw within(error, field === 1 ? `entries[${entries.length}]` : field === 2 ? 'limit' : field === 3 ? 'hits_addend' : unknownField(tag));
  }
  const descriptor: Descriptor = { entries };
  if (override !== undefined) descriptor.limitOverride = overrideOf(override, index);
  if (hitsAddend >= 0) {
    if (hitsAddend > MAX_UINT32) throw new InvalidRequestError(`descriptors[${index}].hits_addend`, `must be at most ${MAX_UINT32}`);
    descriptor.hitsAddend = hitsAddend;
  }
  return descriptor;
}

function readRateLimitRequest(r: WireReader, bounds: Pick<RequestBounds, 'maxDescriptors' | 'maxEntries'>): DecisionRequest {
  const end = r.bytes.length;
  let domain = '';
  const descriptors: Descriptor[] = [];
  let hitsAddend = 0;
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === REQUEST_DESCRIPTOR) {
        if (descriptors.length === bounds.maxDescriptors) {
          throw new InvalidRequestError('descriptors', `at most ${bounds.maxDescriptors} descriptors per request`);
        }
        const stop = r.lengthEnd(end);
        descriptors.push(readDescriptor(r, stop, descriptors.length, bounds.maxEntries));
      } else if (tag === REQUEST_DOMAIN) {
        domain = r.string(end);
      } else if (tag === REQUEST_HITS_ADDEND) {
        hitsAddend = uint32Field(r, end, 'hits_addend');
      } else {
        r.skip(tag, end, REQUEST_FIELDS);
      }
    }
  } catch (error: unknown) {
    const field = tag >>> 3;
    throw within(error, field === 1 ? 'domain' : field === 2 ? `descriptors[${descriptors.length}]` : field === 3 ? 'hits_addend' : unknownField(tag));
  }
  // uint32 on the wire; 0 (unset) is passed through, the service reads it as 1.
  return { domain, descriptors, hitsAddend };
}

/**
 * Decodes a RateLimitRequest straight into a DecisionRequest (strings
 * losslessly, see textOf). Never throws (grpc-js would answer INTERNAL): bad
 * bytes, a limit override without a known unit or too large to count exactly,
 * a hits_addend above 2^32-1 and more descriptors or entries than the bounds
 * allow come back as an InvalidRequestError naming the field (proto names, e.g.
 * `descriptors[1].limit.unit`); anything else (a bug) as the Error itself.
 * Empty domain, descriptors, entries or keys and the byte bounds are checked
 * by DecisionService.decide, with the same field names. The domain is used as
 * sent: an unknown domain is the service's business (OK).
 */
export function decodeRateLimitRequest(
  bytes: Buffer,
  bounds: Pick<RequestBounds, 'maxDescriptors' | 'maxEntries'>,
): DecisionRequest | Error {
  try {
    return readRateLimitRequest(new WireReader(bytes), bounds);
  } catch (error: unknown) {
    return decodeFailure(error, 'RateLimitRequest');
  }
}

function clampUint32(n: number): number {
  if (!(n > 0)) return 0;
  return n >= MAX_UINT32 ? MAX_UINT32 : Math.floor(n);
}

const NANOS_PER_MS = 1_000_000;
const MAX_NANOS = 999_999_999;

/** A non-negative millisecond count as google.protobuf.Duration {1 seconds, 2 nanos}; zero fields omitted. */
function writeDuration(w: WireWriter, field: number, ms: number): void {
  const safe = Number.isFinite(ms) && ms > 0 ? ms : 0;
  const seconds = Math.floor(safe / 1000);
  const nanos = Math.min(MAX_NANOS, Math.round((safe - seconds * 1000) * NANOS_PER_MS));
  const mark = w.begin(field);
  if (seconds > 0) w.uint(1, seconds);
  if (nanos > 0) w.uint(2, nanos);
  w.end(mark);
}

// DescriptorStatus {1 code, 2 current_limit, 3 limit_remaining, 4 duration_until_reset};
// RateLimit {1 requests_per_unit, 2 unit, 3 name}.
function writeStatus(w: WireWriter, status: DescriptorStatus): void {
  const mark = w.begin(2);
  w.uint(1, status.code === 'OVER_LIMIT' ? RLS_CODE.OVER_LIMIT : RLS_CODE.OK);
  const { limit } = status;
  if (limit !== null) {
    const limitMark = w.begin(2);
    w.uint(1, clampUint32(limit.requestsPerUnit));
    w.uint(2, RESPONSE_UNITS[limit.unit]);
    // A period of several units cannot be said in the proto's unit enum: the name says it (`100/5m`).
    const name = limit.name ?? (limit.unitMultiplier === undefined ? '' : `${limit.requestsPerUnit}/${periodText(limit.unit, limit.unitMultiplier)}`);
    if (name !== '') w.string(3, name);
    w.end(limitMark);
  }
  w.uint(3, clampUint32(status.limitRemaining));
  // Unknown domain, no matching rule or unlimited: no current_limit and no duration, as envoyproxy/ratelimit.
  if (limit !== null) writeDuration(w, 4, status.durationUntilResetMs);
  w.end(mark);
}

const writer = new WireWriter();

/**
 * RateLimitResponse {1 overall_code, 2 statuses, 3 response_headers_to_add
 * (HeaderValue {1 key, 2 value})}: `overall_code` is OK or OVER_LIMIT, never
 * UNKNOWN; one status per request descriptor, in order; headers only when asked.
 */
export function encodeRateLimitResponse(decision: Decision, responseHeaders: boolean, style: HeaderStyle = 'x'): Buffer {
  const w = writer;
  w.reset();
  w.uint(1, decision.overallCode === 'OVER_LIMIT' ? RLS_CODE.OVER_LIMIT : RLS_CODE.OK);
  for (const status of decision.statuses) writeStatus(w, status);
  if (responseHeaders) {
    for (const [key, value] of rateLimitHeaders(decision, style)) {
      const mark = w.begin(3);
      w.string(1, key);
      w.string(2, value);
      w.end(mark);
    }
  }
  return w.finish();
}
