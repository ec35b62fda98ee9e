// The command line: serve, check-config, inspect, reset, version, help
// (src/main.ts, the package's executable, runs it).
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { runAdminCommand, type AdminCommand } from './admin-command.js';
import { startApp, type RunningApp } from './app.js';
import { checkConfig } from '../config/load.js';
import { ConfigError, TlsConfigError, errorMessage } from '../errors.js';
import { adminUsage, checkConfigUsage, usage } from './help.js';
import { FLAGS, SettingsError, resolveSettings, type Settings } from './settings.js';
import { createLogger } from '../telemetry/logger.js';
import { isWorker, runPrimary } from './workers.js';

/** Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config. */
const EXIT_USAGE = 2;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The `serve` flags as node:util parseArgs options, plus --help. */
const SERVE_OPTIONS: ParseArgsConfig['options'] = {
  help: { type: 'boolean', short: 'h' },
  ...Object.fromEntries(Object.entries(FLAGS).map(([name, spec]) => [name, { type: spec.type }])),
};

const CHECK_CONFIG_OPTIONS: ParseArgsConfig['options'] = {
  help: { type: 'boolean', short: 'h' },
  'merge-domains': { type: 'boolean' },
};

/** `inspect` and `reset` read the serve flags (the same store, the same RL_* variables) and --domain. */
const ADMIN_OPTIONS: ParseArgsConfig['options'] = { ...SERVE_OPTIONS, domain: { type: 'string' } };

/** A command line that parseArgs refused, or a flag value we refuse: exit 2 with the reason and which --help to read. */
class UsageError extends SettingsError {
  readonly helpCommand: string;
  constructor(message: string, helpCommand: string) {
    super(message);
    this.helpCommand = helpCommand;
  }
}

/** Throws UsageError naming `helpCommand` when parseArgs refuses the command line. */
function parse(args: string[], options: ParseArgsConfig['options'], positionals: boolean, helpCommand: string):
  { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const { values, positionals: rest } = parseArgs({ args, options, strict: true, allowPositionals: positionals });
    return { values: values as Record<string, string | boolean | undefined>, positionals: rest };
  } catch (error: unknown) {
    const code = (error as { code?: string }).code;
    if (code?.startsWith('ERR_PARSE_ARGS')) throw new UsageError(parseArgsWords(code, errorMessage(error), helpCommand), helpCommand);
    throw error;
  }
}

/** node:util parseArgs's refusal in our words (its own adds advice about `--` that misleads here). */
function parseArgsWords(code: string, message: string, helpCommand: string): string {
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? '';
  // "--http-port <value>", "-h, --help": the long name.
  const names = quoted.split(/[ ,]+/);
  const flag = names.find((name) => name.startsWith('--')) ?? names[0]!;
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      if (flag === '--config' && helpCommand.includes('check-config')) {
        return 'check-config takes the config files or directories themselves, without --config: check-config PATH [PATH ...]';
      }
      return `unknown flag ${flag}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return message.includes('argument missing') ? `${flag} needs a value` : `${flag} takes no value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${quoted}": this command takes flags only`;
    default:
      return message;
  }
}

/**
 * Validates each path (file or directory); exit 0 when all are valid, else 2
 * with every problem of every file. `--merge-domains` (or RL_MERGE_DOMAINS)
 * checks as `serve --merge-domains` loads. Every store decides every
 * algorithm, so what is valid does not depend on the store.
 */
function runCheckConfig(args: string[]): number {
  const help = 'openclaw-ratelimit check-config --help';
  const { values, positionals: paths } = parse(args, CHECK_CONFIG_OPTIONS, true, help);
  if (values.help === true) {
    process.stdout.write(`${checkConfigUsage()}\n`);
    return 0;
  }
  if (paths.length === 0) throw new UsageError('check-config: give one or more config files or directories', help);
  const mergeDomains = values['merge-domains'] === true || /^(true|1|yes|on)$/i.test(process.env['RL_MERGE_DOMAINS'] ?? '');
  const options = { mergeDomains };
  let code = 0;
  for (const path of paths) {
    try {
      const { domains } = checkConfig(path, options);
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
  const { values } = parse(args, SERVE_OPTIONS, false, 'openclaw-ratelimit serve --help');
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

/** `inspect` / `reset`: exit 0, 1 when the store cannot be reached, 2 on bad input (docs/operations.md). */
async function admin(command: AdminCommand, args: string[]): Promise<number> {
  const help = `openclaw-ratelimit ${command} --help`;
  const { values, positionals } = parse(args, ADMIN_OPTIONS, true, help);
  if (values.help === true) {
    process.stdout.write(`${adminUsage()}\n`);
    return 0;
  }
  const { domain, ...flags } = values;
  let settings: Settings;
  try {
    settings = resolveSettings(flags as Record<string, string | boolean>, process.env);
  } catch (error: unknown) {
    if (error instanceof SettingsError) throw new UsageError(`${command}: ${error.message}`, help);
    throw error;
  }
  return runAdminCommand(command, settings, typeof domain === 'string' ? domain : undefined, positionals);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'check-config':
      return runCheckConfig(rest);
    case 'inspect':
    case 'reset':
      return admin(command, rest);
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
      process.stderr.write(`unknown command "${command}": the commands are serve, check-config, inspect, reset and version\n`
        + 'run "openclaw-ratelimit help" for what each does\n');
      return EXIT_USAGE;
  }
}

/** Runs the command `argv` names and exits the process with its code (0 ok, 1 runtime failure, 2 bad usage or config). */
export function runCommandLine(argv: string[]): void {
  main(argv).then(
    (code) => {
      // Let pino flush, then exit (open handles of a stopped server must not keep us alive).
      setImmediate(() => process.exit(code));
    },
    (error: unknown) => {
      process.stderr.write(`${errorMessage(error)}\n`);
      const helpCommand = error instanceof UsageError ? error.helpCommand
        : error instanceof SettingsError ? 'openclaw-ratelimit serve --help' : undefined;
      if (helpCommand !== undefined) process.stderr.write(`run "${helpCommand}" for the flags\n`);
      process.exit(helpCommand === undefined ? 1 : EXIT_USAGE);
    },
  );
}
