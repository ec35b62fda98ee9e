import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { loadConfig } from '../config/load.js';
import { loadTlsMaterial } from '../transport/tls-files.js';
import type { Settings } from './settings.js';
import type { Logger } from '../telemetry/logger.js';

// `--workers N`: a primary process forks N workers that share the listening
// ports (node:cluster) and the Redis store. Only with Redis: with the memory
// store each worker would enforce its own limits.

const METRICS_REQUEST = 'openclaw-ratelimit:metrics-request';
const METRICS_REPLY = 'openclaw-ratelimit:metrics-reply';
const METRICS_TIMEOUT_MS = 2_000;
/** A worker that dies this often within CRASH_WINDOW_MS makes the primary give up. */
const MAX_CRASHES = 5;
const CRASH_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 500;

interface MetricsMessage {
  type: string;
  id?: number;
  text?: string;
}

/** Runs the primary: forks, restarts crashed workers, forwards SIGHUP, drains on SIGTERM. Resolves with the exit code. */
export function runPrimary(settings: Settings, workers: number, logger: Logger): Promise<number> {
  loadConfig(settings.config, { mergeDomains: settings.mergeDomains }); // a bad config is exit 2 here, not N crashing workers
  if (settings.tlsCert !== undefined && settings.tlsKey !== undefined) {
    loadTlsMaterial({ cert: settings.tlsCert, key: settings.tlsKey, clientCa: settings.tlsClientCa }); // the same for TLS files
  }
  const aggregator = new AggregatorRegistry();
  const crashes: number[] = [];
  let stopping = false;
  const fork = (): Worker => cluster.fork();

  cluster.on('message', (worker, message: MetricsMessage) => {
    if (message.type !== METRICS_REQUEST) return;
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: METRICS_REPLY, id: message.id, text }),
      (error: unknown) => {
        logger.warn({ error: String(error) }, 'cannot aggregate worker metrics');
        worker.send({ type: METRICS_REPLY, id: message.id });
      },
    );
  });

  return new Promise<number>((resolve) => {
    let failed = false;
    cluster.on('exit', (worker, code, signal) => {
      if (code !== 0) failed = true;
      if (stopping) {
        if (Object.keys(cluster.workers ?? {}).length === 0) resolve(failed ? 1 : 0);
        return;
      }
      const now = Date.now();
      crashes.push(now);
      while (crashes.length > 0 && crashes[0]! < now - CRASH_WINDOW_MS) crashes.shift();
      logger.error({ pid: worker.process.pid, code, signal }, 'worker died');
      if (crashes.length >= MAX_CRASHES) {
        logger.fatal({ crashes: crashes.length }, 'workers keep dying; stopping');
        stop('crash loop');
        return;
      }
      setTimeout(() => { if (!stopping) fork(); }, RESTART_DELAY_MS).unref();
    });
    const stop = (reason: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ reason }, 'stopping workers');
      const alive = Object.values(cluster.workers ?? {});
      if (alive.length === 0) resolve(1);
      for (const worker of alive) worker?.process.kill('SIGTERM');
      setTimeout(() => {
        for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      }, settings.shutdownTimeoutMs + 2_000).unref();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGHUP');
    });
    for (let i = 0; i < workers; i++) fork();
    logger.info({ workers }, 'primary started workers');
  });
}

/**
 * In a worker: /metrics shows every worker's metrics aggregated by the primary
 * (counters summed), so Prometheus sees one server. Falls back to this
 * worker's own registry if the primary does not answer in time.
 */
export function clusterMetricsText(registry: Registry): () => Promise<string> {
  AggregatorRegistry.setRegistries([registry]);
  new AggregatorRegistry(); // registers the worker's answer to the primary's requests
  let nextId = 0;
  const pending = new Map<number, (text: string | undefined) => void>();
  process.on('message', (message: MetricsMessage) => {
    if (message.type !== METRICS_REPLY || message.id === undefined) return;
    pending.get(message.id)?.(message.text);
    pending.delete(message.id);
  });
  return () => new Promise<string | undefined>((resolve) => {
    const id = nextId++;
    const timer = setTimeout(() => {
      pending.delete(id);
      resolve(undefined);
    }, METRICS_TIMEOUT_MS);
    pending.set(id, (text) => {
      clearTimeout(timer);
      resolve(text);
    });
    process.send?.({ type: METRICS_REQUEST, id });
  }).then((text) => text ?? registry.metrics());
}

export const isWorker = (): boolean => cluster.isWorker;
