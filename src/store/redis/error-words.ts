// What a client (a deny-mode answer, /readyz) is told about a Redis failure:
// our own words, not ioredis's ("Stream isn't writeable and enableOfflineQueue
// options is false" says nothing to an operator). Logs keep the original too.
import { RateLimitError, errorMessage } from '../../errors.js';
import { misconfigurationOf } from './misconfiguration.js';

/** Socket error codes (Node's) → what they mean for the store. */
const BY_CODE: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'redis unreachable (connection refused)',
  ENOTFOUND: 'redis unreachable (host not found)',
  EAI_AGAIN: 'redis unreachable (host not found)',
  EHOSTUNREACH: 'redis unreachable (no route to host)',
  ENETUNREACH: 'redis unreachable (no route to host)',
  ETIMEDOUT: 'redis timed out',
  ECONNRESET: 'redis connection closed',
  EPIPE: 'redis connection closed',
};

/** Redis's own error replies, by their first word → what they mean here (misconfigurations: misconfiguration.ts). */
const BY_REPLY: Readonly<Record<string, string>> = {
  LOADING: 'redis is loading its data set',
  READONLY: 'redis is a read-only replica',
  MASTERDOWN: 'redis replica lost its master',
  CLUSTERDOWN: 'redis cluster is down',
  BUSY: 'redis is busy running a script',
  OOM: 'redis is out of memory',
};

/** ioredis's messages (no code) → ours; matched as substrings. */
const BY_MESSAGE: readonly (readonly [RegExp, string])[] = [
  [/sentinel/i, 'redis sentinels unreachable or refusing us (check --redis-sentinel and its credentials)'],
  [/Stream isn't writeable|enableOfflineQueue/i, 'redis unreachable (not connected)'],
  [/Connection is closed/i, 'redis connection closed'],
  [/max retries per request/i, 'redis unreachable (not connected)'],
  [/refresh slots cache|None of startup nodes|ClusterAllFailed/i, 'redis cluster unreachable'],
  [/connect ETIMEDOUT|timed? ?out/i, 'redis timed out'],
];

/**
 * The words a client is shown for `error`, a failure of a Redis call or
 * connection. Our own errors (a missed deadline, an open circuit breaker) are
 * already in our words and are kept; a misconfiguration has its own
 * (misconfiguration.ts).
 */
export function redisErrorWords(error: unknown): string {
  if (error instanceof RateLimitError) return error.message;
  const misconfiguration = misconfigurationOf(error);
  if (misconfiguration !== undefined) return misconfiguration.words;
  const code = (error as { code?: unknown } | null | undefined)?.code;
  if (typeof code === 'string' && BY_CODE[code] !== undefined) return BY_CODE[code];
  const message = errorMessage(error);
  const reply = BY_REPLY[/^[A-Z]+/.exec(message)?.[0] ?? ''];
  if (reply !== undefined) return reply;
  for (const [pattern, words] of BY_MESSAGE) if (pattern.test(message)) return words;
  const redisCode = /^[A-Z]{2,}\b/.exec(message)?.[0];
  return redisCode === undefined ? 'redis call failed' : `redis answered with an error (${redisCode})`;
}
