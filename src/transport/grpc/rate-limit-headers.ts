// X-RateLimit-* and Retry-After (SPEC §5) in the shape Envoy's messages carry them.
// The choice of status and the values live in core/response-headers.ts, shared with HTTP.
import { rateLimitHeaders as coreRateLimitHeaders } from '../../core/response-headers.js';
import type { Decision } from '../../core/types.js';
import type { HeaderValue } from './messages.js';

/** Lower-case `{key, value}` list; empty when no limit matched. */
export function rateLimitHeaders(decision: Decision): HeaderValue[] {
  return coreRateLimitHeaders(decision).map(([key, value]) => ({ key, value }));
}
