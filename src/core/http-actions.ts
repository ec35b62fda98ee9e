// Applies a domain's `http.descriptors` (Envoy's rate_limits actions) to one
// HTTP request. Runs per request: no allocation beyond the descriptors made.
import type { HttpAction } from './config-model.js';
import { maskedAddress, plainAddress } from './ip-address.js';
import { decodeUtf8Lossless } from './lossless-text.js';
import type { Entry } from './types.js';

/** The parts of an HTTP request the actions read. */
export interface HttpRequestInput {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Raw query string without '?', '' when none. */
  query: string;
  authority: string;
  /** Header by lower-case name; several values joined with ','. */
  header(lowerCaseName: string): string | undefined;
  /** Client address, already resolved through trusted proxies. */
  remoteAddress: string;
}

/**
 * One descriptor per inner action list, in order. As in Envoy, an action whose
 * source is absent drops its whole descriptor, except `skip_if_absent`
 * actions, which only drop their own entry; a list that produced no entry
 * produces no descriptor.
 */
export function descriptorsFromHttp(
  actions: readonly (readonly HttpAction[])[],
  request: HttpRequestInput,
): Entry[][] {
  const descriptors: Entry[][] = [];
  nextDescriptor: for (const list of actions) {
    const entries: Entry[] = [];
    for (const action of list) {
      let value: string | undefined;
      let key: string;
      switch (action.type) {
        case 'request_headers':
          key = action.descriptorKey;
          value = headerValue(request, action.headerName);
          if (value === undefined) {
            if (action.skipIfAbsent) continue;
            continue nextDescriptor;
          }
          break;
        case 'remote_address':
          key = 'remote_address';
          value = plainAddress(request.remoteAddress);
          if (value === undefined) continue nextDescriptor;
          break;
        case 'masked_remote_address':
          key = 'masked_remote_address';
          value = maskedAddress(request.remoteAddress, action.v4PrefixMaskLen, action.v6PrefixMaskLen);
          if (value === undefined) continue nextDescriptor;
          break;
        case 'generic_key':
          key = action.descriptorKey;
          value = action.descriptorValue;
          break;
        case 'query_parameters':
          key = action.descriptorKey;
          value = queryParameter(request.query, action.queryParameterName);
          if (value === undefined) {
            if (action.skipIfAbsent) continue;
            continue nextDescriptor;
          }
          break;
      }
      entries.push({ key, value });
    }
    if (entries.length > 0) descriptors.push(entries);
  }
  return descriptors;
}

const COLON = 58;

/** Pseudo-headers come from the request line; `host` falls back to the authority, as Envoy folds them together. */
function headerValue(request: HttpRequestInput, name: string): string | undefined {
  if (name.charCodeAt(0) === COLON) {
    switch (name) {
      case ':path': return request.path === '' ? undefined : request.path;
      case ':method': return request.method === '' ? undefined : request.method;
      case ':authority': return request.authority === '' ? undefined : request.authority;
      default: return request.header(name);
    }
  }
  const value = request.header(name);
  if (value === undefined && name === 'host' && request.authority !== '') return request.authority;
  return value;
}

// --- query string ---

/**
 * The first value of `name` in a raw query string, percent- and `+`-decoded
 * (names are compared decoded); '' for `?name` or `?name=`; undefined when absent.
 */
export function queryParameter(query: string, name: string): string | undefined {
  if (query === '') return undefined;
  let start = 0;
  while (start <= query.length) {
    let end = query.indexOf('&', start);
    if (end < 0) end = query.length;
    if (end > start) {
      const equals = query.indexOf('=', start);
      const nameEnd = equals >= 0 && equals < end ? equals : end;
      const rawName = query.slice(start, nameEnd);
      if (rawName === name || decodeQueryComponent(rawName) === name) {
        return nameEnd === end ? '' : decodeQueryComponent(query.slice(nameEnd + 1, end));
      }
    }
    start = end + 1;
  }
  return undefined;
}

/** application/x-www-form-urlencoded decoding; a malformed `%` sequence stays as written. */
function decodeQueryComponent(text: string): string {
  const plus = text.includes('+');
  if (!plus && !text.includes('%')) return text;
  const spaced = plus ? text.replace(/\+/g, ' ') : text;
  try {
    return decodeURIComponent(spaced);
  } catch {
    return decodeLeniently(spaced);
  }
}

function parseHexByte(text: string): number | undefined {
  return /^[0-9a-fA-F]{2}$/.test(text) ? Number.parseInt(text, 16) : undefined;
}

/** Byte-wise: valid %XX become bytes, anything else is kept, then UTF-8 (bad bytes kept distinct, see lossless-text.ts). */
function decodeLeniently(text: string): string {
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 37 && i + 2 < text.length) {
      const byte = parseHexByte(text.slice(i + 1, i + 3));
      if (byte !== undefined) {
        bytes.push(byte);
        i += 2;
        continue;
      }
    }
    const codePoint = text.codePointAt(i)!;
    if (codePoint > 0xffff) i++;
    for (const byte of encoder.encode(String.fromCodePoint(codePoint))) bytes.push(byte);
  }
  return decodeUtf8Lossless(new Uint8Array(bytes));
}
