// Rate-limit headers (SPEC §5, §10 --header-style) in the shape Envoy's messages carry them.
// The choice of status and the values live in core/response-headers.ts, shared with HTTP.
import { rateLimitHeaders as coreRateLimitHeaders, type HeaderStyle } from '../../core/response-headers.js';
import type { Decision } from '../../core/types.js';
import type { HeaderValue } from './messages.js';

/** Lower-case `{key, value}` list in `style`; empty when no limit matched. */
export function rateLimitHeaders(decision: Decision, style: HeaderStyle = 'x'): HeaderValue[] {
  return coreRateLimitHeaders(decision, style).map(([key, value]) => ({ key, value }));
}
