// envoy.service.auth.v3: CheckRequest bytes -> CheckHttpRequest, and
// Decision -> CheckResponse bytes. Only the fields the limiter reads are
// decoded; everything else (destination, time, body, metadata, TLS, ...) is
// skipped by wire type. Field numbers as proto/envoy/service/auth/v3/*.proto
// and proto/envoy/config/core/v3/*.proto (pinned by test/grpc/golden-bytes.test.ts).
import { mostRestrictiveStatus, rateLimitHeaders, type HeaderStyle } from '../../core/response-headers.js';
import type { Decision } from '../../core/types.js';
import { CheckHttpRequest } from './check-http-request.js';
import { WIRE_LEN, WireReader, decodeFailure, textOf, within } from './wire-reader.js';
import { WireWriter } from './wire-writer.js';

const RPC_CODE_RESOURCE_EXHAUSTED = 8;
/** envoy.type.v3.StatusCode.TooManyRequests. */
const HTTP_TOO_MANY_REQUESTS = 429;
/** HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD. */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

const lenTag = (field: number): number => field * 8 + WIRE_LEN;
const fieldsMask = (...fields: number[]): number => fields.reduce((mask, field) => mask | (1 << field), 0);

// Every field read here is length-delimited.
// CheckRequest {1 attributes}
const CHECK_ATTRIBUTES = lenTag(1);
const CHECK_FIELDS = fieldsMask(1);
// AttributeContext {1 source, 4 request, 10 context_extensions}
const ATTRIBUTES_SOURCE = lenTag(1);
const ATTRIBUTES_REQUEST = lenTag(4);
const ATTRIBUTES_CONTEXT_EXTENSION = lenTag(10);
const ATTRIBUTES_FIELDS = fieldsMask(1, 4, 10);
// Peer {1 address}; Address {1 socket_address}; SocketAddress {2 address}
const FIRST = lenTag(1);
const FIRST_FIELDS = fieldsMask(1);
const SOCKET_ADDRESS_ADDRESS = lenTag(2);
const SOCKET_ADDRESS_FIELDS = fieldsMask(2);
// Request {2 http}
const REQUEST_HTTP = lenTag(2);
const REQUEST_FIELDS = fieldsMask(2);
// HttpRequest {2 method, 3 headers, 4 path, 5 host, 7 query, 13 header_map}
const HTTP_METHOD = lenTag(2);
const HTTP_HEADER = lenTag(3);
const HTTP_PATH = lenTag(4);
const HTTP_HOST = lenTag(5);
const HTTP_QUERY = lenTag(7);
const HTTP_HEADER_MAP = lenTag(13);
const HTTP_FIELDS = fieldsMask(2, 3, 4, 5, 7, 13);
// map<string, string> entry {1 key, 2 value}; HeaderMap {1 headers}; HeaderValue {1 key, 2 value, 3 raw_value}
const KEY = lenTag(1);
const VALUE = lenTag(2);
const RAW_VALUE = lenTag(3);
const MAP_ENTRY_FIELDS = fieldsMask(1, 2);
const HEADER_VALUE_FIELDS = fieldsMask(1, 2, 3);

/** Names a field for an error path; `names[n]` is field n's proto name. */
function nameOf(tag: number, names: Readonly<Record<number, string>>): string {
  if (tag === 0) return '';
  return names[tag >>> 3] ?? `(field ${tag >>> 3})`;
}

/** A message whose only field we read is field 1, a sub-message, read by `inner`. */
function readFirst(r: WireReader, end: number, name: string, into: CheckHttpRequest, inner: (r: WireReader, end: number, into: CheckHttpRequest) => void): void {
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === FIRST) inner(r, r.lengthEnd(end), into);
      else r.skip(tag, end, FIRST_FIELDS);
    }
  } catch (error: unknown) {
    throw within(error, nameOf(tag, { 1: name }));
  }
}

function readSocketAddress(r: WireReader, end: number, into: CheckHttpRequest): void {
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === SOCKET_ADDRESS_ADDRESS) into.remoteAddress = r.string(end);
      else r.skip(tag, end, SOCKET_ADDRESS_FIELDS);
    }
  } catch (error: unknown) {
    throw within(error, nameOf(tag, { 2: 'address' }));
  }
}

const readAddress = (r: WireReader, end: number, into: CheckHttpRequest): void => readFirst(r, end, 'socket_address', into, readSocketAddress);
const readPeer = (r: WireReader, end: number, into: CheckHttpRequest): void => readFirst(r, end, 'address', into, readAddress);

/**
 * One map<string, string> entry or HeaderValue: the byte ranges of key and
 * value (raw_value wins when not empty), decoded only if someone asks for
 * them (CheckHttpRequest's lookups, the `domain` extension). Missing fields
 * are empty, as protobuf says.
 */
const entry = { keyStart: 0, keyEnd: 0, valueStart: 0, valueEnd: 0 };

function readEntry(r: WireReader, end: number, knownFields: number): typeof entry {
  entry.keyStart = entry.keyEnd = entry.valueStart = entry.valueEnd = 0;
  let rawStart = 0;
  let rawEnd = 0;
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === KEY || tag === VALUE || (tag === RAW_VALUE && knownFields === HEADER_VALUE_FIELDS)) {
        const stop = r.lengthEnd(end);
        if (tag === KEY) {
          entry.keyStart = r.pos;
          entry.keyEnd = stop;
        } else if (tag === VALUE) {
          entry.valueStart = r.pos;
          entry.valueEnd = stop;
        } else {
          rawStart = r.pos;
          rawEnd = stop;
        }
        r.pos = stop;
      } else {
        r.skip(tag, end, knownFields);
      }
    }
  } catch (error: unknown) {
    throw within(error, nameOf(tag, { 1: 'key', 2: 'value', 3: 'raw_value' }));
  }
  if (rawEnd > rawStart) {
    entry.valueStart = rawStart;
    entry.valueEnd = rawEnd;
  }
  return entry;
}

function readHeaderMap(r: WireReader, end: number, into: CheckHttpRequest): void {
  let tag = 0;
  let count = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === FIRST) {
        const { keyStart, keyEnd, valueStart, valueEnd } = readEntry(r, r.lengthEnd(end), HEADER_VALUE_FIELDS);
        into.addRawHeader(keyStart, keyEnd, valueStart, valueEnd);
        count++;
      } else {
        r.skip(tag, end, FIRST_FIELDS);
      }
    }
  } catch (error: unknown) {
    throw within(error, nameOf(tag, { 1: `headers[${count}]` }));
  }
}

function readHttp(r: WireReader, end: number, into: CheckHttpRequest): void {
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      switch (tag) {
        case HTTP_METHOD: into.method = r.string(end); break;
        case HTTP_HEADER: {
          const { keyStart, keyEnd, valueStart, valueEnd } = readEntry(r, r.lengthEnd(end), MAP_ENTRY_FIELDS);
          into.addMapHeader(keyStart, keyEnd, valueStart, valueEnd);
          break;
        }
        case HTTP_PATH: into.path = r.string(end); break;
        case HTTP_HOST: into.authority = r.string(end); break;
        case HTTP_QUERY: into.query = r.string(end); break;
        case HTTP_HEADER_MAP: readHeaderMap(r, r.lengthEnd(end), into); break;
        default: r.skip(tag, end, HTTP_FIELDS);
      }
    }
  } catch (error: unknown) {
    throw within(error, nameOf(tag, { 2: 'method', 3: 'headers', 4: 'path', 5: 'host', 7: 'query', 13: 'header_map' }));
  }
}

function readRequest(r: WireReader, end: number, into: CheckHttpRequest): void {
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === REQUEST_HTTP) readHttp(r, r.lengthEnd(end), into);
      else r.skip(tag, end, REQUEST_FIELDS);
    }
  } catch (error: unknown) {
    throw within(error, nameOf(tag, { 2: 'http' }));
  }
}

/** "domain" as bytes: context_extensions keys are compared without decoding them. */
const DOMAIN_KEY = Buffer.from('domain');

function readAttributes(r: WireReader, end: number, into: CheckHttpRequest): void {
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === ATTRIBUTES_SOURCE) {
        readPeer(r, r.lengthEnd(end), into);
      } else if (tag === ATTRIBUTES_REQUEST) {
        readRequest(r, r.lengthEnd(end), into);
      } else if (tag === ATTRIBUTES_CONTEXT_EXTENSION) {
        const { keyStart, keyEnd, valueStart, valueEnd } = readEntry(r, r.lengthEnd(end), MAP_ENTRY_FIELDS);
        if (keyEnd - keyStart === DOMAIN_KEY.length && r.bytes.compare(DOMAIN_KEY, 0, DOMAIN_KEY.length, keyStart, keyEnd) === 0) {
          into.requestedDomain = textOf(r.bytes, valueStart, valueEnd);
        }
      } else {
        r.skip(tag, end, ATTRIBUTES_FIELDS);
      }
    }
  } catch (error: unknown) {
    throw within(error, nameOf(tag, { 1: 'source', 4: 'request', 10: 'context_extensions' }));
  }
}

/**
 * Decodes a CheckRequest into the HTTP request it asks about (strings
 * losslessly, see textOf). Never throws (grpc-js would answer INTERNAL): bad
 * bytes come back as a MalformedMessageError naming the field (proto names,
 * e.g. `attributes.request.http.headers`), a bug as the Error itself.
 */
export function decodeCheckRequest(bytes: Buffer): CheckHttpRequest | Error {
  const into = new CheckHttpRequest(bytes);
  const r = new WireReader(bytes);
  const end = bytes.length;
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === CHECK_ATTRIBUTES) readAttributes(r, r.lengthEnd(end), into);
      else r.skip(tag, end, CHECK_FIELDS);
    }
    return into.complete();
  } catch (error: unknown) {
    return decodeFailure(within(error, nameOf(tag, { 1: 'attributes' })), 'CheckRequest');
  }
}

const writer = new WireWriter();

/** HeaderValueOption {1 header HeaderValue {1 key, 2 value}, 3 append_action}: overwrite, not append. */
function writeHeaderOption(w: WireWriter, field: number, key: string, value: string): void {
  const mark = w.begin(field);
  const header = w.begin(1);
  w.string(1, key);
  w.string(2, value);
  w.end(header);
  w.uint(3, OVERWRITE_IF_EXISTS_OR_ADD);
  w.end(mark);
}

/**
 * CheckResponse {1 status google.rpc.Status {1 code, 2 message}, 2 denied_response, 3 ok_response}.
 * No decision (no descriptor was produced) or OK → status 0 and `ok_response`
 * whose `response_headers_to_add` (6) carry x-ratelimit-* to the client.
 * OVER_LIMIT → status 8 (RESOURCE_EXHAUSTED) and a `denied_response`
 * {1 status HttpStatus {1 code} = 429, 2 headers: retry-after, x-ratelimit-*,
 * content-type, 3 body: a small JSON}.
 */
export function encodeCheckResponse(decision: Decision | undefined, style: HeaderStyle = 'x'): Buffer {
  const w = writer;
  w.reset();
  const headers = decision === undefined ? [] : rateLimitHeaders(decision, style);
  if (decision === undefined || decision.overallCode === 'OK') {
    w.end(w.begin(1)); // Status with code 0: an empty message
    const ok = w.begin(3);
    for (const [key, value] of headers) writeHeaderOption(w, 6, key, value);
    w.end(ok);
    return w.finish();
  }
  const status = w.begin(1);
  w.uint(1, RPC_CODE_RESOURCE_EXHAUSTED);
  w.string(2, 'over limit');
  w.end(status);
  const denied = w.begin(2);
  const httpStatus = w.begin(1);
  w.uint(1, HTTP_TOO_MANY_REQUESTS);
  w.end(httpStatus);
  let retryAfter = '1';
  for (const [key, value] of headers) {
    writeHeaderOption(w, 2, key, value);
    if (key === 'retry-after') retryAfter = value;
  }
  writeHeaderOption(w, 2, 'content-type', 'application/json');
  const never = mostRestrictiveStatus(decision)?.unsatisfiable === true ? ',"unsatisfiable":true' : '';
  w.string(3, `{"overall_code":"OVER_LIMIT","retry_after_s":${retryAfter}${never}}`);
  w.end(denied);
  return w.finish();
}
