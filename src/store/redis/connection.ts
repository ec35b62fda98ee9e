// How the Redis store connects: addresses, credentials, TLS, and the ioredis
// options that keep a decision from ever waiting on a reconnect.
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis } from 'ioredis';
import type { ClusterOptions, RedisOptions } from 'ioredis';
import { SettingsError } from '../../errors.js';
import { backoffDelayMs, type BackoffSteps } from './backoff.js';

const CONNECT_TIMEOUT_MS = 1_000;
/** Reconnects: 100 ms, 200 ms, 400 ms, … up to 2 s, each ±20 % (a fleet does not reconnect in lockstep after a failover). */
const RECONNECTS: BackoffSteps = { baseMs: 100, maxMs: 2_000 };
/** How often the cluster's slot map is refreshed even without MOVED replies. */
const SLOTS_REFRESH_INTERVAL_MS = 2_000;

/** Field names as in Settings, so the composition root can pass its settings as they are. */
export interface RedisConnectionOptions {
  /** Single node: `redis://[user:pass@]host:port[/db]`, or `rediss://` for TLS. */
  redis?: string | undefined;
  /** Redis Cluster seed nodes `host:port`. */
  redisCluster?: readonly string[] | undefined;
  /** Redis Sentinels `host:port` and the name of the master they watch. */
  redisSentinel?: readonly string[] | undefined;
  redisSentinelMaster?: string | undefined;
  /** ACL user and password of the data nodes (a Sentinel's master and replicas too); win over those in the URL. */
  redisUsername?: string | undefined;
  redisPassword?: string | undefined;
  /** ACL user and password of the Sentinels themselves; none when absent. */
  redisSentinelUsername?: string | undefined;
  redisSentinelPassword?: string | undefined;
  /** Use TLS (implied by `rediss://` and by any redisTls* option). */
  redisTls?: boolean | undefined;
  /** PEM file paths. */
  redisTlsCa?: string | undefined;
  redisTlsCert?: string | undefined;
  redisTlsKey?: string | undefined;
  redisTlsServername?: string | undefined;
  /** Skip certificate verification (tests only). */
  redisTlsInsecure?: boolean | undefined;
  /** Cluster only: announced "host:port" → the address to connect to instead (a proxy, a NAT). */
  natMap?: Readonly<Record<string, { host: string; port: number }>> | undefined;
}

export type RedisClient = Redis | Cluster;

export interface RedisConnection {
  client: RedisClient;
  /** 'single' for one master, found directly or through Sentinels. */
  mode: 'single' | 'cluster';
  /**
   * What the store calls the single node (its breaker, metrics, logs):
   * "host:port"; through Sentinels `sentinel:NAME`, the master role, which
   * keeps its name when a failover moves it (cluster: the seeds).
   */
  address: string;
  /** Ends what runs beside the client (through Sentinels: the +switch-master subscriptions); call it on close. */
  stopWatching(): void;
}

const NOT_WATCHING = (): void => {};

/**
 * Creates the client, not yet connected (lazyConnect). Throws SettingsError
 * for a bad address and the fs error when a TLS file cannot be read.
 */
export function createRedisConnection(options: RedisConnectionOptions): RedisConnection {
  const hasUrl = options.redis !== undefined && options.redis !== '';
  const seeds = parseSeeds(options.redisCluster ?? [], '--redis-cluster', 6379);
  const sentinels = parseSeeds(options.redisSentinel ?? [], '--redis-sentinel', 26379);
  if ([hasUrl, seeds.length > 0, sentinels.length > 0].filter(Boolean).length !== 1) {
    throw new SettingsError('the Redis store needs exactly one of --redis, --redis-cluster or --redis-sentinel');
  }
  if (hasUrl) {
    const { client, address } = createSingle(options.redis!, options);
    return { client, mode: 'single', address, stopWatching: NOT_WATCHING };
  }
  if (sentinels.length > 0) {
    const name = options.redisSentinelMaster ?? '';
    if (name === '') throw new SettingsError('--redis-sentinel needs --redis-sentinel-master: the name of the master the Sentinels watch');
    const { client, stopWatching } = createSentinelClient(sentinels, name, options);
    return { client, mode: 'single', address: `sentinel:${name}`, stopWatching };
  }
  return {
    client: createCluster(seeds, options), mode: 'cluster', address: seeds.map((s) => `${s.host}:${s.port}`).join(','), stopWatching: NOT_WATCHING,
  };
}

/** "host:port" that a single-node connection is connected to now (through Sentinels: the current master); else undefined. */
export function connectedServer(connection: RedisConnection): string | undefined {
  return connection.mode === 'single' ? serverOf(connection.client as Redis) : undefined;
}

function serverOf(client: Redis): string | undefined {
  const stream = client.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  return stream?.remoteAddress === undefined ? undefined : `${stream.remoteAddress}:${stream.remotePort}`;
}

function parseSeeds(list: readonly string[], flag: string, defaultPort: number): { host: string; port: number }[] {
  return list.map((s) => s.trim()).filter((s) => s !== '').map((seed) => {
    const at = seed.lastIndexOf(':');
    const host = at > 0 ? seed.slice(0, at).replace(/^\[(.*)\]$/, '$1') : seed;
    const port = at > 0 ? Number(seed.slice(at + 1)) : defaultPort;
    if (!Number.isInteger(port) || port <= 0 || port > 65535) {
      throw new SettingsError(`${flag}: invalid address "${seed}" (expected host:port)`);
    }
    return { host, port };
  });
}

function tlsOptions(options: RedisConnectionOptions, forced: boolean): ConnectionOptions | undefined {
  const wanted = forced || options.redisTls === true || options.redisTlsCa !== undefined || options.redisTlsCert !== undefined
    || options.redisTlsKey !== undefined || options.redisTlsServername !== undefined || options.redisTlsInsecure === true;
  if (!wanted) return undefined;
  const tls: ConnectionOptions = { rejectUnauthorized: options.redisTlsInsecure !== true };
  if (options.redisTlsCa !== undefined) tls.ca = readFileSync(options.redisTlsCa);
  if (options.redisTlsCert !== undefined) tls.cert = readFileSync(options.redisTlsCert);
  if (options.redisTlsKey !== undefined) tls.key = readFileSync(options.redisTlsKey);
  if (options.redisTlsServername !== undefined) tls.servername = options.redisTlsServername;
  return tls;
}

/** ioredis's retryStrategy: `times` counts the attempts since the connection was last ready (1 = the first). */
function reconnectDelayMs(times: number): number {
  return backoffDelayMs(times, RECONNECTS);
}

/** Options shared by single-node connections and cluster node connections. */
function connectionOptions(): RedisOptions {
  return {
    connectTimeout: CONNECT_TIMEOUT_MS,
    // A decision whose caller already gave up must not be replayed after a
    // reconnect: it would take tokens nobody used (under-admission).
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // Measured 20-40% slower than our own coalescing (docs/redis.md); see batcher.ts.
    enableAutoPipelining: false,
    // Nothing waits through a reconnect: a call on a connection that is not
    // ready fails at once and the failure policy decides.
    enableOfflineQueue: false,
    keepAlive: 10_000,
    noDelay: true,
    connectionName: 'openclaw-ratelimit',
  };
}

function createSingle(text: string, options: RedisConnectionOptions): { client: Redis; address: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SettingsError(`--redis: invalid Redis URL "${text}"`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new SettingsError(`--redis: invalid Redis URL "${text}": the scheme must be redis:// or rediss://`);
  }
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new SettingsError(`--redis: invalid Redis URL "${text}": bad db number`);
  const tls = tlsOptions(options, url.protocol === 'rediss:');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const port = url.port === '' ? 6379 : Number(url.port);
  const config: RedisOptions = {
    ...connectionOptions(),
    host,
    port,
    db,
    lazyConnect: true,
    enableReadyCheck: true,
    retryStrategy: reconnectDelayMs,
  };
  const username = options.redisUsername ?? (url.username !== '' ? decodeURIComponent(url.username) : undefined);
  const password = options.redisPassword ?? (url.password !== '' ? decodeURIComponent(url.password) : undefined);
  if (username !== undefined) config.username = username;
  if (password !== undefined) config.password = password;
  if (tls !== undefined) config.tls = tls;
  return { client: new Redis(config), address: `${host}:${port}` };
}

/**
 * The master that the Sentinels name, followed across failovers (ioredis's
 * Sentinel support): every (re)connect asks the Sentinels for the master's
 * address and checks the server's role; a Sentinel's `+switch-master`
 * disconnects at once (watchSwitchMaster), so no decision goes to a demoted
 * master that has not yet been told to replicate. Until the new master
 * serves, calls fail at once and the failure policy decides, as when a single
 * Redis is down. --redis-username/--redis-password authenticate to the master
 * and replicas; the Sentinels get only their own credentials (docs/redis.md,
 * "Redis Sentinel"). TLS, when asked for, applies to both. Problems with a
 * Sentinel are emitted as the client's 'sentinelError' event.
 */
function createSentinelClient(sentinels: { host: string; port: number }[], name: string, options: RedisConnectionOptions): {
  client: Redis;
  stopWatching: () => void;
} {
  const tls = tlsOptions(options, false);
  const config: RedisOptions = {
    ...connectionOptions(),
    sentinels,
    name,
    role: 'master',
    lazyConnect: true,
    enableReadyCheck: true,
    retryStrategy: reconnectDelayMs,
    sentinelRetryStrategy: reconnectDelayMs,
    sentinelCommandTimeout: CONNECT_TIMEOUT_MS,
    // A master demoted under us answers writes with READONLY: drop the connection so the next one asks the Sentinels.
    reconnectOnError: (error: Error) => error.message.startsWith('READONLY'),
  };
  if (options.redisUsername !== undefined) config.username = options.redisUsername;
  if (options.redisPassword !== undefined) config.password = options.redisPassword;
  if (options.redisSentinelUsername !== undefined) config.sentinelUsername = options.redisSentinelUsername;
  if (options.redisSentinelPassword !== undefined) config.sentinelPassword = options.redisSentinelPassword;
  if (tls !== undefined) {
    config.tls = tls;
    config.sentinelTLS = tls;
    config.enableTLSForSentinelMode = true;
  }
  const client = new Redis(config);
  const sentinelOptions: RedisOptions = { connectTimeout: CONNECT_TIMEOUT_MS, keepAlive: 10_000, noDelay: true, connectionName: 'openclaw-ratelimit' };
  if (config.sentinelUsername !== undefined) sentinelOptions.username = config.sentinelUsername;
  if (config.sentinelPassword !== undefined) sentinelOptions.password = config.sentinelPassword;
  if (tls !== undefined) sentinelOptions.tls = tls;
  return { client, stopWatching: watchSwitchMaster(client, sentinels, name, sentinelOptions) };
}

/**
 * Subscribes to every Sentinel's `+switch-master` ("NAME old-ip old-port
 * new-ip new-port") from the client's first connect until the returned stop
 * is called; when the
 * master named NAME moved away from the server the client is connected to,
 * the client reconnects, which asks the Sentinels again. (ioredis's
 * failoverDetector does the same, but its Sentinel connections have no error
 * listener: a Sentinel that is down would print to stderr, outside our logs.)
 */
function watchSwitchMaster(client: Redis, sentinels: { host: string; port: number }[], name: string, options: RedisOptions): () => void {
  let subscribers: Redis[] = [];
  let stopped = false;
  client.once('connect', () => {
    if (stopped) return;
    subscribers = sentinels.map((sentinel) => {
      const subscriber = new Redis({ ...options, ...sentinel, enableReadyCheck: false, maxRetriesPerRequest: null, retryStrategy: reconnectDelayMs });
      subscriber.on('error', (error: unknown) => client.emit('sentinelError', error));
      subscriber.on('message', (_channel: string, message: string) => {
        const [master, , , host, port] = message.split(' ');
        if (master === name && client.status === 'ready' && serverOf(client) !== `${host}:${port}`) client.disconnect(true);
      });
      subscriber.subscribe('+switch-master').catch((error: unknown) => client.emit('sentinelError', error));
      return subscriber;
    });
  });
  return () => {
    stopped = true;
    for (const subscriber of subscribers) subscriber.disconnect();
  };
}

function createCluster(seeds: { host: string; port: number }[], options: RedisConnectionOptions): Cluster {
  const redisOptions: NonNullable<ClusterOptions['redisOptions']> = connectionOptions();
  if (options.redisUsername !== undefined) redisOptions.username = options.redisUsername;
  if (options.redisPassword !== undefined) redisOptions.password = options.redisPassword;
  const tls = tlsOptions(options, false);
  if (tls !== undefined) redisOptions.tls = tls;
  return new Cluster(seeds, {
    redisOptions,
    ...(options.natMap === undefined ? {} : { natMap: { ...options.natMap } }),
    scaleReads: 'master',
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    // MOVED/ASK are followed at once (a resharding); bounded, and the call deadline cuts them anyway.
    maxRedirections: 3,
    retryDelayOnMoved: 0,
    retryDelayOnFailover: 50,
    retryDelayOnClusterDown: 50,
    retryDelayOnTryAgain: 50,
    slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
    slotsRefreshInterval: SLOTS_REFRESH_INTERVAL_MS,
    clusterRetryStrategy: reconnectDelayMs,
  });
}
