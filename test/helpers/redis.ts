/**
 * Real redis-server processes for tests: loopback only, free ports, temp dirs,
 * no persistence. Every process is killed on test teardown and, as a last
 * resort, on process exit. Every wait polls against a deadline.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep, waitFor } from './wait.js';

const REDIS_SERVER = process.env['REDIS_SERVER'] ?? '/usr/bin/redis-server';
const REDIS_CLI = process.env['REDIS_CLI'] ?? 'redis-cli';
const HOST = '127.0.0.1';
const CLUSTER_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 5_000;

/** What the helpers need from a tap test (or nothing). */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

export { sleep, waitFor } from './wait.js';

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

/** Runs redis-cli against a port; resolves with trimmed stdout (bounded by a timeout). */
function redisCli(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(REDIS_CLI, ['-h', HOST, '-p', String(port), '--no-auth-warning', ...args],
      { timeout: CLI_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout, stderr) => {
        if (error !== null) reject(new Error(`redis-cli ${args.join(' ')}: ${error.message} ${stderr}`));
        else resolve(stdout.trim());
      });
  });
}

export interface RedisNode {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** Whether the process is running. */
  readonly running: boolean;
  pid(): number | undefined;
  /** redis-cli against this node. */
  cli(...args: string[]): Promise<string>;
  /** Sends a signal and waits for the process to exit (SIGSTOP/SIGCONT just send). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stops (SIGTERM, then SIGKILL after 3 s) and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Starts the process again on the same port and dir (no persistence: state is gone). */
  restart(): Promise<void>;
}

export interface StartRedisOptions {
  t?: Teardown;
  /** A fixed port (e.g. one reserved with freePort() before Redis may start). */
  port?: number;
  /** Extra redis-server arguments, e.g. ['--requirepass', 'x']. */
  args?: string[];
}

class RedisProcess implements RedisNode {
  readonly host = HOST;
  readonly url: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private removed = false;

  constructor(readonly port: number, readonly dir: string, private readonly args: string[]) {
    this.url = `redis://${HOST}:${port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  pid(): number | undefined {
    return this.child?.pid;
  }

  cli(...args: string[]): Promise<string> {
    return redisCli(this.port, ...args);
  }

  async start(): Promise<void> {
    const child = spawn(REDIS_SERVER, [
      '--port', String(this.port), '--bind', HOST, '--dir', this.dir,
      '--save', '', '--appendonly', 'no', '--daemonize', 'no',
      '--logfile', join(this.dir, 'redis.log'), ...this.args,
    ], { stdio: 'ignore' });
    this.child = child;
    live.add(child);
    this.exited = new Promise((resolve) => child.once('exit', () => {
      live.delete(child);
      resolve();
    }));
    child.once('error', () => live.delete(child));
    await waitFor(`redis-server on port ${this.port}`, async () => {
      if (!this.running) throw new Error(`redis-server exited (see ${this.dir}/redis.log)`);
      const answer = await this.cli('PING');
      return answer === 'PONG' || answer.startsWith('NOAUTH'); // up, with --requirepass
    });
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running) return;
    this.child!.kill(signal);
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') return;
    await Promise.race([this.exited, sleep(3_000)]);
  }

  async stop(): Promise<void> {
    if (this.running) {
      this.child!.kill('SIGCONT');
      this.child!.kill('SIGTERM');
      await Promise.race([this.exited, sleep(3_000)]);
      if (this.running) {
        this.child!.kill('SIGKILL');
        await Promise.race([this.exited, sleep(3_000)]);
      }
    }
    if (!this.removed) {
      this.removed = true;
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  async restart(): Promise<void> {
    await this.kill('SIGKILL');
    await this.start();
  }
}

/** Starts one redis-server (single node). */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisNode> {
  const port = options.port ?? await freePort();
  const node = new RedisProcess(port, mkdtempSync(join(tmpdir(), 'rl-redis-')), options.args ?? []);
  options.t?.teardown(() => node.stop());
  try {
    await node.start();
  } catch (error: unknown) {
    await node.stop();
    throw error;
  }
  return node;
}

interface ClusterNodeInfo {
  node: RedisNode;
  id: string;
  role: 'master' | 'replica';
  /** For replicas: the id of their master. */
  masterId: string | undefined;
}

export interface RedisClusterHandle {
  readonly nodes: RedisNode[];
  /** `host:port,host:port,...` of every node (a seed list). */
  readonly seeds: string;
  /** Current roles, read from CLUSTER NODES of a live node. */
  topology(): Promise<ClusterNodeInfo[]>;
  /** SIGKILLs the master serving `key` (or any master) and returns it. */
  killMaster(key?: string): Promise<RedisNode>;
  /** The live master serving `key`'s slot (waits out a slot migration or a failover still spreading). */
  masterOf(key: string): Promise<ClusterNodeInfo>;
  /**
   * Moves `slots` slots (with their keys) from one master to another with
   * `redis-cli --cluster reshard`, as an operator would; resolves when done.
   */
  reshard(fromId: string, toId: string, slots: number): Promise<void>;
  /** Waits until every live node reports cluster_state:ok and all slots are served by live masters. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface StartClusterOptions {
  t?: Teardown;
  masters?: number;
  replicasPerMaster?: number;
  /** cluster-node-timeout; small so failover tests are quick. */
  nodeTimeoutMs?: number;
  /**
   * cluster-require-full-coverage (default false, as docs/deploy.md recommends):
   * with `yes`, one failed master makes EVERY node refuse with CLUSTERDOWN until
   * its replica is promoted, so healthy shards' keys fail too.
   */
  requireFullCoverage?: boolean;
  /** Extra redis-server arguments for every node, e.g. ['--protected-mode', 'no']. */
  args?: string[];
}

/** Starts masters * (1 + replicasPerMaster) nodes and creates a cluster from them. */
export async function startRedisCluster(options: StartClusterOptions = {}): Promise<RedisClusterHandle> {
  const masters = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 1;
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1_000;
  const nodes: RedisNode[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  options.t?.teardown(stop);
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const busPort = await freePort();
      nodes.push(await startRedis({
        args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
          '--cluster-node-timeout', String(nodeTimeoutMs), '--cluster-port', String(busPort),
          '--cluster-replica-validity-factor', '0', '--cluster-allow-reads-when-down', 'no',
          '--cluster-require-full-coverage', options.requireFullCoverage === true ? 'yes' : 'no', ...(options.args ?? [])],
      }));
    }
    await new Promise<void>((resolve, reject) => {
      execFile(REDIS_CLI, ['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`),
        '--cluster-replicas', String(replicas), '--cluster-yes'],
      { timeout: CLUSTER_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout, stderr) => {
        if (error !== null) reject(new Error(`redis-cli --cluster create: ${error.message}\n${stdout}\n${stderr}`));
        else resolve();
      });
    });
    const handle = makeClusterHandle(nodes, stop);
    await handle.waitHealthy(CLUSTER_TIMEOUT_MS);
    await waitFor('every replica attached', async () => {
      const topology = await handle.topology();
      if (topology.filter((n) => n.role === 'replica').length !== masters * replicas) return false;
      for (const info of topology.filter((n) => n.role === 'replica')) {
        const replication = await info.node.cli('INFO', 'replication');
        if (!replication.includes('master_link_status:up')) return false;
      }
      return true;
    }, CLUSTER_TIMEOUT_MS, 100);
    return handle;
  } catch (error: unknown) {
    await stop();
    throw error;
  }
}

function makeClusterHandle(nodes: RedisNode[], stop: () => Promise<void>): RedisClusterHandle {
  const topology = async (): Promise<ClusterNodeInfo[]> => {
    const alive = nodes.find((n) => n.running);
    if (alive === undefined) throw new Error('no live cluster node');
    const text = await alive.cli('CLUSTER', 'NODES');
    const result: ClusterNodeInfo[] = [];
    for (const line of text.split('\n')) {
      const [id, address, flags, masterId] = line.split(' ');
      if (id === undefined || address === undefined || flags === undefined) continue;
      const port = Number(address.split('@')[0]!.split(':')[1]);
      const node = nodes.find((n) => n.port === port);
      if (node === undefined || flags.includes('fail') || flags.includes('noaddr')) continue;
      const role = flags.includes('master') ? 'master' : 'replica';
      result.push({ node, id, role, masterId: role === 'replica' && masterId !== '-' ? masterId : undefined });
    }
    return result;
  };
  const waitHealthy = async (timeoutMs = CLUSTER_TIMEOUT_MS): Promise<void> => {
    await waitFor('cluster_state:ok on every live node', async () => {
      for (const node of nodes.filter((n) => n.running)) {
        const info = await node.cli('CLUSTER', 'INFO');
        if (!info.includes('cluster_state:ok') || !info.includes('cluster_slots_ok:16384')) return false;
      }
      const liveMasters = (await topology()).filter((n) => n.role === 'master' && n.node.running);
      return liveMasters.length > 0;
    }, timeoutMs, 100);
  };
  /**
   * A plain (non -c) EXISTS answers an integer only on the master that serves
   * the key's slot; the others redirect. While a slot migrates (resharding) or
   * a failover spreads, no master may answer (source: ASK for a key already
   * moved; target: MOVED back until the move ends) or a stale topology may
   * leave the owner out: ask again until exactly one live master answers.
   */
  const masterOf = async (key: string): Promise<ClusterNodeInfo> => {
    let owner: ClusterNodeInfo | undefined;
    await waitFor(`the one live master serving ${key}`, async () => {
      const answers: string[] = [];
      const masters = (await topology()).filter((n) => n.role === 'master' && n.node.running);
      for (const info of masters) answers.push(`:${info.node.port} ${await info.node.cli('EXISTS', key)}`);
      const serving = masters.filter((_, i) => /^:\d+ \d+$/.test(answers[i]!));
      if (serving.length !== 1) throw new Error(`not one master answers (${answers.join(', ')})`);
      owner = serving[0];
      return true;
    }, CLUSTER_TIMEOUT_MS, 50);
    return owner!;
  };
  return {
    nodes,
    seeds: nodes.map((n) => `${HOST}:${n.port}`).join(','),
    topology,
    waitHealthy,
    masterOf,
    reshard(fromId: string, toId: string, slots: number): Promise<void> {
      const seed = nodes.find((n) => n.running)!;
      return new Promise<void>((resolve, reject) => {
        execFile(REDIS_CLI, ['--cluster', 'reshard', `${HOST}:${seed.port}`, '--cluster-from', fromId, '--cluster-to', toId,
          '--cluster-slots', String(slots), '--cluster-yes', '--cluster-pipeline', '5'],
        { timeout: CLUSTER_TIMEOUT_MS * 2, encoding: 'utf8' }, (error, stdout, stderr) => {
          if (error !== null) reject(new Error(`redis-cli --cluster reshard: ${error.message}\n${stdout.slice(-2000)}\n${stderr}`));
          else resolve();
        });
      });
    },
    async killMaster(key?: string): Promise<RedisNode> {
      const victim = key !== undefined
        ? (await masterOf(key)).node
        : (await topology()).find((n) => n.role === 'master' && n.node.running)?.node;
      if (victim === undefined) throw new Error('no live master to kill');
      await victim.kill('SIGKILL');
      return victim;
    },
    stop,
  };
}
