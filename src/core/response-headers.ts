import type { Decision, DescriptorStatus } from './types.js';

/**
 * The status the X-RateLimit-* headers describe: on a denial the denied limit
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

/**
 * Response headers (lower-case names) for a decision: `x-ratelimit-limit` (the
 * bucket's capacity, i.e. burst), `x-ratelimit-remaining`, `x-ratelimit-reset`
 * (whole seconds until full) and, on a denial, `retry-after` (seconds, >= 1).
 */
export function rateLimitHeaders(decision: Decision): Array<[string, string]> {
  const status = mostRestrictiveStatus(decision);
  if (status === undefined || status.limit === null) return [];
  const headers: Array<[string, string]> = [
    ['x-ratelimit-limit', String(status.limit.burst)],
    ['x-ratelimit-remaining', String(status.limitRemaining)],
    ['x-ratelimit-reset', String(Math.ceil(status.durationUntilResetMs / 1000))],
  ];
  if (decision.overallCode === 'OVER_LIMIT') headers.push(['retry-after', String(Math.max(1, status.retryAfterS))]);
  return headers;
}
