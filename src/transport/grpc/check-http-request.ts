// What an ext_authz CheckRequest says about the HTTP request being limited,
// as the `http.descriptors` actions read it (core/http-actions.ts).
import type { HttpRequestInput } from '../../core/http-actions.js';

/**
 * Filled by authz-codec.ts while it decodes, then `complete()`d. Headers by
 * lower-case name: Envoy sends the `headers` map (names already lower-case,
 * repeats joined with ','), or with `encode_raw_headers` the `header_map`
 * list, whose repeats are joined the same way; a name in both answers from
 * `header_map`.
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
  /** The `headers` map. */
  readonly headers = new Map<string, string>();
  /** `header_map`, joined by name; only made when the request has one. */
  rawHeaders: Map<string, string> | undefined;

  /** Adds one `header_map` entry (names compared lower-case; repeats joined with ','). */
  addRawHeader(name: string, value: string): void {
    this.rawHeaders ??= new Map();
    const key = name.toLowerCase();
    const previous = this.rawHeaders.get(key);
    this.rawHeaders.set(key, previous === undefined ? value : `${previous},${value}`);
  }

  private lookup(name: string): string | undefined {
    if (this.rawHeaders !== undefined) {
      const raw = this.rawHeaders.get(name);
      if (raw !== undefined) return raw;
    }
    return this.headers.get(name);
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
