// envoy.service.auth.v3: CheckRequest bytes -> CheckHttpRequest, and
// Decision -> CheckResponse bytes, each message a field table read by the
// decode and encode loops of message-table.ts. Only the fields the limiter
// reads are in the tables; everything else (destination, time, body,
// metadata, TLS, ...) is skipped by wire type. Field numbers as
// proto/envoy/service/auth/v3/*.proto and proto/envoy/config/core/v3/*.proto
// (pinned by test/integration/grpc/golden-bytes.test.ts).
import { mostRestrictiveStatus, rateLimitHeaders, type HeaderStyle } from '../../core/response-headers.js';
import type { Decision } from '../../core/types.js';
import { CheckHttpRequest } from './check-http-request.js';
import { HEADER_VALUE, type HeaderPair } from './header-value.js';
import { decode, encode, messageReader, messageWriter, readMessage, writeMessage, type MessageReader } from './message-table.js';
import { WireReader, decodeFailure, textOf } from './wire-reader.js';
import { WireWriter } from './wire-writer.js';

const RPC_CODE_RESOURCE_EXHAUSTED = 8;
/** envoy.type.v3.StatusCode.TooManyRequests. */
const HTTP_TOO_MANY_REQUESTS = 429;
/** HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD. */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/**
 * One call's decoding: the request being filled, and the header (a map
 * entry or a HeaderValue) being read, as byte ranges of key and value
 * (raw_value wins when not empty), decoded only if someone asks for them
 * (CheckHttpRequest's lookups, the `domain` extension). Missing fields are
 * empty, as protobuf says. Every message below is decoded into it.
 */
class CheckDecoding {
  readonly request: CheckHttpRequest;
  keyStart = 0;
  keyEnd = 0;
  valueStart = 0;
  valueEnd = 0;
  rawStart = 0;
  rawEnd = 0;

  constructor(bytes: Buffer) {
    this.request = new CheckHttpRequest(bytes);
  }

  /** Opens a header: nothing of the previous one carries over. */
  openHeader(): this {
    this.keyStart = this.keyEnd = this.valueStart = this.valueEnd = this.rawStart = this.rawEnd = 0;
    return this;
  }
}

const same = (decoding: CheckDecoding): CheckDecoding => decoding;
const openHeader = (decoding: CheckDecoding): CheckDecoding => decoding.openHeader();
const keySpan = decode.span<CheckDecoding>(1, 'key', (d, start, end) => {
  d.keyStart = start;
  d.keyEnd = end;
});
const valueSpan = decode.span<CheckDecoding>(2, 'value', (d, start, end) => {
  d.valueStart = start;
  d.valueEnd = end;
});

// map<string, string> entry {1 key, 2 value}
const MAP_ENTRY = messageReader<CheckDecoding>('MapEntry', [keySpan, valueSpan]);

// envoy.config.core.v3.HeaderValue {1 key, 2 value, 3 raw_value}
const HEADER_VALUE_IN = messageReader<CheckDecoding>('HeaderValue', [
  keySpan,
  valueSpan,
  decode.span(3, 'raw_value', (d, start, end) => {
    d.rawStart = start;
    d.rawEnd = end;
  }),
]);

// envoy.config.core.v3.HeaderMap {1 headers}
const HEADER_MAP = messageReader<CheckDecoding>('HeaderMap', [
  decode.message(1, 'headers', HEADER_VALUE_IN, {
    open: openHeader,
    close: (d) => {
      const raw = d.rawEnd > d.rawStart;
      d.request.addRawHeader(d.keyStart, d.keyEnd, raw ? d.rawStart : d.valueStart, raw ? d.rawEnd : d.valueEnd);
    },
    repeated: true,
  }),
]);

// AttributeContext.HttpRequest {2 method, 3 headers, 4 path, 5 host, 7 query, 13 header_map}
const HTTP_REQUEST = messageReader<CheckDecoding>('HttpRequest', [
  decode.string(2, 'method', (d, text) => { d.request.method = text; }),
  decode.message(3, 'headers', MAP_ENTRY, {
    open: openHeader,
    close: (d) => d.request.addMapHeader(d.keyStart, d.keyEnd, d.valueStart, d.valueEnd),
  }),
  decode.string(4, 'path', (d, text) => { d.request.path = text; }),
  decode.string(5, 'host', (d, text) => { d.request.authority = text; }),
  decode.string(7, 'query', (d, text) => { d.request.query = text; }),
  decode.message(13, 'header_map', HEADER_MAP, { open: same }),
]);

/** A message whose only field we read is field 1, a sub-message. */
const firstOnly = (name: string, fieldName: string, inner: MessageReader<CheckDecoding, undefined>): MessageReader<CheckDecoding, undefined> =>
  messageReader(name, [decode.message(1, fieldName, inner, { open: same })]);

// AttributeContext.Peer {1 address}; envoy.config.core.v3.Address {1 socket_address}; SocketAddress {2 address}
const SOCKET_ADDRESS = messageReader<CheckDecoding>('SocketAddress', [
  decode.string(2, 'address', (d, text) => { d.request.remoteAddress = text; }),
]);
const PEER = firstOnly('Peer', 'address', firstOnly('Address', 'socket_address', SOCKET_ADDRESS));

// AttributeContext.Request {2 http}
const REQUEST = messageReader<CheckDecoding>('Request', [decode.message(2, 'http', HTTP_REQUEST, { open: same })]);

/** "domain" as bytes: context_extensions keys are compared without decoding them. */
const DOMAIN_KEY = Buffer.from('domain');

// AttributeContext {1 source, 4 request, 10 context_extensions}
const ATTRIBUTE_CONTEXT = messageReader<CheckDecoding>('AttributeContext', [
  decode.message(1, 'source', PEER, { open: same }),
  decode.message(4, 'request', REQUEST, { open: same }),
  decode.message(10, 'context_extensions', MAP_ENTRY, {
    open: openHeader,
    close: (d) => {
      const bytes = d.request.bytes;
      if (d.keyEnd - d.keyStart === DOMAIN_KEY.length && bytes.compare(DOMAIN_KEY, 0, DOMAIN_KEY.length, d.keyStart, d.keyEnd) === 0) {
        d.request.requestedDomain = textOf(bytes, d.valueStart, d.valueEnd);
      }
    },
  }),
]);

// CheckRequest {1 attributes}
const CHECK_REQUEST = messageReader<CheckDecoding>('CheckRequest', [decode.message(1, 'attributes', ATTRIBUTE_CONTEXT, { open: same })]);

/**
 * Decodes a CheckRequest into the HTTP request it asks about (strings
 * losslessly, see textOf). Never throws (grpc-js would answer INTERNAL): bad
 * bytes come back as a MalformedMessageError naming the field (proto names,
 * e.g. `attributes.request.http.headers`), a bug as the Error itself.
 */
export function decodeCheckRequest(bytes: Buffer): CheckHttpRequest | Error {
  const decoding = new CheckDecoding(bytes);
  try {
    readMessage(new WireReader(bytes), bytes.length, CHECK_REQUEST, decoding, undefined);
    return decoding.request.complete();
  } catch (error: unknown) {
    return decodeFailure(error, CHECK_REQUEST.name);
  }
}

/** What one CheckResponse is written from. */
interface CheckAnswer {
  readonly denied: boolean;
  readonly headers: readonly HeaderPair[];
  /** DeniedHttpResponse.body. */
  readonly body: string;
}

// HeaderValueOption {1 header, 3 append_action}: overwrite, not append.
const HEADER_VALUE_OPTION = messageWriter<HeaderPair>([
  encode.message(1, HEADER_VALUE, (header) => header),
  encode.uint(3, () => OVERWRITE_IF_EXISTS_OR_ADD),
]);

// google.rpc.Status {1 code, 2 message}: code 0 is an empty message.
const RPC_STATUS = messageWriter<CheckAnswer>([
  encode.uint(1, (answer) => (answer.denied ? RPC_CODE_RESOURCE_EXHAUSTED : undefined)),
  encode.string(2, (answer) => (answer.denied ? 'over limit' : undefined)),
]);

// envoy.type.v3.HttpStatus {1 code}
const HTTP_STATUS = messageWriter<number>([encode.uint(1, (code) => code)]);

// DeniedHttpResponse {1 status, 2 headers, 3 body}
const DENIED_HTTP_RESPONSE = messageWriter<CheckAnswer>([
  encode.message(1, HTTP_STATUS, () => HTTP_TOO_MANY_REQUESTS),
  encode.repeated(2, HEADER_VALUE_OPTION, (answer) => answer.headers),
  encode.string(3, (answer) => answer.body),
]);

// OkHttpResponse {6 response_headers_to_add}
const OK_HTTP_RESPONSE = messageWriter<CheckAnswer>([encode.repeated(6, HEADER_VALUE_OPTION, (answer) => answer.headers)]);

// CheckResponse {1 status, 2 denied_response, 3 ok_response}
const CHECK_RESPONSE = messageWriter<CheckAnswer>([
  encode.message(1, RPC_STATUS, (answer) => answer),
  encode.message(2, DENIED_HTTP_RESPONSE, (answer) => (answer.denied ? answer : undefined)),
  encode.message(3, OK_HTTP_RESPONSE, (answer) => (answer.denied ? undefined : answer)),
]);

/** The answer to a Check: see encodeCheckResponse. */
function checkAnswer(decision: Decision | undefined, style: HeaderStyle): CheckAnswer {
  const headers = decision === undefined ? [] : rateLimitHeaders(decision, style);
  if (decision === undefined || decision.overallCode === 'OK') return { denied: false, headers, body: '' };
  let retryAfter = '1';
  for (const [key, value] of headers) if (key === 'retry-after') retryAfter = value;
  headers.push(['content-type', 'application/json']);
  const never = mostRestrictiveStatus(decision)?.unsatisfiable === true ? ',"unsatisfiable":true' : '';
  return { denied: true, headers, body: `{"overall_code":"OVER_LIMIT","retry_after_s":${retryAfter}${never}}` };
}

/**
 * CheckResponse. No decision (no descriptor was produced) or OK → status 0
 * and `ok_response` whose `response_headers_to_add` carry x-ratelimit-* to
 * the client. OVER_LIMIT → status 8 (RESOURCE_EXHAUSTED) and a
 * `denied_response` of 429 with retry-after, x-ratelimit-*, content-type and
 * a small JSON body.
 */
export function encodeCheckResponse(decision: Decision | undefined, style: HeaderStyle = 'x'): Buffer {
  const w = new WireWriter();
  writeMessage(w, CHECK_RESPONSE, checkAnswer(decision, style));
  return w.finish();
}
