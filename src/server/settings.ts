// Every `serve` flag, declared once: its type, default, help text and how its
// text becomes a value (a zod schema). `Settings` is derived from these
// declarations, so a flag, its env var (RL_<FLAG>), its default and its type
// cannot drift apart. Flags win over the environment, the environment over defaults.
import { z } from 'zod';
import { DEFAULT_TRUSTED_PROXIES, parseTrustedProxies } from '../core/ip-address.js';
import { parseRegions } from '../core/regions.js';
import { HEADER_STYLES } from '../core/response-headers.js';
import { SettingsError } from '../errors.js';
import { LOG_LEVELS } from '../telemetry/logger.js';

export { SettingsError };

type Kind = 'string' | 'boolean';

export interface FlagSpec<S extends z.ZodType = z.ZodType> {
  readonly type: Kind;
  /** Text the value has when neither the flag nor its env var is given; absent = undefined. */
  readonly default?: string;
  readonly help: string;
  /** Text (or undefined when not given and without default) → value. Fails with a message saying what was expected. */
  readonly schema: S;
}

function flag<S extends z.ZodType>(type: Kind, help: string, schema: S, fallback?: string): FlagSpec<S> {
  return fallback === undefined ? { type, help, schema } : { type, help, schema, default: fallback };
}

const optionalText = z.string().optional();
const text = z.string();

const int = (min: number, max: number) =>
  z.string({ error: `expected an integer from ${min} to ${max}` })
    .regex(/^\d+$/, { error: `expected an integer from ${min} to ${max}` })
    .transform(Number)
    .refine((n) => n >= min && n <= max, { error: `expected an integer from ${min} to ${max}` });

const TRUE = /^(true|1|yes|on)$/i;
const FALSE = /^(false|0|no|off)$/i;
const bool = z.string().optional()
  .refine((value) => value === undefined || TRUE.test(value) || FALSE.test(value), { error: 'expected true or false' })
  .transform((value) => value !== undefined && TRUE.test(value));

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `expected ${values.join(' | ')}` });

/** `a,b, c` → ['a','b','c']; empty items dropped; nothing → undefined. */
const list = z.string().optional().transform((value) => {
  const items = (value ?? '').split(',').map((item) => item.trim()).filter((item) => item !== '');
  return items.length === 0 ? undefined : items;
});

const redisUrl = z.string()
  .regex(/^rediss?:\/\//, { error: 'expected redis://host:port or rediss://host:port' })
  .optional();

const seedList = list.refine(
  (nodes) => (nodes ?? []).every((node) => /^[^:\s]+:\d+$/.test(node) || /^\[[0-9a-fA-F:]+\]:\d+$/.test(node)),
  { error: 'expected host:port,host:port,...' },
);

const cidrList = list.transform((cidrs, ctx) => {
  try {
    parseTrustedProxies(cidrs ?? []);
  } catch (error: unknown) {
    ctx.addIssue({ code: 'custom', message: error instanceof Error ? error.message : String(error) });
    return z.NEVER;
  }
  return cidrs ?? [];
});

/** Every `serve` flag; each also reads RL_<FLAG_IN_UPPER_SNAKE_CASE>. */
export const FLAGS = {
  config: flag('string', 'rules: a YAML file or a directory of *.yaml/*.yml (one domain per file)',
    z.string({ error: 'is required' })),
  'http-port': flag('string', 'HTTP port (/v1/check, /v1/auth*, /metrics, ...)', int(0, 65535), '8080'),
  'grpc-port': flag('string', 'gRPC port (ext_authz, RateLimitService, health)', int(0, 65535), '8081'),
  host: flag('string', 'address to listen on', text, '0.0.0.0'),
  'admin-port': flag('string', 'admin listener: POST /v1/inspect and /v1/reset, no authentication; 0 = off', int(0, 65535), '8082'),
  'admin-host': flag('string', 'address of the admin listener (keep it private: anyone reaching it can reset buckets)', text, '127.0.0.1'),
  store: flag('string', 'memory | redis (default: redis when a Redis address is given, else memory)',
    oneOf(['memory', 'redis']).optional()),
  redis: flag('string', 'single Redis: redis://[user:pass@]host:port[/db], rediss:// for TLS', redisUrl),
  'redis-cluster': flag('string', 'Redis Cluster seed nodes: host:port,host:port,...', seedList),
  'redis-sentinel': flag('string', 'Redis Sentinels: host:port,host:port,... (with --redis-sentinel-master)', seedList),
  'redis-sentinel-master': flag('string', 'the master\'s name in the Sentinels ("sentinel monitor NAME ...")', optionalText),
  'redis-username': flag('string', 'Redis ACL user (cluster, Sentinel\'s master and replicas, or to override the URL)', optionalText),
  'redis-password': flag('string', 'Redis password (cluster, Sentinel\'s master and replicas, or to override the URL)', optionalText),
  'redis-sentinel-username': flag('string', 'ACL user of the Sentinels themselves (default: none)', optionalText),
  'redis-sentinel-password': flag('string', 'password of the Sentinels themselves, their requirepass (default: none)', optionalText),
  'redis-tls': flag('boolean', 'use TLS to Redis, and to its Sentinels (implied by rediss://)', bool),
  'redis-tls-ca': flag('string', 'PEM file of the CA that signed the Redis certificate', optionalText),
  'redis-tls-cert': flag('string', 'PEM client certificate for Redis mTLS', optionalText),
  'redis-tls-key': flag('string', 'PEM client key for Redis mTLS', optionalText),
  'redis-tls-servername': flag('string', 'TLS server name (SNI) to expect', optionalText),
  'redis-tls-insecure': flag('boolean', 'do not verify the Redis certificate (testing only)', bool),
  'redis-timeout-ms': flag('string', 'deadline of one Redis call, counted from when it is written', int(1, 60_000), '50'),
  'redis-batch-window-ms': flag('string',
    'Redis store: how long a decision may wait for others to share its script call; 0 = only those that arrived together (no added latency)',
    int(0, 20), '0'),
  'redis-connect-wait-ms': flag('string', 'at start, wait this long for Redis before listening (then start anyway)',
    int(0, 600_000), '3000'),
  'redis-key-prefix': flag('string', 'prefix of every Redis key', text, 'rl:'),
  'on-store-failure': flag('string', 'local | allow | deny when Redis fails', oneOf(['local', 'allow', 'deny']), 'local'),
  'fallback-divisor': flag('string',
    'local fallback: each sidecar admits 1/N of what Redis had left; auto = N is the number of sidecars sharing Redis',
    z.union([z.literal('auto'), int(1, 10_000)], { error: 'expected auto or an integer from 1 to 10000' }), 'auto'),
  'trusted-proxies': flag('string', 'CIDRs whose X-Real-IP/X-Forwarded-For are believed', cidrList,
    DEFAULT_TRUSTED_PROXIES.join(',')),
  'default-domain': flag('string', 'domain for requests that name none', optionalText),
  shadow: flag('boolean', 'global shadow mode: evaluate and count, never deny', bool),
  'response-headers': flag('boolean', 'add rate-limit headers to RateLimitService responses', bool),
  'memory-max-keys': flag('string', 'most buckets kept in memory (LRU beyond)', int(1, 1_000_000_000), '1000000'),
  'local-cache-size': flag('string',
    'Redis store: keys whose last known state is kept, to deny without a Redis call and to seed the local fallback; 0 = off',
    int(0, 100_000_000), '100000'),
  'local-leases': flag('string',
    'Redis store: on = a busy token bucket\'s tokens are moved into a lease in this sidecar and decided without a Redis call (docs/leases.md); off = every decision in Redis',
    oneOf(['on', 'off']), 'on'),
  'max-descriptors': flag('string', 'most descriptors in one request', int(1, 100_000), '64'),
  'max-entries': flag('string', 'most entries in one descriptor', int(1, 10_000), '16'),
  'max-value-bytes': flag('string', 'longest descriptor key or value, bytes', int(1, 10_000_000), '4096'),
  'max-body-bytes': flag('string', 'largest HTTP request body, bytes', int(64, 100_000_000), '65536'),
  workers: flag('string', 'worker processes sharing the ports (node cluster); Redis store only', int(1, 256), '1'),
  'shutdown-timeout-ms': flag('string', 'longest wait for in-flight requests on SIGTERM', int(0, 600_000), '10000'),
  'log-level': flag('string', LOG_LEVELS.join(' | '), oneOf(LOG_LEVELS), 'info'),
  'http-request-timeout-ms': flag('string',
    'HTTP: longest time to receive one whole request, headers and body (then 408, connection closed)', int(100, 3_600_000), '10000'),
  'http-keep-alive-timeout-ms': flag('string',
    'HTTP: an idle keep-alive connection is closed after this; keep it above the proxies\' idle timeout (NGINX 60 s)',
    int(1_000, 3_600_000), '75000'),
  'http-max-connections': flag('string', 'HTTP: most open connections per process; beyond, new ones are closed at once',
    int(1, 1_000_000), '8192'),
  'tls-cert': flag('string', 'PEM certificate (chain) of both listeners: HTTPS and gRPC over TLS; re-read when it changes', optionalText),
  'tls-key': flag('string', 'PEM private key of --tls-cert', optionalText),
  'tls-client-ca': flag('string', 'mTLS: PEM CA(s); clients must present a certificate it signed', optionalText),
  'merge-domains': flag('boolean',
    "join config files that name the same domain into one (envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG)", bool),
  'header-style': flag('string',
    'rate-limit response headers of every API: x (X-RateLimit-*) | draft03 (RateLimit-Limit/-Remaining/-Reset) | '
    + 'draft10 (RateLimit-Policy, RateLimit) | both (x and draft10)', oneOf(HEADER_STYLES), 'x'),
  region: flag('string', 'this sidecar\'s region (limits with scope: global share one budget across --regions)', optionalText),
  regions: flag('string', 'every region\'s Redis, this one\'s included: a=redis://h:p;b=redis-cluster://h:p,h:p',
    z.string().optional().transform((text, ctx) => {
      if (text === undefined) return undefined;
      try {
        return parseRegions(text);
      } catch (error: unknown) {
        ctx.addIssue({ code: 'custom', message: error instanceof Error ? error.message : String(error) });
        return z.NEVER;
      }
    })),
} as const satisfies Record<string, FlagSpec>;

type FlagName = keyof typeof FLAGS;

/**
 * How `serve --help` groups the flags, in this order. A flag listed in no
 * group is still shown, under "Other" (test/unit/cli/help.test.ts asks for every
 * flag to have a group).
 */
export const FLAG_GROUPS: readonly { readonly title: string; readonly flags: readonly FlagName[] }[] = [
  { title: 'Rules', flags: ['config', 'default-domain', 'merge-domains', 'shadow'] },
  {
    title: 'Listeners',
    flags: ['host', 'http-port', 'grpc-port', 'admin-host', 'admin-port', 'workers', 'tls-cert', 'tls-key', 'tls-client-ca',
      'http-request-timeout-ms', 'http-keep-alive-timeout-ms', 'http-max-connections', 'shutdown-timeout-ms'],
  },
  {
    title: 'Store',
    flags: ['store', 'redis', 'redis-cluster', 'redis-sentinel', 'redis-sentinel-master', 'redis-sentinel-username',
      'redis-sentinel-password', 'redis-username', 'redis-password', 'redis-tls', 'redis-tls-ca',
      'redis-tls-cert', 'redis-tls-key', 'redis-tls-servername', 'redis-tls-insecure', 'redis-timeout-ms',
      'redis-batch-window-ms', 'redis-connect-wait-ms', 'redis-key-prefix', 'local-cache-size', 'local-leases', 'memory-max-keys'],
  },
  { title: 'Store failure', flags: ['on-store-failure', 'fallback-divisor'] },
  { title: 'Multi-region', flags: ['region', 'regions'] },
  {
    title: 'Requests and responses',
    flags: ['trusted-proxies', 'max-descriptors', 'max-entries', 'max-value-bytes', 'max-body-bytes',
      'header-style', 'response-headers'],
  },
  { title: 'Logging', flags: ['log-level'] },
];

type CamelCase<S extends string> = S extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;

/** Parsed flags by camelCase name, plus what is derived from several of them. */
export type Settings = {
  -readonly [K in FlagName as CamelCase<K>]: z.output<(typeof FLAGS)[K]['schema']>;
} & {
  /** The store in force: --store, else redis when a Redis address is given, else memory. */
  store: 'memory' | 'redis';
};

export function envName(flag: string): string {
  return `RL_${flag.toUpperCase().replace(/-/g, '_')}`;
}

function camelCase(name: string): string {
  return name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

type Raw = Partial<Record<FlagName, string | boolean>>;

/** Merges parsed flags over RL_* env vars over defaults, and checks every value. Throws SettingsError. */
export function resolveSettings(flags: Raw, env: NodeJS.ProcessEnv): Settings {
  const values: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(FLAGS) as [FlagName, FlagSpec][]) {
    const given = flags[name];
    const fromEnv = env[envName(name)];
    const raw = given !== undefined ? String(given) : fromEnv !== undefined && fromEnv !== '' ? fromEnv : spec.default;
    const parsed = spec.schema.safeParse(raw);
    if (!parsed.success) {
      const problem = parsed.error.issues[0]?.message ?? 'invalid';
      const got = raw === undefined ? '' : `, got "${raw}"`;
      throw new SettingsError(`--${name} (${envName(name)}): ${problem}${got}`);
    }
    values[camelCase(name)] = parsed.data;
  }
  const settings = values as Settings;
  const addresses = [settings.redis, settings.redisCluster, settings.redisSentinel].filter((address) => address !== undefined);
  if (addresses.length > 1) throw new SettingsError('give one of --redis, --redis-cluster or --redis-sentinel, not several');
  checkSentinel(settings);
  const hasRedis = addresses.length > 0;
  settings.store ??= hasRedis ? 'redis' : 'memory';
  if (settings.store === 'redis' && !hasRedis) throw new SettingsError('--store redis needs --redis, --redis-cluster or --redis-sentinel');
  if ((settings.tlsCert === undefined) !== (settings.tlsKey === undefined)) {
    throw new SettingsError(`give --tls-cert (${envName('tls-cert')}) and --tls-key (${envName('tls-key')}) together`);
  }
  if (settings.tlsClientCa !== undefined && settings.tlsCert === undefined) {
    throw new SettingsError(`--tls-client-ca (${envName('tls-client-ca')}) needs --tls-cert and --tls-key: mTLS is TLS first`);
  }
  checkRegions(settings);
  if (settings.workers > 1 && settings.store !== 'redis') {
    throw new SettingsError('--workers above 1 needs the Redis store: with the memory store each worker would enforce its own limits');
  }
  return settings;
}

/** --redis-sentinel and --redis-sentinel-master come together; the Sentinels' own credentials need them. */
function checkSentinel(settings: Settings): void {
  const { redisSentinel, redisSentinelMaster } = settings;
  if ((redisSentinel === undefined) !== (redisSentinelMaster === undefined || redisSentinelMaster === '')) {
    throw new SettingsError(`give --redis-sentinel (${envName('redis-sentinel')}) and --redis-sentinel-master `
      + `(${envName('redis-sentinel-master')}) together`);
  }
  if (redisSentinel === undefined && (settings.redisSentinelUsername !== undefined || settings.redisSentinelPassword !== undefined)) {
    throw new SettingsError('--redis-sentinel-username and --redis-sentinel-password need --redis-sentinel');
  }
}

/** --region names one of --regions, whose address for it is this store's own. */
function checkRegions(settings: Settings): void {
  const { region, regions } = settings;
  if (region === undefined && regions === undefined) return;
  if (region === undefined || regions === undefined) {
    throw new SettingsError(`give --region (${envName('region')}) and --regions (${envName('regions')}) together`);
  }
  const own = regions.find((r) => r.name === region);
  if (own === undefined) {
    throw new SettingsError(`--region (${envName('region')}): "${region}" is not one of --regions (${regions.map((r) => r.name).join(', ')})`);
  }
  if (settings.store !== 'redis') throw new SettingsError('--regions needs the Redis store: each region decides against its own Redis');
  if (settings.redisSentinel !== undefined) {
    throw new SettingsError('--regions does not support --redis-sentinel yet: give each region\'s Redis as redis:// or redis-cluster://');
  }
  const same = own.redis !== undefined
    ? own.redis === settings.redis
    : settings.redisCluster !== undefined && own.redisCluster!.join(',') === settings.redisCluster.join(',');
  if (!same) {
    throw new SettingsError(`--regions: region "${region}" must have this sidecar's own Redis address `
      + `(${settings.redis ?? `redis-cluster://${(settings.redisCluster ?? []).join(',')}`})`);
  }
}
