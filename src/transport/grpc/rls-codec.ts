// envoy.service.ratelimit.v3: RateLimitRequest bytes -> DecisionRequest, and
// Decision -> RateLimitResponse bytes, each message a field table read by the
// decode and encode loops of message-table.ts. Field numbers as proto/envoy/
// service/ratelimit/v3/rls.proto and proto/envoy/extensions/common/ratelimit/
// v3/ratelimit.proto (pinned by test/integration/grpc/golden-bytes.test.ts).
import { limitSpecProblem, periodText } from '../../core/limit.js';
import { rateLimitHeaders, type HeaderStyle } from '../../core/response-headers.js';
import type { RequestBounds } from '../../core/request-bounds.js';
import type { Decision, DecisionRequest, Descriptor, DescriptorStatus, Entry, ReportedLimit, Unit } from '../../core/types.js';
import { HEADER_VALUE, type HeaderPair } from './header-value.js';
import { MAX_UINT32, decode, encode, messageReader, messageWriter, readMessage, writeMessage } from './message-table.js';
import { WireReader, WireValueError, decodeFailure } from './wire-reader.js';
import { WireWriter } from './wire-writer.js';

type Bounds = Pick<RequestBounds, 'maxDescriptors' | 'maxEntries'>;

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

/** A RateLimitDescriptor as read so far; a repeated `limit` or `hits_addend` merges into what came before. */
class DescriptorFields {
  readonly entries: Entry[] = [];
  hasLimit = false;
  requestsPerUnit = 0;
  unit = 0;
  /** -1 until a hits_addend UInt64Value occurs. */
  hitsAddend = -1;
}

/** The Descriptor the fields say, or a WireValueError naming the field (relative to the descriptor). */
function descriptorOf(fields: DescriptorFields): Descriptor {
  const descriptor: Descriptor = { entries: fields.entries };
  if (fields.hasLimit) {
    const unit = fields.unit >= 0 ? OVERRIDE_UNITS[fields.unit] : undefined;
    if (unit === undefined) throw new WireValueError('limit.unit', `must be one of SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, YEAR (got ${fields.unit})`);
    const { requestsPerUnit } = fields;
    // Token-bucket state is integer micro-units below 2^53: some uint32 rates per year or month do not fit.
    if (limitSpecProblem({ requestsPerUnit, unit }) !== undefined) {
      throw new WireValueError('limit.requests_per_unit', `${requestsPerUnit} per ${unit} cannot be counted exactly in integers (use a shorter unit or a rounder number)`);
    }
    descriptor.limitOverride = { requestsPerUnit, unit };
  }
  if (fields.hitsAddend >= 0) {
    if (fields.hitsAddend > MAX_UINT32) throw new WireValueError('hits_addend', `must be at most ${MAX_UINT32}`);
    descriptor.hitsAddend = fields.hitsAddend;
  }
  return descriptor;
}

// RateLimitDescriptor.Entry {1 key, 2 value}
const ENTRY = messageReader<Entry, Bounds>('Entry', [
  decode.string(1, 'key', (entry, text) => { entry.key = text; }),
  decode.string(2, 'value', (entry, text) => { entry.value = text; }),
]);

// RateLimitDescriptor.RateLimitOverride {1 requests_per_unit, 2 unit}, read into the descriptor's fields.
const RATE_LIMIT_OVERRIDE = messageReader<DescriptorFields, Bounds>('RateLimitOverride', [
  decode.uint32(1, 'requests_per_unit', (fields, value) => { fields.requestsPerUnit = value; }),
  decode.enum(2, 'unit', (fields, value) => { fields.unit = value; }),
]);

// google.protobuf.UInt64Value {1 value}, read into the descriptor's hits_addend.
const HITS_ADDEND = messageReader<DescriptorFields, Bounds>('UInt64Value', [
  decode.uint64(1, 'value', (fields, value) => { fields.hitsAddend = value; }),
]);

// RateLimitDescriptor {1 entries, 2 limit, 3 hits_addend}
const RATE_LIMIT_DESCRIPTOR = messageReader<DescriptorFields, Bounds>('RateLimitDescriptor', [
  decode.message(1, 'entries', ENTRY, {
    open: () => ({ key: '', value: '' }),
    close: (fields, entry) => { fields.entries.push(entry); },
    repeated: true,
    most: { of: (bounds) => bounds.maxEntries, per: 'descriptor' },
  }),
  decode.message(2, 'limit', RATE_LIMIT_OVERRIDE, {
    open: (fields) => {
      fields.hasLimit = true;
      return fields;
    },
  }),
  // Present (even empty) means "this descriptor's cost": 0 unless `value` says more.
  decode.message(3, 'hits_addend', HITS_ADDEND, {
    open: (fields) => {
      if (fields.hitsAddend < 0) fields.hitsAddend = 0;
      return fields;
    },
  }),
]);

// RateLimitRequest {1 domain, 2 descriptors, 3 hits_addend}
const RATE_LIMIT_REQUEST = messageReader<DecisionRequest, Bounds>('RateLimitRequest', [
  decode.string(1, 'domain', (request, text) => { request.domain = text; }),
  decode.message(2, 'descriptors', RATE_LIMIT_DESCRIPTOR, {
    open: () => new DescriptorFields(),
    close: (request, fields) => { request.descriptors.push(descriptorOf(fields)); },
    repeated: true,
    most: { of: (bounds) => bounds.maxDescriptors, per: 'request' },
  }),
  // uint32 on the wire; 0 (unset) is passed through, the service reads it as 1.
  decode.uint32(3, 'hits_addend', (request, value) => { request.hitsAddend = value; }),
]);

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
export function decodeRateLimitRequest(bytes: Buffer, bounds: Bounds): DecisionRequest | Error {
  const request: DecisionRequest = { domain: '', descriptors: [], hitsAddend: 0 };
  try {
    readMessage(new WireReader(bytes), bytes.length, RATE_LIMIT_REQUEST, request, bounds);
    return request;
  } catch (error: unknown) {
    return decodeFailure(error, RATE_LIMIT_REQUEST.name);
  }
}

function clampUint32(n: number): number {
  if (!(n > 0)) return 0;
  return n >= MAX_UINT32 ? MAX_UINT32 : Math.floor(n);
}

const MS_PER_S = 1000;
const NANOS_PER_MS = 1_000_000;
const MAX_NANOS = 999_999_999;
const nonNegativeMs = (ms: number): number => (Number.isFinite(ms) && ms > 0 ? ms : 0);
const wholeSeconds = (ms: number): number => Math.floor(nonNegativeMs(ms) / MS_PER_S);

// google.protobuf.Duration {1 seconds, 2 nanos} from a millisecond count; zero fields left out.
const DURATION = messageWriter<number>([
  encode.uint(1, (ms) => wholeSeconds(ms) || undefined),
  encode.uint(2, (ms) => Math.min(MAX_NANOS, Math.round((nonNegativeMs(ms) - wholeSeconds(ms) * MS_PER_S) * NANOS_PER_MS)) || undefined),
]);

/** A period of several units cannot be said in the proto's unit enum: the name says it (`100/5m`). */
function limitName(limit: ReportedLimit): string | undefined {
  const name = limit.name ?? (limit.unitMultiplier === undefined ? '' : `${limit.requestsPerUnit}/${periodText(limit.unit, limit.unitMultiplier)}`);
  return name === '' ? undefined : name;
}

// RateLimitResponse.RateLimit {1 requests_per_unit, 2 unit, 3 name}
const RATE_LIMIT = messageWriter<ReportedLimit>([
  encode.uint(1, (limit) => clampUint32(limit.requestsPerUnit)),
  encode.uint(2, (limit) => RESPONSE_UNITS[limit.unit]),
  encode.string(3, limitName),
]);

// RateLimitResponse.DescriptorStatus {1 code, 2 current_limit, 3 limit_remaining, 4 duration_until_reset}.
// Unknown domain, no matching rule or unlimited: no current_limit and no duration, as envoyproxy/ratelimit.
const DESCRIPTOR_STATUS = messageWriter<DescriptorStatus>([
  encode.uint(1, (status) => (status.code === 'OVER_LIMIT' ? RLS_CODE.OVER_LIMIT : RLS_CODE.OK)),
  encode.message(2, RATE_LIMIT, (status) => status.limit ?? undefined),
  encode.uint(3, (status) => clampUint32(status.limitRemaining)),
  encode.message(4, DURATION, (status) => (status.limit === null ? undefined : status.durationUntilResetMs)),
]);

/** What one RateLimitResponse is written from. */
interface RateLimitAnswer {
  readonly decision: Decision;
  readonly headers: readonly HeaderPair[];
}

// RateLimitResponse {1 overall_code, 2 statuses, 3 response_headers_to_add}
const RATE_LIMIT_RESPONSE = messageWriter<RateLimitAnswer>([
  encode.uint(1, (answer) => (answer.decision.overallCode === 'OVER_LIMIT' ? RLS_CODE.OVER_LIMIT : RLS_CODE.OK)),
  encode.repeated(2, DESCRIPTOR_STATUS, (answer) => answer.decision.statuses),
  encode.repeated(3, HEADER_VALUE, (answer) => answer.headers),
]);

const NO_HEADERS: readonly HeaderPair[] = [];

/**
 * A RateLimitResponse: `overall_code` is OK or OVER_LIMIT, never UNKNOWN; one
 * status per request descriptor, in order; headers only when asked.
 */
export function encodeRateLimitResponse(decision: Decision, responseHeaders: boolean, style: HeaderStyle = 'x'): Buffer {
  const w = new WireWriter();
  writeMessage(w, RATE_LIMIT_RESPONSE, { decision, headers: responseHeaders ? rateLimitHeaders(decision, style) : NO_HEADERS });
  return w.finish();
}
