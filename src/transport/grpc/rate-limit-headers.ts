// X-RateLimit-* and Retry-After for a decision (SPEC §5 "Response headers").
import type { Decision, DescriptorStatus } from '../../core/types.js';
import type { HeaderValue } from './messages.js';

/**
 * The status the headers describe: a (non-shadow) OVER_LIMIT status with the
 * longest Retry-After when the request was denied, else the lowest
 * limit_remaining among statuses with a limit (first wins a tie), else none.
 */
export function mostRestrictiveStatus(decision: Decision): DescriptorStatus | undefined {
  let chosen: DescriptorStatus | undefined;
  if (decision.overallCode === 'OVER_LIMIT') {
    for (const s of decision.statuses) {
      if (s.code === 'OVER_LIMIT' && s.limit !== null && (chosen === undefined || s.retryAfterS > chosen.retryAfterS)) {
        chosen = s;
      }
    }
    if (chosen !== undefined) return chosen;
  }
  for (const s of decision.statuses) {
    if (s.limit !== null && (chosen === undefined || s.limitRemaining < chosen.limitRemaining)) chosen = s;
  }
  return chosen;
}

/**
 * Lower-case header list: `x-ratelimit-limit` (bucket capacity, the most a
 * client can send at once; equals requests_per_unit unless `burst` is set),
 * `x-ratelimit-remaining`, `x-ratelimit-reset` (whole seconds until full,
 * rounded up) and, when denied, `retry-after` (>= 1). Empty when no limit matched.
 */
export function rateLimitHeaders(decision: Decision): HeaderValue[] {
  const status = mostRestrictiveStatus(decision);
  if (status === undefined || status.limit === null) return [];
  const headers: HeaderValue[] = [
    { key: 'x-ratelimit-limit', value: String(status.limit.burst) },
    { key: 'x-ratelimit-remaining', value: String(Math.max(0, Math.floor(status.limitRemaining))) },
    { key: 'x-ratelimit-reset', value: String(Math.max(0, Math.ceil(status.durationUntilResetMs / 1000))) },
  ];
  if (decision.overallCode === 'OVER_LIMIT') {
    headers.push({ key: 'retry-after', value: String(Math.max(1, Math.ceil(status.retryAfterS))) });
  }
  return headers;
}
