// `openclaw-ratelimit inspect|reset --config PATH [store flags] [--domain D]
// key=value[,key=value...] ...`: the admin API from a shell, against the
// store the serve command's flags (and RL_* variables) name. Prints the
// admin API's JSON (docs/operations.md, "Inspect and reset a bucket").
import { BucketAdminService } from '../service/admin-service.js';
import { sha256Digest } from './app.js';
import { loadConfig } from '../config/load.js';
import type { CompiledConfig } from '../core/config-model.js';
import { Limiter } from '../core/limiter.js';
import { DEFAULT_REQUEST_BOUNDS } from '../core/request-bounds.js';
import type { Descriptor, Entry } from '../core/types.js';
import { LimiterDecisionService } from '../service/decision-service.js';
import { ConfigError, InvalidRequestError, RateLimitError, StoreUnavailableError, errorMessage } from '../errors.js';
import type { Settings } from './settings.js';
import { MemoryStore } from '../store/memory-store.js';
import { createRedisStore, type RedisStore } from '../store/redis/redis-store.js';
import { Metrics } from '../telemetry/metrics.js';
import { inspectionJson, resetJson } from '../transport/http/admin-server.js';

/** Exit codes: 0 done, 1 the store could not be reached or did not answer, 2 bad input (flags, config, descriptors). */
const EXIT_STORE = 1;
const EXIT_USAGE = 2;
/** The shortest wait for Redis to connect, whatever --redis-connect-wait-ms says. */
const MIN_CONNECT_WAIT_MS = 1_000;

export type AdminCommand = 'inspect' | 'reset';

/**
 * `key=value[,key=value...]` → a descriptor's entries. A value may hold `=`
 * (the first one splits); it cannot hold `,`. Throws InvalidRequestError
 * naming the argument.
 */
function parseDescriptorArgument(text: string, index: number): Entry[] {
  const field = `descriptor argument ${index + 1} ("${text}")`;
  if (text === '') throw new InvalidRequestError(field, 'empty: expected key=value[,key=value...]');
  return text.split(',').map((pair) => {
    const at = pair.indexOf('=');
    if (at <= 0) throw new InvalidRequestError(field, `"${pair}" is not key=value`);
    return { key: pair.slice(0, at), value: pair.slice(at + 1) };
  });
}

/**
 * Runs `inspect` or `reset`, writing the JSON answer to stdout and problems
 * to stderr; resolves with the exit code. Never hangs: connecting waits at
 * most --redis-connect-wait-ms (at least 1 s), each Redis call has a deadline.
 */
export async function runAdminCommand(command: AdminCommand, settings: Settings, domain: string | undefined, args: readonly string[]): Promise<number> {
  let config: CompiledConfig;
  let descriptors: Descriptor[];
  try {
    config = loadConfig(settings.config, { mergeDomains: settings.mergeDomains });
    if (args.length === 0) throw new InvalidRequestError('descriptors', 'give one key=value[,key=value...] argument per descriptor');
    descriptors = args.map((arg, i) => ({ entries: parseDescriptorArgument(arg, i) }));
  } catch (error: unknown) {
    if (!(error instanceof ConfigError || error instanceof InvalidRequestError)) throw error;
    process.stderr.write(`${command}: ${errorMessage(error)}\n`);
    return EXIT_USAGE;
  }
  const store = createStore(settings);
  try {
    if (store.kind === 'memory') {
      process.stderr.write(`${command}: note: the memory store lives inside a server process; this command sees only its own, empty, `
        + 'buckets. A running server\'s are on its admin listener (POST /v1/inspect, /v1/reset on --admin-port).\n');
    } else if (!(await store.waitUntilConnected(Math.max(MIN_CONNECT_WAIT_MS, settings.redisConnectWaitMs)))) {
      process.stderr.write(`${command}: store unreachable: ${store.health().detail}\n`);
      return EXIT_STORE;
    }
    const limiter = new Limiter({ store, shadow: settings.shadow, keyPrefix: settings.redisKeyPrefix, digest: sha256Digest });
    const decisions = new LimiterDecisionService({
      config: () => config, limiter, store, metrics: new Metrics({ processMetrics: false }),
      bounds: { ...DEFAULT_REQUEST_BOUNDS, maxDescriptors: settings.maxDescriptors, maxEntries: settings.maxEntries,
        maxKeyOrValueBytes: settings.maxValueBytes, maxBodyBytes: settings.maxBodyBytes },
      defaultDomain: settings.defaultDomain, canDecideWithoutStore: true, digest: sha256Digest,
    });
    const admin = new BucketAdminService({ config: () => config, limiter, store, decisions, digest: sha256Digest });
    const request = { domain, descriptors };
    const json = command === 'inspect' ? inspectionJson(await admin.inspect(request)) : resetJson(await admin.reset(request));
    process.stdout.write(`${json}\n`);
    if (command === 'reset' && store.kind === 'redis') {
      process.stderr.write('reset: note: running sidecars that were denying these keys keep denying from their local copy for up to the '
        + 'Retry-After they announced; a reset through each sidecar\'s admin listener (POST /v1/reset) ends that at once (docs/operations.md).\n');
    }
    return 0;
  } catch (error: unknown) {
    if (!(error instanceof RateLimitError)) throw error;
    process.stderr.write(`${command}: ${error.message}\n`);
    return error instanceof StoreUnavailableError ? EXIT_STORE : EXIT_USAGE;
  } finally {
    await store.close();
  }
}

/** The store serve would use, as a process that decides nothing: no mirror, no heartbeat, no logs (problems are the exit code's). */
function createStore(settings: Settings): MemoryStore | RedisStore {
  if (settings.store === 'memory') return new MemoryStore({ maxKeys: settings.memoryMaxKeys, sweep: false });
  return createRedisStore({
    ...settings,
    local: new MemoryStore({ maxKeys: 1, sweep: false }),
    mirror: false,
    sidecar: false, localLeases: false,
  });
}
