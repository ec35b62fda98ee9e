import { pino, type Logger } from 'pino';

export type { Logger };
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

let stdoutGuarded = false;

/**
 * One JSON line per event on stdout; nothing per request at the default level.
 *
 * Written through process.stdout (synchronous for files and pipes on Linux)
 * rather than pino's own fd stream: that stream's exit-time flush retries a
 * closed pipe forever (`serve | head -1`, a log shipper that died), so SIGTERM
 * could never exit. A closed stdout only loses log lines.
 */
export function createLogger(level: LogLevel = 'info'): Logger {
  if (!stdoutGuarded) {
    stdoutGuarded = true;
    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') process.stderr.write(`stdout: ${error.message}\n`);
    });
  }
  return pino({ level, base: { service: 'openclaw-ratelimit' } }, process.stdout);
}
