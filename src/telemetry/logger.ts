import { pino, type Logger } from 'pino';

export type { Logger };
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** One JSON line per event on stdout; nothing per request at the default level. */
export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ level, base: { service: 'openclaw-ratelimit' } });
}
