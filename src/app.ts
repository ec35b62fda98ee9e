import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { CompiledConfig } from './core/config-model.js';
import type { RuleNode } from './core/rules.js';
import { Limiter } from './core/limiter.js';
import { OverLimitCache } from './core/over-limit-cache.js';
import { DEFAULT_REQUEST_BOUNDS } from './core/request-bounds.js';
import { ConfigWatcher } from './config/watch.js';
import { LimiterDecisionService } from './decision-service.js';
import { loadOptionsOf } from './load-options.js';
import { ConfigError, errorMessage } from './errors.js';
import type { Settings } from './settings.js';
import { STORE_CAPABILITIES } from './store/capabilities.js';
import { monotonicClockUs } from './store/clock.js';
import { MemoryStore } from './store/memory-store.js';
import { createRedisStore } from './store/redis-store.js';
import type { Store } from './store/store.js';
import { createGrpcServer, type GrpcServer } from './transport/grpc/server.js';
import { ClientAddressResolver } from './transport/http/client-address.js';
import { createHttpServer } from './transport/http/server.js';
import type { Logger } from './telemetry/logger.js';
import { Metrics } from './telemetry/metrics.js';
import { clusterMetricsText, isWorker } from './workers.js';

/** Long descriptor values are keyed by this digest (bounded keys, collision-resistant). */
function sha256Digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 32);
}

/** Whether any rule of the config is in quota_mode. */
function usesQuotaMode(config: CompiledConfig): boolean {
  const walk = (node: RuleNode): boolean => node.rule?.quotaMode === true
    || [...node.exact.values(), ...node.keyOnly.values()].some(walk)
    || node.wildcards.some((child) => walk(child.node));
  return [...config.domains.values()].some((domain) => walk(domain.root));
}

export interface RunningApp {
  httpPort: number;
  grpcPort: number;
  metrics: Metrics;
  reloadConfig(): void;
  /** Stops accepting, finishes in-flight requests, closes the store. */
  stop(): Promise<void>;
}

/**
 * The one composition root: loads config (throws ConfigError), picks the
 * store, builds the limiter, service and transports, listens.
 */
export async function startApp(settings: Settings, logger: Logger): Promise<RunningApp> {
  const metrics = new Metrics();
  if (isWorker()) metrics.text = clusterMetricsText(metrics.registry);
  const capabilities = STORE_CAPABILITIES[settings.store];
  const warnAboutQuotaMode = (config: CompiledConfig): void => {
    if (!capabilities.quotaMode && usesQuotaMode(config)) {
      logger.warn({ store: settings.store },
        `quota_mode is enforced as an ordinary limit by ${capabilities.name} (it denies more than quota_mode would, never admits more)`);
    }
  };
  const watcher = new ConfigWatcher(settings.config, {
    onReload: (config: CompiledConfig, reason: string) => {
      metrics.configReloads.inc({ result: 'success' });
      if (settings.defaultDomain !== undefined && !config.domains.has(settings.defaultDomain)) {
        logger.warn({ defaultDomain: settings.defaultDomain, domains: [...config.domains.keys()] },
          'the reloaded config has no --default-domain: requests without a domain are not limited');
      }
      metrics.configDomains.set(config.domains.size);
      metrics.forgetDomainsExcept(new Set(config.domains.keys()));
      warnAboutQuotaMode(config);
      logger.info({ reason, domains: [...config.domains.keys()] }, 'config reloaded');
    },
    onReloadError: (error: unknown, reason: string) => {
      metrics.configReloads.inc({ result: 'failure' });
      logger.error({ reason, error: errorMessage(error) }, 'config reload failed; the previous config stays in force');
    },
  }, { load: loadOptionsOf(settings) });
  const config = (): CompiledConfig => watcher.current();
  const initial = watcher.current();
  metrics.configDomains.set(initial.domains.size);
  warnAboutQuotaMode(initial);
  if (settings.defaultDomain !== undefined && !initial.domains.has(settings.defaultDomain)) {
    watcher.close();
    // A typo here would silently turn limiting off (unknown domain = OK).
    throw new ConfigError(settings.config, '',
      `--default-domain "${settings.defaultDomain}" is not a loaded domain (loaded: ${[...initial.domains.keys()].join(', ')})`);
  }

  const fallbackStore = new MemoryStore({ maxKeys: settings.memoryMaxKeys });
  let store: Store = fallbackStore;
  if (settings.store === 'redis') {
    const redisStore = createRedisStore({
      url: settings.redis,
      cluster: settings.redisCluster,
      username: settings.redisUsername,
      password: settings.redisPassword,
      tls: settings.redisTls,
      tlsCa: settings.redisTlsCa,
      tlsCert: settings.redisTlsCert,
      tlsKey: settings.redisTlsKey,
      tlsServername: settings.redisTlsServername,
      tlsInsecure: settings.redisTlsInsecure,
      timeoutMs: settings.redisTimeoutMs,
      keyPrefix: settings.redisKeyPrefix,
      logger,
    });
    redisStore.onStateChange((state, previous) => {
      metrics.fallbackActive.set(state === 'closed' ? 0 : 1);
      const log = state === 'closed' ? logger.info.bind(logger) : logger.warn.bind(logger);
      log({ state, previous, policy: settings.onStoreFailure }, `redis circuit ${state}`);
    });
    store = redisStore;
    // Answering before Redis is connected would let the failure policy decide
    // the first requests after every restart; wait a little, but start anyway.
    if (!(await redisStore.waitUntilConnected(settings.redisConnectWaitMs))) {
      logger.warn({ waitedMs: settings.redisConnectWaitMs, policy: settings.onStoreFailure },
        'redis not reachable yet; serving with the store-failure policy until it is');
    }
  }

  const limiter = new Limiter({
    store,
    fallbackStore,
    onStoreFailure: settings.onStoreFailure,
    fallbackDivisor: settings.fallbackDivisor,
    shadow: settings.shadow,
    keyPrefix: settings.redisKeyPrefix,
    digest: sha256Digest,
    onStoreError: () => metrics.storeErrors.inc(),
    // It saves store round trips: the memory store has none to save.
    overLimitCache: store !== fallbackStore && settings.localCacheSize > 0 ? new OverLimitCache(settings.localCacheSize) : undefined,
    clockUs: monotonicClockUs(),
    quotaMode: capabilities.quotaMode,
  });
  const service = new LimiterDecisionService({
    config,
    limiter,
    store,
    metrics,
    bounds: {
      ...DEFAULT_REQUEST_BOUNDS,
      maxDescriptors: settings.maxDescriptors,
      maxEntries: settings.maxEntries,
      maxKeyOrValueBytes: settings.maxValueBytes,
      maxBodyBytes: settings.maxBodyBytes,
    },
    defaultDomain: settings.defaultDomain,
    canDecideWithoutStore: store === fallbackStore || settings.onStoreFailure !== 'deny',
    digest: sha256Digest,
  });

  const http: FastifyInstance = createHttpServer({
    service,
    metrics,
    config,
    clientAddress: new ClientAddressResolver(settings.trustedProxies),
    logger,
    headerStyle: settings.headerStyle,
  });
  let grpc: GrpcServer | undefined;
  try {
    await http.listen({ host: settings.host, port: settings.httpPort });
    grpc = createGrpcServer(service, { responseHeaders: settings.responseHeaders, headerStyle: settings.headerStyle, logger });
    const grpcPort = await grpc.listen(settings.host, settings.grpcPort);
    watcher.start();
    const address = http.server.address();
    const httpPort = typeof address === 'object' && address !== null ? address.port : settings.httpPort;
    logger.info(
      {
        httpPort, grpcPort, store: store.kind, onStoreFailure: settings.onStoreFailure,
        domains: [...initial.domains.keys()], defaultDomain: settings.defaultDomain, shadow: settings.shadow,
      },
      'openclaw-ratelimit listening',
    );
    return {
      httpPort,
      grpcPort,
      metrics,
      reloadConfig: () => watcher.reload('signal'),
      stop: async () => {
        watcher.close();
        await Promise.all([http.close(), grpc?.shutdown(settings.shutdownTimeoutMs)]);
        await store.close();
        if (store !== fallbackStore) await fallbackStore.close();
      },
    };
  } catch (error: unknown) {
    watcher.close();
    await Promise.allSettled([http.close(), grpc?.shutdown(), store.close(), fallbackStore.close()]);
    throw error;
  }
}
