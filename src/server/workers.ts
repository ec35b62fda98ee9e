import cluster, { type Worker } from 'node:cluster';
import { loadConfig } from '../config/load.js';
import { loadTlsMaterial } from '../transport/tls-files.js';
import type { Settings } from './settings.js';
import type { Logger } from '../telemetry/logger.js';
import { aggregateMetricsText, type Metrics, type MetricsSnapshot } from '../telemetry/metrics.js';

// `--workers N`: a primary process forks N workers that share the listening
// ports (node:cluster) and the Redis store. Only with Redis: with the memory
// store each worker would enforce its own limits.

// /metrics in a worker: the worker asks the primary (METRICS_REQUEST), the
// primary asks every worker for its snapshot (SNAPSHOT_REQUEST/REPLY), adds
// them up and answers with the text (METRICS_REPLY).
const METRICS_REQUEST = 'openclaw-ratelimit:metrics-request';
const METRICS_REPLY = 'openclaw-ratelimit:metrics-reply';
const SNAPSHOT_REQUEST = 'openclaw-ratelimit:snapshot-request';
const SNAPSHOT_REPLY = 'openclaw-ratelimit:snapshot-reply';
const METRICS_TIMEOUT_MS = 2_000;
/** Below METRICS_TIMEOUT_MS, so the asking worker hears of a failure before it gives up. */
const SNAPSHOTS_TIMEOUT_MS = 1_500;
/** A worker that dies this often within CRASH_WINDOW_MS makes the primary give up. */
const MAX_CRASHES = 5;
const CRASH_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 500;

interface MetricsMessage {
  type: string;
  id?: number;
  text?: string;
  snapshot?: MetricsSnapshot;
}

/** The primary's side: every connected worker's snapshot, in worker order; rejects if one does not answer in time. */
function snapshotGatherer(): { gather(): Promise<MetricsSnapshot[]>; received(worker: Worker, message: MetricsMessage): void } {
  let nextId = 0;
  const gathering = new Map<number, (worker: Worker, snapshot: MetricsSnapshot) => void>();
  return {
    gather: () => new Promise<MetricsSnapshot[]>((resolve, reject) => {
      const id = nextId++;
      const workers = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker?.isConnected() === true);
      const snapshots = new Map<number, MetricsSnapshot>();
      const finish = (error?: Error): void => {
        clearTimeout(timer);
        gathering.delete(id);
        if (error !== undefined) reject(error);
        else resolve(workers.map((worker) => snapshots.get(worker.id)!));
      };
      const timer = setTimeout(() => finish(new Error(`${workers.length - snapshots.size} of ${workers.length} workers sent no metrics within ${SNAPSHOTS_TIMEOUT_MS} ms`)), SNAPSHOTS_TIMEOUT_MS);
      gathering.set(id, (worker, snapshot) => {
        if (!workers.includes(worker)) return;
        snapshots.set(worker.id, snapshot);
        if (snapshots.size === workers.length) finish();
      });
      // A worker that goes away meanwhile does not answer; its send error is that same story.
      for (const worker of workers) worker.send({ type: SNAPSHOT_REQUEST, id }, () => undefined);
      if (workers.length === 0) finish();
    }),
    received: (worker, message) => {
      if (message.id !== undefined && message.snapshot !== undefined) gathering.get(message.id)?.(worker, message.snapshot);
    },
  };
}

/** Runs the primary: forks, restarts crashed workers, forwards SIGHUP, drains on SIGTERM. Resolves with the exit code. */
export function runPrimary(settings: Settings, workers: number, logger: Logger): Promise<number> {
  loadConfig(settings.config, { mergeDomains: settings.mergeDomains }); // a bad config is exit 2 here, not N crashing workers
  if (settings.tlsCert !== undefined && settings.tlsKey !== undefined) {
    loadTlsMaterial({ cert: settings.tlsCert, key: settings.tlsKey, clientCa: settings.tlsClientCa }); // the same for TLS files
  }
  const snapshots = snapshotGatherer();
  const crashes: number[] = [];
  let stopping = false;
  const fork = (): Worker => cluster.fork();

  cluster.on('message', (worker, message: MetricsMessage) => {
    if (message.type === SNAPSHOT_REPLY) snapshots.received(worker, message);
    if (message.type !== METRICS_REQUEST) return;
    snapshots.gather().then(aggregateMetricsText).then(
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
export function clusterMetricsText(metrics: Metrics): () => Promise<string> {
  let nextId = 0;
  const pending = new Map<number, (text: string | undefined) => void>();
  process.on('message', (message: MetricsMessage) => {
    if (message.type === SNAPSHOT_REQUEST) {
      // On failure no reply: the primary's wait runs out and the asking worker answers with its own metrics.
      metrics.snapshot().then((snapshot) => process.send?.({ type: SNAPSHOT_REPLY, id: message.id, snapshot }, undefined, undefined, () => undefined), () => undefined);
      return;
    }
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
  }).then((text) => text ?? metrics.localText());
}

export const isWorker = (): boolean => cluster.isWorker;
