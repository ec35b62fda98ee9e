// redis-server processes for the bench: one single node and one 3-master
// cluster (no replicas), on free loopback ports in temp dirs, no persistence.
import { connect } from 'node:net';
import { redisCpuSeconds } from './cost.js';
import { freePorts, makeTempDir, removeTempDir, runCommand, sleep, spawnChild, stopChild, waitForPort, type Child } from './procs.js';

export interface RedisDeployment {
  /** What to pass to our server: ['--redis', url] or ['--redis-cluster', list]. */
  readonly serverArgs: string[];
  /** Every master's port (commandstats are summed over these). */
  readonly masterPorts: number[];
  /** redis-server process ids (for CPU accounting). */
  readonly pids: number[];
  /** Redis CPU seconds per second with no client load, all masters (serverCron, cluster bus); run.ts measures it once. */
  idleCpuPerS?: number;
  stop(): Promise<void>;
}

const REDIS_START_TIMEOUT_MS = 10000;

function startNode(port: number, dir: string, cluster: boolean): Child {
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning',
  ];
  if (cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '5000');
  return spawnChild(`redis-server:${port}`, 'redis-server', args);
}

/** A single redis-server. Throws when it cannot start. */
export async function startSingleRedis(): Promise<RedisDeployment> {
  const dir = makeTempDir('rl-bench-redis-');
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error('no free port');
  const node = startNode(port, dir, false);
  try {
    await waitForPort(port, REDIS_START_TIMEOUT_MS, node);
  } catch (error: unknown) {
    await stopChild(node);
    removeTempDir(dir);
    throw error;
  }
  return {
    serverArgs: ['--redis', `redis://127.0.0.1:${port}`],
    masterPorts: [port],
    pids: node.proc.pid === undefined ? [] : [node.proc.pid],
    async stop() {
      await stopChild(node);
      removeTempDir(dir);
    },
  };
}

/** Three cluster-enabled masters joined with `redis-cli --cluster create`; waits for cluster_state:ok. */
export async function startRedisCluster(masters = 3): Promise<RedisDeployment> {
  const dir = makeTempDir('rl-bench-cluster-');
  const ports = await freePorts(masters, true);
  const nodes = ports.map((port) => startNode(port, dir, true));
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((node) => stopChild(node)));
    removeTempDir(dir);
  };
  try {
    await Promise.all(ports.map((port, i) => waitForPort(port, REDIS_START_TIMEOUT_MS, nodes[i])));
    const create = await runCommand('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    if (create.code !== 0) throw new Error(`redis-cli --cluster create failed:\n${create.stdout}\n${create.stderr}`);
    await waitClusterOk(ports);
  } catch (error: unknown) {
    await stop();
    throw error;
  }
  return {
    serverArgs: ['--redis-cluster', ports.map((p) => `127.0.0.1:${p}`).join(',')],
    masterPorts: ports,
    pids: nodes.flatMap((node) => (node.proc.pid === undefined ? [] : [node.proc.pid])),
    stop,
  };
}

async function waitClusterOk(ports: number[]): Promise<void> {
  const deadline = Date.now() + 15000;
  for (;;) {
    const states = await Promise.all(ports.map(async (port) => (await runCommand('redis-cli', ['-p', String(port), 'cluster', 'info'])).stdout));
    if (states.every((s) => s.includes('cluster_state:ok'))) return;
    if (Date.now() > deadline) throw new Error(`cluster not ok after 15 s:\n${states.join('\n')}`);
    await sleep(100);
  }
}

/** Calls per command (lower-case name) on one node, from INFO commandstats. */
async function commandStats(port: number): Promise<Map<string, number>> {
  const result = await runCommand('redis-cli', ['-p', String(port), 'info', 'commandstats']);
  const stats = new Map<string, number>();
  for (const line of result.stdout.split('\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (match?.[1] !== undefined && match[2] !== undefined) stats.set(match[1].toLowerCase(), Number(match[2]));
  }
  return stats;
}

/** Calls per command summed over all masters. */
export async function clusterCommandStats(ports: readonly number[]): Promise<Map<string, number>> {
  const total = new Map<string, number>();
  for (const stats of await Promise.all(ports.map((port) => commandStats(port)))) {
    for (const [name, calls] of stats) total.set(name, (total.get(name) ?? 0) + calls);
  }
  return total;
}

/** Script calls (EVAL*, EVALSHA*, FCALL*) — each one round trip. */
const SCRIPT_COMMANDS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);
/** Our own monitoring calls, not the server's. */
const BENCH_COMMANDS = new Set(['info']);

export interface CommandDelta {
  /** Every command except our own INFO calls. */
  readonly total: number;
  readonly scripts: number;
  /** Per command name, only non-zero deltas. */
  readonly perCommand: Map<string, number>;
}

export function commandDelta(before: Map<string, number>, after: Map<string, number>): CommandDelta {
  let total = 0;
  let scripts = 0;
  const perCommand = new Map<string, number>();
  for (const [name, calls] of after) {
    const delta = calls - (before.get(name) ?? 0);
    if (delta <= 0 || BENCH_COMMANDS.has(name)) continue;
    perCommand.set(name, delta);
    total += delta;
    if (SCRIPT_COMMANDS.has(name)) scripts += delta;
  }
  return { total, scripts, perCommand };
}

const INFO_CPU_TIMEOUT_MS = 5000;

/**
 * One INFO cpu over a fresh connection (no redis-cli process: the reading is
 * taken as the load starts and should not lag it by a process spawn).
 */
function infoCpu(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let reply = Buffer.alloc(0);
    const socket = connect({ port, host: '127.0.0.1' }, () => socket.write('*2\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n'));
    const timer = setTimeout(() => fail(new Error(`INFO cpu on port ${port}: no reply in ${INFO_CPU_TIMEOUT_MS} ms`)), INFO_CPU_TIMEOUT_MS);
    function fail(error: Error): void {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    }
    socket.on('error', fail);
    socket.on('data', (chunk: Buffer) => {
      reply = Buffer.concat([reply, chunk]);
      const headerEnd = reply.indexOf('\r\n');
      if (headerEnd === -1) return;
      const header = reply.subarray(0, headerEnd).toString();
      if (!header.startsWith('$')) return fail(new Error(`INFO cpu on port ${port}: ${header}`));
      const length = Number(header.slice(1));
      if (reply.length < headerEnd + 2 + length) return;
      clearTimeout(timer);
      socket.end();
      resolve(reply.subarray(headerEnd + 2, headerEnd + 2 + length).toString());
    });
  });
}

/** used_cpu_user + used_cpu_sys (seconds) of each node, in the order given. */
export async function redisCpuReadings(ports: readonly number[]): Promise<number[]> {
  return Promise.all(ports.map(async (port) => redisCpuSeconds(await infoCpu(port))));
}

export async function redisVersion(): Promise<string> {
  const result = await runCommand('redis-server', ['--version']);
  return /v=([\d.]+)/.exec(result.stdout)?.[1] ?? result.stdout.trim();
}
