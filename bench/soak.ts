// The soak (issue 14): two sidecars (`node dist/main.js serve`, product
// defaults) on one Redis Cluster of 3 masters with a replica each, driven at
// half of the saturation measured at the start, for SOAK_MINUTES (30). Every
// SOAK_FAILOVER_S (300) a master is SIGKILLed, its replica takes over, and the
// killed node comes back as a replica; every SOAK_RELOAD_S (60) the rules file
// is rewritten (every fifth rewrite is invalid, which must be refused and the
// old rules kept). Every SOAK_SAMPLE_S (10) one line is printed: RSS of each
// sidecar, the interval's latencies (p50/p99/max), answers by status, request
// errors. A summary follows; SOAK_OUT writes every sample as JSON.
//
//   npm run soak                        # 30 minutes
//   SOAK_MINUTES=6 SOAK_FAILOVER_S=120 npm run soak
//
// Latency is autocannon's (sent to answered on one of 32 keep-alive
// connections per sidecar, rate-paced): a stall shows as fewer answers in its
// interval and a larger max, not as the queueing an open-loop client would see.
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { spawnServer, type ServerProcess } from '../test/helpers/process.js';
import { startRedisCluster, type RedisClusterHandle } from '../test/helpers/redis.js';
import { waitFor } from '../test/helpers/wait.js';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 30);
const FAILOVER_S = Number(process.env.SOAK_FAILOVER_S ?? 300);
const RELOAD_S = Number(process.env.SOAK_RELOAD_S ?? 60);
const SAMPLE_S = Number(process.env.SOAK_SAMPLE_S ?? 10);
const SATURATION_S = 15;
const LOAD_SHARE = 0.5;
const CONNECTIONS = 32;
const SIDECARS = 2;
/** As docker-compose.yaml runs it. */
const CLUSTER_NODE_TIMEOUT_MS = 5_000;
const API_KEYS = 2_000;
/** One request in ten goes to the hot key, which is denied most of the time. */
const HOT_EVERY = 10;

function rules(version: number): string {
  return [
    'domain: soak',
    'descriptors:',
    '  - key: api_key',
    `    rate_limit: { unit: second, requests_per_unit: ${50 + (version % 2)} }`,
    '    descriptors:',
    '      - key: path',
    '        rate_limit: { unit: minute, requests_per_unit: 600 }',
    '  - key: hot',
    '    rate_limit: { unit: second, requests_per_unit: 100 }',
    '',
  ].join('\n');
}

function requestBodies(): autocannon.Request[] {
  return Array.from({ length: API_KEYS }, (_, i) => {
    const descriptors = i % HOT_EVERY === 0
      ? [{ entries: [{ key: 'hot', value: 'shared' }] }]
      : [{ entries: [{ key: 'api_key', value: `key-${i}` }, { key: 'path', value: `/v1/rate/${i % 7}` }] }];
    return { body: JSON.stringify({ domain: 'soak', descriptors }) };
  });
}

interface Interval {
  latencies: number[];
  statuses: Record<string, number>;
  requestErrors: number;
  errorKinds: Record<string, number>;
}

const newInterval = (): Interval => ({ latencies: [], statuses: {}, requestErrors: 0, errorKinds: {} });

const round1 = (ms: number): number => Math.round(ms * 10) / 10;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return round1(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);
}

function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match === null ? Number.NaN : Math.round(Number(match[1]) / 102.4) / 10;
}

async function metric(server: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`${server.httpUrl}/metrics`, { signal: AbortSignal.timeout(2_000) })).text();
  return text.split('\n').filter((line) => line.startsWith(name)).reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
}

function load(server: ServerProcess, seconds: number, rate: number | undefined, sink?: { current: Interval }): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const instance = autocannon({
      url: `${server.httpUrl}/v1/check`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      connections: CONNECTIONS,
      duration: seconds,
      timeout: 5,
      requests: requestBodies(),
      ...(rate === undefined ? {} : { overallRate: rate }),
    }, (error, result) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(result)));
    if (sink !== undefined) {
      instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
        sink.current.latencies.push(responseTime);
        sink.current.statuses[statusCode] = (sink.current.statuses[statusCode] ?? 0) + 1;
      });
      instance.on('reqError', (error: Error) => {
        sink.current.requestErrors++;
        const kind = (error as { code?: string }).code ?? error.message;
        sink.current.errorKinds[kind] = (sink.current.errorKinds[kind] ?? 0) + 1;
      });
    }
  });
}

async function failover(cluster: RedisClusterHandle, log: (event: string) => void): Promise<void> {
  const started = Date.now();
  const victim = await cluster.killMaster();
  log(`failover: SIGKILL master :${victim.port}`);
  // Failed over = another node marks it failed (not just suspected, `fail?`) and every slot has a live master again.
  await waitFor(`:${victim.port} marked failed`, async () => {
    const live = cluster.nodes.find((n) => n.running)!;
    const line = (await live.cli('CLUSTER', 'NODES')).split('\n').find((l) => l.includes(`:${victim.port}@`));
    return line !== undefined && /\bfail\b(?!\?)/.test(line.split(' ')[2] ?? '');
  }, 60_000, 100);
  await cluster.waitHealthy(60_000);
  log(`failover: replica promoted, cluster ok after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await victim.restart();
  await waitFor(`:${victim.port} back as a replica`, async () => {
    const info = await victim.cli('INFO', 'replication');
    return info.includes('role:slave') && info.includes('master_link_status:up');
  }, 60_000, 200);
  log(`failover: :${victim.port} rejoined as a replica after ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

interface Sample {
  atS: number;
  rssMiB: number[];
  answers: number;
  rate: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  statuses: Record<string, number>;
  requestErrors: number;
  errorKinds: Record<string, number>;
  events: string[];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rl-soak-'));
  const configFile = join(dir, 'soak.yaml');
  writeFileSync(configFile, rules(0));
  const cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: CLUSTER_NODE_TIMEOUT_MS });
  const servers: ServerProcess[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    for (let i = 0; i < SIDECARS; i++) servers.push(await spawnServer(['--config', configFile, '--redis-cluster', cluster.seeds]));
    console.log(`soak: ${SIDECARS} sidecars (pids ${servers.map((s) => s.child.pid).join(', ')}), Redis Cluster 3 masters + 3 replicas (cluster-node-timeout ${CLUSTER_NODE_TIMEOUT_MS} ms)`);

    const saturation = await Promise.all(servers.map((s) => load(s, SATURATION_S, undefined)));
    const saturationRate = saturation.reduce((sum, r) => sum + r.requests.average, 0);
    const rate = Math.round(saturationRate * LOAD_SHARE);
    console.log(`soak: saturation ${Math.round(saturationRate)} req/s (both sidecars, ${SATURATION_S} s closed loop); soaking at ${rate} req/s for ${MINUTES} min`);

    const sink = { current: newInterval() };
    const events: string[] = [];
    const samples: Sample[] = [];
    const started = Date.now();
    const elapsedS = (): number => (Date.now() - started) / 1000;
    const log = (event: string): void => {
      events.push(event);
      console.log(`  [${elapsedS().toFixed(0)} s] ${event}`);
    };
    const durationS = MINUTES * 60;
    const loads = servers.map((s) => load(s, durationS, Math.round(rate / SIDECARS), sink));

    let reloads = 0;
    const reloadTimer = setInterval(() => {
      reloads++;
      const invalid = reloads % 5 === 0;
      writeFileSync(configFile, invalid ? rules(reloads).replace('requests_per_unit: 100', 'requests_per_unit: -1') : rules(reloads));
      log(`reload ${reloads}${invalid ? ' (invalid: must be refused)' : ''}`);
    }, RELOAD_S * 1000);
    let failovers = 0;
    let failing: Promise<void> = Promise.resolve();
    const failoverTimer = setInterval(() => {
      failovers++;
      failing = failing.then(() => failover(cluster, log)).catch((error: unknown) => log(`failover FAILED: ${String(error)}`));
    }, FAILOVER_S * 1000);

    const sampleTimer = setInterval(() => {
      const interval = sink.current;
      sink.current = newInterval();
      const sorted = interval.latencies.sort((a, b) => a - b);
      const sample: Sample = {
        atS: Math.round(elapsedS()),
        rssMiB: servers.map((s) => rssMiB(s.child.pid)),
        answers: sorted.length,
        rate: Math.round(sorted.length / SAMPLE_S),
        p50Ms: percentile(sorted, 50),
        p99Ms: percentile(sorted, 99),
        maxMs: round1(sorted.at(-1) ?? Number.NaN),
        statuses: interval.statuses,
        requestErrors: interval.requestErrors,
        errorKinds: interval.errorKinds,
        events: events.splice(0),
      };
      samples.push(sample);
      const other = Object.entries(sample.statuses).filter(([code]) => code !== '200' && code !== '429').map(([code, n]) => `${code}×${n}`).join(' ');
      console.log(`${String(sample.atS).padStart(5)} s  rss ${sample.rssMiB.join('/')} MiB  ${sample.rate} req/s  p50 ${sample.p50Ms} p99 ${sample.p99Ms} max ${sample.maxMs} ms  200 ${sample.statuses['200'] ?? 0} 429 ${sample.statuses['429'] ?? 0}${other === '' ? '' : ` other ${other}`}  errors ${sample.requestErrors}`);
    }, SAMPLE_S * 1000);

    await Promise.all(loads);
    clearInterval(reloadTimer);
    clearInterval(failoverTimer);
    clearInterval(sampleTimer);
    await failing;

    const reloadOk = await Promise.all(servers.map((s) => metric(s, 'ratelimit_config_reloads_total{result="success"}')));
    const reloadFailed = await Promise.all(servers.map((s) => metric(s, 'ratelimit_config_reloads_total{result="failure"}')));
    const steady = samples.filter((s) => s.atS > 60);
    const p99s = steady.map((s) => s.p99Ms).sort((a, b) => a - b);
    const total = (code: string): number => samples.reduce((sum, s) => sum + (s.statuses[code] ?? 0), 0);
    const answers = samples.reduce((sum, s) => sum + s.answers, 0);
    const other = answers - total('200') - total('429');
    const requestErrors = samples.reduce((sum, s) => sum + s.requestErrors, 0);
    const rssFirst = steady[0]?.rssMiB ?? [];
    const rssLast = samples.at(-1)?.rssMiB ?? [];
    const summary = {
      minutes: MINUTES, saturationRate: Math.round(saturationRate), targetRate: rate, answers,
      allowed: total('200'), denied: total('429'), otherStatuses: other, requestErrors,
      failovers, reloads, reloadsApplied: reloadOk, reloadsRefused: reloadFailed,
      p99MedianMs: percentile(p99s, 50), p99WorstMs: p99s.at(-1), maxMs: Math.max(...steady.map((s) => s.maxMs)),
      firstMinuteMaxMs: Math.max(...samples.filter((s) => s.atS <= 60).map((s) => s.maxMs)),
      rssAfterFirstMinuteMiB: rssFirst, rssEndMiB: rssLast,
      rssMaxMiB: servers.map((_, i) => Math.max(...samples.map((s) => s.rssMiB[i]!))),
    };
    console.log('soak summary:', JSON.stringify(summary, null, 2));
    if (process.env.SOAK_OUT !== undefined) writeFileSync(process.env.SOAK_OUT, JSON.stringify({ summary, samples }, null, 2));
    process.exitCode = other === 0 && requestErrors === 0 ? 0 : 1;
  } finally {
    await stopAll();
  }
}

await main();
