import { LOG_LEVELS, type LogLevel } from './telemetry/logger.js';
import { ClientAddressResolver } from './transport/http/client-address.js';
import type { StoreFailurePolicy } from './core/limiter.js';

/** Every `serve` flag; each also reads RL_<FLAG_IN_UPPER_SNAKE_CASE>. Flags win over env. */
export const FLAGS = {
  config: { type: 'string', help: 'rules: a YAML file or a directory of *.yaml/*.yml (one domain per file)' },
  'http-port': { type: 'string', default: '8080', help: 'HTTP port (/v1/check, /v1/auth*, /metrics, ...)' },
  'grpc-port': { type: 'string', default: '8081', help: 'gRPC port (ext_authz, RateLimitService, health)' },
  host: { type: 'string', default: '0.0.0.0', help: 'address to listen on' },
  store: { type: 'string', help: 'memory | redis (default: redis when a Redis address is given, else memory)' },
  redis: { type: 'string', help: 'single Redis: redis://[user:pass@]host:port[/db], rediss:// for TLS' },
  'redis-cluster': { type: 'string', help: 'Redis Cluster seed nodes: host:port,host:port,...' },
  'redis-username': { type: 'string', help: 'Redis ACL user (cluster, or to override the URL)' },
  'redis-password': { type: 'string', help: 'Redis password (cluster, or to override the URL)' },
  'redis-tls': { type: 'boolean', help: 'use TLS to Redis (implied by rediss://)' },
  'redis-tls-ca': { type: 'string', help: 'PEM file of the CA that signed the Redis certificate' },
  'redis-tls-cert': { type: 'string', help: 'PEM client certificate for Redis mTLS' },
  'redis-tls-key': { type: 'string', help: 'PEM client key for Redis mTLS' },
  'redis-tls-servername': { type: 'string', help: 'TLS server name (SNI) to expect' },
  'redis-tls-insecure': { type: 'boolean', help: 'do not verify the Redis certificate (testing only)' },
  'redis-timeout-ms': { type: 'string', default: '50', help: 'deadline of one Redis call' },
  'redis-connect-wait-ms': { type: 'string', default: '3000', help: 'at start, wait this long for Redis before listening (then start anyway)' },
  'redis-key-prefix': { type: 'string', default: 'rl:', help: 'prefix of every Redis key' },
  'on-store-failure': { type: 'string', default: 'local', help: 'local | allow | deny when Redis fails' },
  'fallback-divisor': { type: 'string', default: '1', help: 'divide limits by N in local fallback (N = replicas)' },
  'trusted-proxies': { type: 'string', default: '127.0.0.0/8,::1', help: 'CIDRs whose X-Real-IP/X-Forwarded-For are believed' },
  'default-domain': { type: 'string', help: 'domain for requests that name none' },
  shadow: { type: 'boolean', help: 'global shadow mode: evaluate and count, never deny' },
  'response-headers': { type: 'boolean', help: 'add x-ratelimit-* headers to RateLimitService responses' },
  'memory-max-keys': { type: 'string', default: '1000000', help: 'most buckets kept in memory (LRU beyond)' },
  'local-cache-size': { type: 'string', default: '100000', help: 'Redis store: keys known to be empty, denied without a Redis call; 0 = off' },
  'max-descriptors': { type: 'string', default: '64', help: 'most descriptors in one request' },
  'max-entries': { type: 'string', default: '16', help: 'most entries in one descriptor' },
  'max-value-bytes': { type: 'string', default: '4096', help: 'longest descriptor key or value, bytes' },
  'max-body-bytes': { type: 'string', default: '65536', help: 'largest HTTP request body, bytes' },
  workers: { type: 'string', default: '1', help: 'worker processes sharing the ports (node cluster); Redis store only' },
  'shutdown-timeout-ms': { type: 'string', default: '10000', help: 'longest wait for in-flight requests on SIGTERM' },
  'log-level': { type: 'string', default: 'info', help: LOG_LEVELS.join(' | ') },
  'http-request-timeout-ms': { type: 'string', default: '10000', help: 'HTTP: longest time to receive one whole request, headers and body (then 408, connection closed)' },
  'http-keep-alive-timeout-ms': { type: 'string', default: '75000', help: 'HTTP: an idle keep-alive connection is closed after this; keep it above the proxies\' idle timeout (NGINX 60 s)' },
  'http-max-connections': { type: 'string', default: '8192', help: 'HTTP: most open connections per process; beyond, new ones are closed at once' },
  'tls-cert': { type: 'string', help: 'PEM certificate (chain) of both listeners: HTTPS and gRPC over TLS; re-read when it changes' },
  'tls-key': { type: 'string', help: 'PEM private key of --tls-cert' },
  'tls-client-ca': { type: 'string', help: 'mTLS: PEM CA(s); clients must present a certificate it signed' },
} as const satisfies Record<string, { type: 'string' | 'boolean'; default?: string; help: string }>;

export type FlagName = keyof typeof FLAGS;

export function envName(flag: string): string {
  return `RL_${flag.toUpperCase().replace(/-/g, '_')}`;
}

export class SettingsError extends Error {}

export interface Settings {
  config: string;
  httpPort: number;
  grpcPort: number;
  host: string;
  store: 'memory' | 'redis';
  redis: string | undefined;
  redisCluster: string[] | undefined;
  redisUsername: string | undefined;
  redisPassword: string | undefined;
  redisTls: boolean;
  redisTlsCa: string | undefined;
  redisTlsCert: string | undefined;
  redisTlsKey: string | undefined;
  redisTlsServername: string | undefined;
  redisTlsInsecure: boolean;
  redisTimeoutMs: number;
  redisKeyPrefix: string;
  redisConnectWaitMs: number;
  onStoreFailure: StoreFailurePolicy;
  fallbackDivisor: number;
  trustedProxies: string[];
  defaultDomain: string | undefined;
  shadow: boolean;
  responseHeaders: boolean;
  memoryMaxKeys: number;
  localCacheSize: number;
  maxDescriptors: number;
  maxEntries: number;
  maxValueBytes: number;
  maxBodyBytes: number;
  shutdownTimeoutMs: number;
  workers: number;
  logLevel: LogLevel;
  httpRequestTimeoutMs: number;
  httpKeepAliveTimeoutMs: number;
  httpMaxConnections: number;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  tlsClientCa: string | undefined;
}

type Raw = Partial<Record<FlagName, string | boolean>>;

/** Merges parsed flags over RL_* env vars over defaults, and checks every value. Throws SettingsError. */
export function resolveSettings(flags: Raw, env: NodeJS.ProcessEnv): Settings {
  const get = (name: FlagName): string | undefined => {
    const flag = flags[name];
    if (flag !== undefined) return String(flag);
    const fromEnv = env[envName(name)];
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
    const spec = FLAGS[name] as { default?: string };
    return spec.default;
  };
  const bool = (name: FlagName): boolean => {
    const value = get(name);
    if (value === undefined) return false;
    if (/^(true|1|yes|on)$/i.test(value)) return true;
    if (/^(false|0|no|off)$/i.test(value)) return false;
    throw new SettingsError(`--${name} (${envName(name)}): expected true or false, got "${value}"`);
  };
  const int = (name: FlagName, min: number, max: number): number => {
    const value = get(name) ?? '';
    const parsed = Number(value);
    if (!/^\d+$/.test(value) || parsed < min || parsed > max) {
      throw new SettingsError(`--${name} (${envName(name)}): expected an integer from ${min} to ${max}, got "${value}"`);
    }
    return parsed;
  };
  const oneOf = <T extends string>(name: FlagName, values: readonly T[]): T => {
    const value = get(name) ?? '';
    if (!(values as readonly string[]).includes(value)) {
      throw new SettingsError(`--${name} (${envName(name)}): expected ${values.join(' | ')}, got "${value}"`);
    }
    return value as T;
  };
  const list = (name: FlagName): string[] | undefined => {
    const value = get(name);
    if (value === undefined) return undefined;
    const items = value.split(',').map((item) => item.trim()).filter((item) => item !== '');
    return items.length === 0 ? undefined : items;
  };

  const config = get('config');
  if (config === undefined) throw new SettingsError(`--config (${envName('config')}) is required`);
  const redis = get('redis');
  const redisCluster = list('redis-cluster');
  if (redis !== undefined && redisCluster !== undefined) {
    throw new SettingsError('give either --redis or --redis-cluster, not both');
  }
  const storeText = get('store');
  const store = storeText === undefined
    ? (redis !== undefined || redisCluster !== undefined ? 'redis' : 'memory')
    : oneOf('store', ['memory', 'redis'] as const);
  if (store === 'redis' && redis === undefined && redisCluster === undefined) {
    throw new SettingsError('--store redis needs --redis or --redis-cluster');
  }
  if (redis !== undefined && !/^rediss?:\/\//.test(redis)) {
    throw new SettingsError(`--redis (${envName('redis')}): expected redis://host:port or rediss://host:port, got "${redis}"`);
  }
  for (const node of redisCluster ?? []) {
    if (!/^[^:\s]+:\d+$/.test(node) && !/^\[[0-9a-fA-F:]+\]:\d+$/.test(node)) {
      throw new SettingsError(`--redis-cluster (${envName('redis-cluster')}): "${node}" is not host:port`);
    }
  }
  const trustedProxies = list('trusted-proxies') ?? [];
  try {
    new ClientAddressResolver(trustedProxies);
  } catch (error: unknown) {
    throw new SettingsError(`${error instanceof Error ? error.message : String(error)} (${envName('trusted-proxies')})`);
  }
  const tlsCert = get('tls-cert');
  const tlsKey = get('tls-key');
  const tlsClientCa = get('tls-client-ca');
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new SettingsError(`give --tls-cert (${envName('tls-cert')}) and --tls-key (${envName('tls-key')}) together`);
  }
  if (tlsClientCa !== undefined && tlsCert === undefined) {
    throw new SettingsError(`--tls-client-ca (${envName('tls-client-ca')}) needs --tls-cert and --tls-key: mTLS is TLS first`);
  }
  const workers = int('workers', 1, 256);
  if (workers > 1 && store !== 'redis') {
    throw new SettingsError('--workers above 1 needs the Redis store: with the memory store each worker would enforce its own limits');
  }
  return {
    config,
    httpPort: int('http-port', 0, 65535),
    grpcPort: int('grpc-port', 0, 65535),
    host: get('host') ?? '0.0.0.0',
    store,
    redis,
    redisCluster,
    redisUsername: get('redis-username'),
    redisPassword: get('redis-password'),
    redisTls: bool('redis-tls'),
    redisTlsCa: get('redis-tls-ca'),
    redisTlsCert: get('redis-tls-cert'),
    redisTlsKey: get('redis-tls-key'),
    redisTlsServername: get('redis-tls-servername'),
    redisTlsInsecure: bool('redis-tls-insecure'),
    redisTimeoutMs: int('redis-timeout-ms', 1, 60_000),
    redisKeyPrefix: get('redis-key-prefix') ?? 'rl:',
    redisConnectWaitMs: int('redis-connect-wait-ms', 0, 600_000),
    onStoreFailure: oneOf('on-store-failure', ['local', 'allow', 'deny'] as const),
    fallbackDivisor: int('fallback-divisor', 1, 10_000),
    trustedProxies,
    defaultDomain: get('default-domain'),
    shadow: bool('shadow'),
    responseHeaders: bool('response-headers'),
    memoryMaxKeys: int('memory-max-keys', 1, 1_000_000_000),
    localCacheSize: int('local-cache-size', 0, 100_000_000),
    maxDescriptors: int('max-descriptors', 1, 100_000),
    maxEntries: int('max-entries', 1, 10_000),
    maxValueBytes: int('max-value-bytes', 1, 10_000_000),
    maxBodyBytes: int('max-body-bytes', 64, 100_000_000),
    shutdownTimeoutMs: int('shutdown-timeout-ms', 0, 600_000),
    workers,
    logLevel: oneOf('log-level', LOG_LEVELS),
    httpRequestTimeoutMs: int('http-request-timeout-ms', 100, 3_600_000),
    httpKeepAliveTimeoutMs: int('http-keep-alive-timeout-ms', 1_000, 3_600_000),
    httpMaxConnections: int('http-max-connections', 1, 1_000_000),
    tlsCert,
    tlsKey,
    tlsClientCa,
  };
}

export function usage(): string {
  const lines = [
    'openclaw-ratelimit — rate-limit decision server for Envoy and NGINX',
    '',
    'Usage:',
    '  openclaw-ratelimit serve --config PATH [flags]',
    '  openclaw-ratelimit check-config PATH...  validate files/directories; exit 0, or 2 with the reasons',
    '',
    'Flags of serve (each also read from the environment variable shown):',
  ];
  for (const [name, spec] of Object.entries(FLAGS)) {
    const flag = spec.type === 'boolean' ? `--${name}` : `--${name} VALUE`;
    const fallback = 'default' in spec ? ` (default ${spec.default})` : '';
    lines.push(`  ${flag.padEnd(30)} ${envName(name).padEnd(26)} ${spec.help}${fallback}`);
  }
  return lines.join('\n');
}
