// What an ext_authz CheckRequest says about the HTTP request being limited,
// as the `http.descriptors` actions read it (core/http-actions.ts).
import type { HttpRequestInput } from '../../core/http-actions.js';
import { textOf } from './wire-reader.js';

const UPPER_A = 0x41;
const UPPER_Z = 0x5a;
const TO_LOWER = 0x20;

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return false;
  return true;
}

/**
 * Filled by authz-codec.ts while it decodes, then `complete()`d. Headers stay
 * bytes in the request's buffer until an action asks for one: Envoy sends a
 * dozen or more and the rules read two or three. Envoy sends the `headers`
 * map (names already lower-case, repeats joined with ','; a repeated map key:
 * the last wins), or with `encode_raw_headers` the `header_map` list, whose
 * names are compared lower-case and whose repeats are joined the same way; a
 * name in both answers from `header_map`.
 */
export class CheckHttpRequest implements HttpRequestInput {
  method = '';
  /** The request target as sent (`path` field) until complete(), then the path without the query. */
  path = '';
  query = '';
  authority = '';
  remoteAddress = '';
  /** `context_extensions["domain"]`; '' when absent (the service's default domain applies). */
  requestedDomain = '';
  /** The request's bytes, which the header ranges below point into. */
  readonly bytes: Buffer;
  /** `headers` map entries: keyStart, keyEnd, valueStart, valueEnd, ... */
  private readonly mapHeaders: number[] = [];
  /** `header_map` entries, the same way; undefined until the request has one. */
  private rawHeaders: number[] | undefined;

  constructor(bytes: Buffer) {
    this.bytes = bytes;
  }

  addMapHeader(keyStart: number, keyEnd: number, valueStart: number, valueEnd: number): void {
    this.mapHeaders.push(keyStart, keyEnd, valueStart, valueEnd);
  }

  addRawHeader(keyStart: number, keyEnd: number, valueStart: number, valueEnd: number): void {
    (this.rawHeaders ??= []).push(keyStart, keyEnd, valueStart, valueEnd);
  }

  /** Whether bytes[start, end) spell `name` (ASCII `name`: compared byte-wise, lower-casing the bytes when `caseless`). */
  private named(start: number, end: number, name: string, ascii: boolean, caseless: boolean): boolean {
    if (!ascii) {
      const text = textOf(this.bytes, start, end);
      return (caseless ? text.toLowerCase() : text) === name;
    }
    if (end - start !== name.length) return false;
    const bytes = this.bytes;
    for (let i = 0; i < name.length; i++) {
      let byte = bytes[start + i]!;
      if (caseless && byte >= UPPER_A && byte <= UPPER_Z) byte |= TO_LOWER;
      if (byte !== name.charCodeAt(i)) return false;
    }
    return true;
  }

  private lookup(name: string): string | undefined {
    const ascii = isAscii(name);
    const raw = this.rawHeaders;
    if (raw !== undefined) {
      let joined: string | undefined;
      for (let i = 0; i < raw.length; i += 4) {
        if (!this.named(raw[i]!, raw[i + 1]!, name, ascii, true)) continue;
        const value = textOf(this.bytes, raw[i + 2]!, raw[i + 3]!);
        joined = joined === undefined ? value : `${joined},${value}`;
      }
      if (joined !== undefined) return joined;
    }
    const map = this.mapHeaders;
    for (let i = map.length - 4; i >= 0; i -= 4) {
      if (this.named(map[i]!, map[i + 1]!, name, ascii, false)) return textOf(this.bytes, map[i + 2]!, map[i + 3]!);
    }
    return undefined;
  }

  /**
   * Derives the request line once every field is in: `path` carries the query
   * (Envoy's `query` field is always empty), split at the first '?'; empty
   * `path`, `method` and `host` fields fall back to the `:path`, `:method` and
   * `:authority` (then `host`) headers.
   */
  complete(): this {
    const target = this.path !== '' ? this.path : (this.lookup(':path') ?? '/');
    const q = target.indexOf('?');
    if (q === -1) {
      this.path = target;
    } else {
      this.path = target.slice(0, q);
      this.query = target.slice(q + 1);
    }
    if (this.method === '') this.method = this.lookup(':method') ?? '';
    if (this.authority === '') this.authority = this.lookup(':authority') ?? this.lookup('host') ?? '';
    return this;
  }

  /** Pseudo-headers `:path` (without query), `:method` and `:authority` answer from the request line. */
  header(name: string): string | undefined {
    switch (name) {
      case ':path': return this.path;
      case ':method': return this.method;
      case ':authority': return this.authority;
      default: return this.lookup(name);
    }
  }
}
