#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startApp, type RunningApp } from './app.js';
import { loadConfig } from './config/load.js';
import { ConfigError, TlsConfigError, errorMessage } from './errors.js';
import { FLAGS, SettingsError, resolveSettings, usage } from './settings.js';
import { STORE_CAPABILITIES } from './store/capabilities.js';
import type { Store } from './core/store.js';
import { createLogger } from './telemetry/logger.js';
import { isWorker, runPrimary } from './workers.js';

/** Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config. */
const EXIT_USAGE = 2;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * Validates each path (file or directory); exit 0 when all are valid, else 2
 * with every problem of every file. `--merge-domains` (or RL_MERGE_DOMAINS)
 * checks as `serve --merge-domains` loads; `--store` checks against what that
 * store decides (today every store decides every algorithm).
 */
function checkConfig(args: string[]): number {
  let code = 0;
  const usageError = (message: string): void => {
    process.stderr.write(`check-config: ${message}\n`);
    code = EXIT_USAGE;
  };
  const paths: string[] = [];
  let mergeDomains = /^(true|1|yes|on)$/i.test(process.env['RL_MERGE_DOMAINS'] ?? '');
  let store: Store['kind'] | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${usage().split('\n').filter((line) => /check-config|validate/.test(line)).join('\n')}\n`);
      return 0;
    } else if (arg === '--merge-domains') {
      mergeDomains = true;
    } else if (arg === '--store' || arg.startsWith('--store=')) {
      const value = arg === '--store' ? args[++i] : arg.slice('--store='.length);
      if (value === 'memory' || value === 'redis') store = value;
      else usageError(`--store: expected memory | redis, got "${value ?? ''}"`);
    } else if (arg.startsWith('-')) {
      usageError(`unknown option "${arg}" (options: --merge-domains, --store memory|redis; then paths)`);
    } else {
      paths.push(arg);
    }
  }
  if (paths.length === 0) {
    usageError('give one or more config files or directories');
    return code;
  }
  const options = { mergeDomains, ...(store === undefined ? {} : { store: STORE_CAPABILITIES[store] }) };
  for (const path of paths) {
    try {
      const config = loadConfig(path, options);
      const domains = [...config.domains.keys()];
      process.stdout.write(`${path}: OK (${domains.length} domain${domains.length === 1 ? '' : 's'}: ${domains.join(', ')})\n`);
    } catch (error: unknown) {
      process.stderr.write(`${errorMessage(error)}\n`);
      code = error instanceof ConfigError ? EXIT_USAGE : (code || 1);
    }
  }
  return code;
}

async function serve(args: string[]): Promise<number> {
  // Defaults are applied by resolveSettings, after the RL_* env vars: not here.
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, spec] of Object.entries(FLAGS)) options[name] = { type: spec.type };
  const { values } = parseArgs({ args, options, strict: true, allowPositionals: false });
  if (values.help === true) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const settings = resolveSettings(values as Record<string, string | boolean>, process.env);
  const logger = createLogger(settings.logLevel);
  if (settings.workers > 1 && !isWorker()) {
    try {
      return await runPrimary(settings, settings.workers, logger);
    } catch (error: unknown) {
      process.stderr.write(`${errorMessage(error)}\n`);
      return error instanceof ConfigError || error instanceof TlsConfigError ? EXIT_USAGE : 1;
    }
  }
  let app: RunningApp;
  try {
    app = await startApp(settings, logger);
  } catch (error: unknown) {
    if (error instanceof ConfigError || error instanceof TlsConfigError) {
      logger.fatal({ error: error.message }, error instanceof TlsConfigError ? 'invalid TLS files' : 'invalid config');
      process.stderr.write(`${error.message}\n`);
      return EXIT_USAGE;
    }
    logger.fatal({ error: errorMessage(error) }, 'cannot start');
    return 1;
  }
  process.on('SIGHUP', () => {
    logger.info({}, 'SIGHUP: reloading config');
    app.reloadConfig();
  });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'draining: no new connections, finishing in-flight decisions');
      const timer = setTimeout(() => {
        logger.error({ timeoutMs: settings.shutdownTimeoutMs }, 'drain timed out; exiting');
        resolve(1);
      }, settings.shutdownTimeoutMs);
      timer.unref();
      app.stop().then(
        () => {
          clearTimeout(timer);
          logger.info({}, 'stopped');
          resolve(0);
        },
        (error: unknown) => {
          clearTimeout(timer);
          logger.error({ error: errorMessage(error) }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    // A --workers worker whose primary is gone (even SIGKILLed) drains too: no orphans holding the ports.
    if (isWorker()) process.once('disconnect', () => stop('primary gone'));
  });
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'check-config':
      return checkConfig(rest);
    case '--version':
    case 'version':
      process.stdout.write(`${version()}\n`);
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(`${usage()}\n`);
      return command === undefined ? EXIT_USAGE : 0;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${usage()}\n`);
      return EXIT_USAGE;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    // Let pino flush, then exit (open handles of a stopped server must not keep us alive).
    setImmediate(() => process.exit(code));
  },
  (error: unknown) => {
    const usageError = error instanceof SettingsError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`${errorMessage(error)}\n`);
    if (usageError) process.stderr.write('run "openclaw-ratelimit serve --help" for the flags\n');
    process.exit(usageError ? EXIT_USAGE : 1);
  },
);
