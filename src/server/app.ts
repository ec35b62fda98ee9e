import { createHash } from 'node:crypto';
import { BucketAdminService } from '../service/admin-service.js';
import type { CompiledConfig } from '../core/config-model.js';
import { Limiter } from '../core/limiter.js';
import { encodeUtf8Lossless } from '../core/lossless-text.js';
import { DEFAULT_REQUEST_BOUNDS } from '../core/request-bounds.js';
import { ConfigWatcher } from '../config/watch.js';
import { LimiterDecisionService } from '../service/decision-service.js';
import { ConfigError, errorMessage } from '../errors.js';
import type { Settings } from './settings.js';
import { MemoryStore } from '../store/memory-store.js';
import { createRedisStore, type RedisStore, type StoreEvents } from '../store/redis/redis-store.js';
import { createGrpcServer, type GrpcServer } from '../transport/grpc/server.js';
import { RotatingServerCredentials } from '../transport/grpc/tls-credentials.js';
import { ClientAddressResolver } from '../transport/http/client-address.js';
import { createAdminServer, type AdminServer } from '../transport/http/admin-server.js';
import { createHttpServer, type HttpServer } from '../transport/http/server.js';
import { TlsFilesWatcher, loadTlsMaterial, type TlsFiles } from '../transport/tls-files.js';
import type { Logger } from '../telemetry/logger.js';
import { Metrics } from '../telemetry/metrics.js';
import { storeEventsTelemetry } from '../telemetry/store-events.js';
import { clusterMetricsText, isWorker } from './workers.js';

/** Long descriptor values are keyed by this digest (bounded keys, collision-resistant) of their original bytes. */
export function sha256Digest(text: string): string {
  return createHash('sha256').update(encodeUtf8Lossless(text)).digest('base64url').slice(0, 32);
}

/** Of --shutdown-timeout-ms, what the HTTP and gRPC drains may use: the rest (up to 1 s) is for closing the store. */
function drainBudgetMs(shutdownTimeoutMs: number): number {
  return Math.max(0, shutdownTimeoutMs - Math.min(1_000, Math.floor(shutdownTimeoutMs / 5)));
}

export interface RunningApp {
  httpPort: number;
  grpcPort: number;
  /** The admin listener's port; undefined when --admin-port is 0. */
  adminPort: number | undefined;
  metrics: Metrics;
  /** As SIGHUP: resolves true once a new config is in force, false when the old one stays (the error is logged). */
  reloadConfig(): Promise<boolean>;
  /** Stops accepting, finishes in-flight requests, closes the store. */
  stop(): Promise<void>;
}

/**
 * The one composition root: loads config (throws ConfigError), picks the
 * store, builds the limiter, service and transports, listens.
 */
export async function startApp(settings: Settings, logger: Logger): Promise<RunningApp> {
  // TLS files first: a bad one is fatal (TlsConfigError, exit 2) before anything is opened.
  const tlsFiles: TlsFiles | undefined = settings.tlsCert === undefined || settings.tlsKey === undefined
    ? undefined
    : { cert: settings.tlsCert, key: settings.tlsKey, clientCa: settings.tlsClientCa };
  const tlsMaterial = tlsFiles === undefined ? undefined : loadTlsMaterial(tlsFiles);
  const metrics = new Metrics();
  /** Told of every reload once the store exists (local leases of the old limits go back). */
  let configChanged: () => void = () => {};
  if (isWorker()) metrics.text = clusterMetricsText(metrics);
  const watcher = new ConfigWatcher(settings.config, {
    onReload: (config: CompiledConfig, reason: string) => {
      metrics.configReloads.inc({ result: 'success' });
      metrics.configLastReloadSuccessful.set(1);
      if (settings.defaultDomain !== undefined && !config.domains.has(settings.defaultDomain)) {
        logger.warn({ defaultDomain: settings.defaultDomain, domains: [...config.domains.keys()] },
          'the reloaded config has no --default-domain: requests without a domain are not limited');
      }
      metrics.configDomains.set(config.domains.size);
      metrics.forgetDomainsExcept(new Set(config.domains.keys()));
      logger.info({ reason, domains: [...config.domains.keys()] }, 'config reloaded');
      configChanged();
    },
    onReloadError: (error: unknown, reason: string) => {
      metrics.configReloads.inc({ result: 'failure' });
      metrics.configLastReloadSuccessful.set(0);
      logger.error({ reason, error: errorMessage(error) }, 'config reload failed; the previous config stays in force');
    },
  }, { load: { mergeDomains: settings.mergeDomains } });
  const config = (): CompiledConfig => watcher.current();
  const initial = watcher.current();
  metrics.configDomains.set(initial.domains.size);
  metrics.configLastReloadSuccessful.set(1); // the process stops on a config it cannot load
  metrics.tlsLastReloadSuccessful.set(1);
  if (settings.defaultDomain !== undefined && !initial.domains.has(settings.defaultDomain)) {
    watcher.close();
    // A typo here would silently turn limiting off (unknown domain = OK).
    throw new ConfigError(settings.config, '',
      `--default-domain "${settings.defaultDomain}" is not a loaded domain (loaded: ${[...initial.domains.keys()].join(', ')})`);
  }

  const store = createStore(settings, metrics, logger);
  if (store.kind === 'redis') configChanged = () => store.configChanged?.();
  metrics.watchFallback(() => !store.health().ready);
  if (store.kind === 'redis') {
    // Answering before Redis is connected would let the failure policy decide
    // the first requests after every restart; wait a little, but start anyway.
    // A misconfigured Redis (wrong password, ACL) has logged its own error line: no "not reachable" on top.
    if (!(await store.waitUntilConnected(settings.redisConnectWaitMs)) && store.health().misconfigured === undefined) {
      logger.warn({ waitedMs: settings.redisConnectWaitMs, policy: settings.onStoreFailure },
        'redis not reachable yet; serving with the store-failure policy until it is');
    }
  }

  const limiter = new Limiter({
    store,
    shadow: settings.shadow,
    keyPrefix: settings.redisKeyPrefix,
    digest: sha256Digest,
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
    canDecideWithoutStore: store.kind === 'memory' || settings.onStoreFailure !== 'deny',
    digest: sha256Digest,
  });

  const http: HttpServer = createHttpServer({
    service,
    metrics,
    config,
    clientAddress: new ClientAddressResolver(settings.trustedProxies),
    logger,
    limits: {
      requestTimeoutMs: settings.httpRequestTimeoutMs,
      keepAliveTimeoutMs: settings.httpKeepAliveTimeoutMs,
      maxConnections: settings.httpMaxConnections,
    },
    tls: tlsMaterial,
    headerStyle: settings.headerStyle,
  });
  const grpcCredentials = tlsMaterial === undefined ? undefined : new RotatingServerCredentials(tlsMaterial);
  const tlsWatcher = tlsFiles === undefined || tlsMaterial === undefined ? undefined : new TlsFilesWatcher(tlsFiles, tlsMaterial, {
    onChange: (material) => {
      http.setTls(material);
      grpcCredentials?.update(material);
      metrics.tlsReloads.inc({ result: 'success' });
      metrics.tlsLastReloadSuccessful.set(1);
      logger.info({ cert: tlsFiles.cert }, 'TLS files changed: new handshakes use the new certificate');
    },
    onError: (error) => {
      metrics.tlsReloads.inc({ result: 'failure' });
      metrics.tlsLastReloadSuccessful.set(0);
      logger.error({ error: errorMessage(error) }, 'TLS files changed but are not usable (yet); the previous certificate stays in use');
    },
  });
  let grpc: GrpcServer | undefined;
  let admin: AdminServer | undefined;
  try {
    const httpPort = await http.listen(settings.host, settings.httpPort);
    grpc = createGrpcServer(service, { responseHeaders: settings.responseHeaders, headerStyle: settings.headerStyle, logger });
    const grpcPort = await grpc.listen(settings.host, settings.grpcPort, grpcCredentials);
    let adminPort: number | undefined;
    if (settings.adminPort !== 0) {
      admin = createAdminServer({
        admin: new BucketAdminService({
          config, limiter, store, decisions: service, digest: sha256Digest,
          onReset: (domain, buckets) => logger.info({ domain, buckets }, 'buckets reset through the admin listener'),
        }),
        logger,
        maxBodyBytes: settings.maxBodyBytes,
      });
      adminPort = await admin.listen(settings.adminHost, settings.adminPort);
    }
    watcher.start();
    tlsWatcher?.start();
    logger.info(
      {
        httpPort, grpcPort, adminPort, adminHost: adminPort === undefined ? undefined : settings.adminHost, store: store.kind, onStoreFailure: settings.onStoreFailure,
        domains: [...initial.domains.keys()], defaultDomain: settings.defaultDomain, shadow: settings.shadow,
        tls: tlsFiles === undefined ? 'off' : tlsFiles.clientCa === undefined ? 'on' : 'mtls',
      },
      'openclaw-ratelimit listening',
    );
    return {
      httpPort,
      grpcPort,
      adminPort,
      metrics,
      reloadConfig: () => watcher.reload('signal'),
      stop: async () => {
        watcher.close();
        tlsWatcher?.close();
        // Both drains share one budget inside --shutdown-timeout-ms, leaving room to close the store.
        const drainMs = drainBudgetMs(settings.shutdownTimeoutMs);
        await Promise.all([http.drain(drainMs), grpc?.shutdown(drainMs), admin?.close()]);
        await store.close();
      },
    };
  } catch (error: unknown) {
    watcher.close();
    tlsWatcher?.close();
    await Promise.allSettled([http.app.close(), grpc?.shutdown(), admin?.close(), store.close()]);
    throw error;
  }
}

/**
 * The embedded store, or Redis with its local mirror (`--local-cache-size`
 * keys; with 0 no mirror, and the local fallback starts from full buckets).
 */
function createStore(settings: Settings, metrics: Metrics, logger: Logger): MemoryStore | RedisStore {
  if (settings.store === 'memory') return new MemoryStore({ maxKeys: settings.memoryMaxKeys });
  const mirror = settings.localCacheSize > 0;
  // Every event the store tells is counted or logged (the compiler checks that none is left out).
  const events: Required<StoreEvents> = storeEventsTelemetry(metrics, logger, settings.onStoreFailure);
  return createRedisStore({
    ...settings,
    local: new MemoryStore({ maxKeys: mirror ? settings.localCacheSize : settings.memoryMaxKeys }),
    mirror,
    localLeases: settings.localLeases === 'on',
    logger,
    events,
  });
}
