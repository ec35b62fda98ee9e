import type { Decision, DescriptorStatus, HeaderPolicy, LimitSpec } from './types.js';

/**
 * Which rate-limit response headers every API sets (`--header-style`):
 * - `x`: X-RateLimit-Limit / -Remaining / -Reset, the de-facto trio NGINX and most clients read;
 * - `draft03`: RateLimit-Limit / -Remaining / -Reset, as envoyproxy/ratelimit sends them;
 * - `draft10`: IETF draft-ietf-httpapi-ratelimit-headers-10 `RateLimit-Policy` and `RateLimit`;
 * - `both`: `x` and `draft10`.
 * `Retry-After` is on every denial whatever the style.
 */
export const HEADER_STYLES = ['x', 'draft03', 'draft10', 'both'] as const;
export type HeaderStyle = (typeof HEADER_STYLES)[number];

const SECOND_US = 1_000_000n;

/**
 * `text` as an RFC 8941 sf-string: `\` and `"` escaped; characters an
 * sf-string cannot hold (outside printable ASCII) and `%` itself are
 * percent-encoded as UTF-8, so distinct names stay distinct.
 */
export function sfString(text: string): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (char === '"' || char === '\\') out += `\\${char}`;
    else if (code >= 0x20 && code <= 0x7e && char !== '%') out += char;
    else for (const byte of new TextEncoder().encode(char)) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return `${out}"`;
}

/**
 * The draft-10 policy of a limit, built once at load: `q` is what can be
 * spent at once (a token bucket's burst, a window's requests_per_unit) and
 * `w` the seconds in which that quota comes back (a token bucket refills its
 * burst in burst / rate; a window is its period), rounded up.
 */
export function headerPolicy(policyName: string, limit: LimitSpec): HeaderPolicy {
  const item = sfString(policyName);
  let quota = limit.requestsPerUnit;
  let windowS = limit.unitUs / 1_000_000;
  if (limit.algorithm === 'token_bucket' && limit.requestsPerUnit > 0) {
    quota = limit.burst;
    // BigInt: burst × period in µs can pass 2^53; this runs at load only.
    const scaled = BigInt(limit.burst) * BigInt(limit.unitUs);
    const divisor = BigInt(limit.requestsPerUnit) * SECOND_US;
    windowS = Math.max(1, Number((scaled + divisor - 1n) / divisor));
  }
  return Object.freeze({ item, policy: `${item};q=${quota};w=${windowS}` });
}

/**
 * The status the single-limit headers describe: on a denial the denied limit
 * that asks the longest wait; otherwise the limited status with the fewest
 * tokens left. Shadow-mode limits are never shown: clients would read limits
 * that are not enforced. undefined when no enforced limit matched.
 */
export function mostRestrictiveStatus(decision: Decision): DescriptorStatus | undefined {
  let chosen: DescriptorStatus | undefined;
  for (const status of decision.statuses) {
    if (status.limit === null || status.shadow) continue;
    if (chosen === undefined) {
      chosen = status;
    } else if (decision.overallCode === 'OVER_LIMIT') {
      if (status.code === 'OVER_LIMIT' && (chosen.code !== 'OVER_LIMIT' || status.retryAfterS > chosen.retryAfterS)) {
        chosen = status;
      }
    } else if (status.limitRemaining < chosen.limitRemaining) {
      chosen = status;
    }
  }
  return chosen;
}

const resetSeconds = (status: DescriptorStatus): string => String(Math.ceil(status.durationUntilResetMs / 1000));

/** draft-10 fields: one list member per matched enforced limit, in request (then config) order. */
function draft10Headers<C>(decision: Decision, sink: HeaderSink<C>, context: C): void {
  let policies = '';
  let states = '';
  for (const status of decision.statuses) {
    if (status.limit === null || status.shadow) continue;
    for (const one of status.limitStatuses ?? [status]) {
      if (one.policy === undefined) continue;
      const separator = policies === '' ? '' : ', ';
      policies += `${separator}${one.policy.policy}`;
      states += `${separator}${one.policy.item};r=${one.limitRemaining};t=${resetSeconds(one)}`;
    }
  }
  if (policies === '') return;
  sink(context, 'ratelimit-policy', policies);
  sink(context, 'ratelimit', states);
}

/** Receives one response header (lower-case name); `context` is passed through, so a sink needs no closure. */
export type HeaderSink<C> = (context: C, name: string, value: string) => void;

/**
 * Writes a decision's response headers to `sink`, in `style` (see
 * rateLimitHeaders), without building a list: the hot path of every API.
 */
export function writeRateLimitHeaders<C>(decision: Decision, style: HeaderStyle, sink: HeaderSink<C>, context: C): void {
  const status = mostRestrictiveStatus(decision);
  if (status === undefined || status.limit === null) return;
  if (style === 'x' || style === 'both') {
    sink(context, 'x-ratelimit-limit', String(status.limit.burst));
    sink(context, 'x-ratelimit-remaining', String(status.limitRemaining));
    sink(context, 'x-ratelimit-reset', resetSeconds(status));
  } else if (style === 'draft03') {
    sink(context, 'ratelimit-limit', String(status.limit.requestsPerUnit));
    sink(context, 'ratelimit-remaining', String(status.limitRemaining));
    sink(context, 'ratelimit-reset', resetSeconds(status));
  }
  if (style === 'draft10' || style === 'both') draft10Headers(decision, sink, context);
  if (decision.overallCode === 'OVER_LIMIT') sink(context, 'retry-after', String(Math.max(1, status.retryAfterS)));
}

const pushHeader: HeaderSink<Array<[string, string]>> = (headers, name, value) => {
  headers.push([name, value]);
};

/**
 * Response headers (lower-case names) for a decision in `style`:
 * `x-ratelimit-limit` (the bucket's capacity, i.e. burst), `-remaining`,
 * `-reset` (whole seconds until full); `ratelimit-limit` (requests_per_unit,
 * as envoyproxy/ratelimit), `-remaining`, `-reset`; or the draft-10
 * `ratelimit-policy` and `ratelimit` lists. On a denial `retry-after`
 * (seconds, >= 1) in every style.
 */
export function rateLimitHeaders(decision: Decision, style: HeaderStyle = 'x'): Array<[string, string]> {
  const headers: Array<[string, string]> = [];
  writeRateLimitHeaders(decision, style, pushHeader, headers);
  return headers;
}
