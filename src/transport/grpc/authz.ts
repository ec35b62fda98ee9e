// envoy.service.auth.v3.Authorization/Check (ext_authz) <-> core types.
import type { HttpRequestInput } from '../../core/http-actions.js';
import { mostRestrictiveStatus, type HeaderStyle } from '../../core/response-headers.js';
import type { Decision } from '../../core/types.js';
import {
  OVERWRITE_IF_EXISTS_OR_ADD,
  RPC_CODE_OK,
  RPC_CODE_RESOURCE_EXHAUSTED,
  type CheckRequestMessage,
  type CheckResponseMessage,
  type HeaderValue,
  type HeaderValueOption,
} from './messages.js';
import { rateLimitHeaders } from './rate-limit-headers.js';

/** envoy.type.v3.StatusCode.TooManyRequests. */
export const HTTP_TOO_MANY_REQUESTS = 429;

type HttpAttributes = NonNullable<NonNullable<NonNullable<CheckRequestMessage['attributes']>['request']>['http']>;

/**
 * Headers by lower-case name. Envoy sends the `headers` map (names already
 * lower-case, repeated headers joined with ','), or with `encode_raw_headers`
 * the `header_map` list instead, whose repeats we join the same way.
 */
function headerLookup(http: HttpAttributes): (name: string) => string | undefined {
  const map = http.headers ?? {};
  const raw = http.header_map?.headers ?? [];
  if (raw.length === 0) {
    return (name) => (Object.hasOwn(map, name) ? map[name] : undefined);
  }
  const joined = new Map<string, string>();
  for (const h of raw) {
    const key = (h.key ?? '').toLowerCase();
    const value = h.raw_value !== null && h.raw_value !== undefined && h.raw_value.length > 0
      ? Buffer.from(h.raw_value).toString('utf8')
      : (h.value ?? '');
    const previous = joined.get(key);
    joined.set(key, previous === undefined ? value : `${previous},${value}`);
  }
  return (name) => joined.get(name) ?? (Object.hasOwn(map, name) ? map[name] : undefined);
}

/**
 * The request ext_authz asks about, as the `http.descriptors` actions read it.
 * `path` carries the query (Envoy's `query` field is always empty): split at
 * the first '?'. Pseudo-headers `:path` (without query), `:method` and
 * `:authority` answer from the parsed request, whichever way they were sent.
 */
export function httpInputFromCheckRequest(message: CheckRequestMessage): HttpRequestInput {
  const attributes = message.attributes ?? {};
  const http: HttpAttributes = attributes.request?.http ?? {};
  const lookup = headerLookup(http);
  const target = http.path !== undefined && http.path !== null && http.path !== '' ? http.path : (lookup(':path') ?? '/');
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? (http.query ?? '') : target.slice(q + 1);
  const method = http.method !== undefined && http.method !== null && http.method !== '' ? http.method : (lookup(':method') ?? '');
  const authority = http.host !== undefined && http.host !== null && http.host !== ''
    ? http.host
    : (lookup(':authority') ?? lookup('host') ?? '');
  const remoteAddress = attributes.source?.address?.socket_address?.address ?? '';
  return {
    method,
    path,
    query,
    authority,
    remoteAddress,
    header(name: string): string | undefined {
      switch (name) {
        case ':path': return path;
        case ':method': return method;
        case ':authority': return authority;
        default: return lookup(name);
      }
    },
  };
}

/** `context_extensions["domain"]`, or undefined when absent or empty. */
export function requestedDomain(message: CheckRequestMessage): string | undefined {
  const extensions = message.attributes?.context_extensions ?? {};
  const domain = Object.hasOwn(extensions, 'domain') ? extensions['domain'] : undefined;
  return domain === undefined || domain === '' ? undefined : domain;
}

function options(headers: HeaderValue[]): HeaderValueOption[] {
  return headers.map((header) => ({ header, append_action: OVERWRITE_IF_EXISTS_OR_ADD }));
}

/** Allow with no headers: no descriptor was produced (or no limit applies). */
export function allowResponse(headers: HeaderValue[] = []): CheckResponseMessage {
  return {
    status: { code: RPC_CODE_OK, message: '' },
    ok_response: { headers: [], headers_to_remove: [], response_headers_to_add: options(headers) },
  };
}

/**
 * OK → status 0 and `ok_response.response_headers_to_add` with x-ratelimit-*
 * (sent to the client). OVER_LIMIT → status 8 (RESOURCE_EXHAUSTED) and a 429
 * `denied_response` with retry-after, x-ratelimit-* and a small JSON body.
 */
export function encodeCheckResponse(decision: Decision, style: HeaderStyle = 'x'): CheckResponseMessage {
  const headers = rateLimitHeaders(decision, style);
  if (decision.overallCode === 'OK') return allowResponse(headers);
  const retryAfter = headers.find((h) => h.key === 'retry-after')?.value ?? '1';
  const never = mostRestrictiveStatus(decision)?.unsatisfiable === true ? ',"unsatisfiable":true' : '';
  return {
    status: { code: RPC_CODE_RESOURCE_EXHAUSTED, message: 'over limit' },
    denied_response: {
      status: { code: HTTP_TOO_MANY_REQUESTS },
      headers: options([...headers, { key: 'content-type', value: 'application/json' }]),
      body: `{"overall_code":"OVER_LIMIT","retry_after_s":${retryAfter}${never}}`,
    },
  };
}
