// Applies a domain's `http.descriptors` (Envoy's rate_limits actions) to one
// HTTP request. Runs per request: no allocation beyond the descriptors made,
// no node:* (addresses are parsed here by hand).
import type { HttpAction } from './config-model.js';
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

// --- addresses ---

/** The client address as the bucket sees it: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as plain IPv4. */
function plainAddress(address: string): string | undefined {
  if (address === '') return undefined;
  if (address.length > 7 && address.charCodeAt(0) === COLON && address.includes('.')) {
    const prefix = address.slice(0, 7).toLowerCase();
    if (prefix === '::ffff:' && parseIPv4(address.slice(7)) !== undefined) return address.slice(7);
  }
  return address;
}

/** `192.168.1.0/24`, `2001:db8::/32`; undefined when the address is not an IP address. */
export function maskedAddress(address: string, v4PrefixLen: number, v6PrefixLen: number): string | undefined {
  const v4 = parseIPv4(address);
  if (v4 !== undefined) return `${formatIPv4(maskIPv4(v4, v4PrefixLen))}/${v4PrefixLen}`;
  const v6 = parseIPv6(address);
  if (v6 === undefined) return undefined;
  if (isV4Mapped(v6)) {
    const mapped = ((v6[6]! << 16) | v6[7]!) >>> 0;
    return `${formatIPv4(maskIPv4(mapped, v4PrefixLen))}/${v4PrefixLen}`;
  }
  for (let i = 0; i < 8; i++) {
    const keep = Math.min(16, Math.max(0, v6PrefixLen - i * 16));
    v6[i] = keep === 0 ? 0 : v6[i]! & ((0xffff << (16 - keep)) & 0xffff);
  }
  return `${formatIPv6(v6)}/${v6PrefixLen}`;
}

function maskIPv4(address: number, prefixLen: number): number {
  return prefixLen === 0 ? 0 : (address & (0xffffffff << (32 - prefixLen))) >>> 0;
}

/** Dotted quad to a 32-bit number; undefined unless exactly four decimal octets. */
export function parseIPv4(text: string): number | undefined {
  let result = 0;
  let octets = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // a final '.' closes the last octet
    if (c >= 48 && c <= 57) {
      value = value * 10 + (c - 48);
      digits++;
      if (digits > 3 || value > 255) return undefined;
    } else if (c === 46) {
      if (digits === 0 || octets === 4) return undefined;
      result = result * 256 + value;
      octets++;
      value = 0;
      digits = 0;
    } else {
      return undefined;
    }
  }
  return octets === 4 ? result : undefined;
}

function formatIPv4(address: number): string {
  return `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}`;
}

function parseHexGroup(text: string): number | undefined {
  if (text.length === 0 || text.length > 4) return undefined;
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let digit: number;
    if (c >= 48 && c <= 57) digit = c - 48;
    else if (c >= 97 && c <= 102) digit = c - 87;
    else if (c >= 65 && c <= 70) digit = c - 55;
    else return undefined;
    value = value * 16 + digit;
  }
  return value;
}

/** Groups of one side of `::`; an IPv4 tail counts as two groups. */
function parseGroups(text: string, allowIPv4Tail: boolean): number[] | undefined {
  if (text === '') return [];
  const parts = text.split(':');
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (allowIPv4Tail && i === parts.length - 1 && part.includes('.')) {
      const v4 = parseIPv4(part);
      if (v4 === undefined) return undefined;
      groups.push(v4 >>> 16, v4 & 0xffff);
    } else {
      const group = parseHexGroup(part);
      if (group === undefined) return undefined;
      groups.push(group);
    }
  }
  return groups;
}

/** Eight 16-bit groups; accepts `::`, an IPv4 tail, a zone (`%eth0`) and brackets. */
export function parseIPv6(input: string): number[] | undefined {
  let text = input;
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  if (!text.includes(':')) return undefined;
  const gap = text.indexOf('::');
  if (gap < 0) {
    const groups = parseGroups(text, true);
    return groups !== undefined && groups.length === 8 ? groups : undefined;
  }
  if (text.indexOf('::', gap + 1) >= 0) return undefined;
  const head = parseGroups(text.slice(0, gap), false);
  const tail = parseGroups(text.slice(gap + 2), true);
  if (head === undefined || tail === undefined || head.length + tail.length > 7) return undefined;
  const groups = head.slice();
  for (let i = head.length + tail.length; i < 8; i++) groups.push(0);
  return groups.concat(tail);
}

function isV4Mapped(groups: readonly number[]): boolean {
  return groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0
    && groups[4] === 0 && groups[5] === 0xffff;
}

/** RFC 5952 text: lower-case, no leading zeros, the longest run (2+) of zero groups as `::`. */
export function formatIPv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
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

const utf8 = new TextDecoder('utf-8');

/** application/x-www-form-urlencoded decoding; a malformed `%` sequence stays as written. */
export function decodeQueryComponent(text: string): string {
  const plus = text.includes('+');
  if (!plus && !text.includes('%')) return text;
  const spaced = plus ? text.replace(/\+/g, ' ') : text;
  try {
    return decodeURIComponent(spaced);
  } catch {
    return decodeLeniently(spaced);
  }
}

/** Byte-wise: valid %XX become bytes, anything else is kept, then UTF-8 (bad bytes → U+FFFD). */
function decodeLeniently(text: string): string {
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 37 && i + 2 < text.length) {
      const byte = parseHexGroup(text.slice(i + 1, i + 3));
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
  return utf8.decode(new Uint8Array(bytes));
}
