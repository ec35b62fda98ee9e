/**
 * Real redis-server processes for tests: loopback only, free ports, temp dirs,
 * no persistence. Every process is killed on test teardown and, as a last
 * resort, on process exit. Every wait polls against a deadline.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterSlot } from '../../src/store/redis/cluster-slot.js';
import { findTool } from './tools.js';
import { sleep, waitFor } from './wait.js';

const REDIS_SERVER = process.env['REDIS_SERVER'] ?? findTool('redis-server') ?? 'redis-server';
const REDIS_CLI = process.env['REDIS_CLI'] ?? 'redis-cli';
const HOST = '127.0.0.1';
const CLUSTER_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 5_000;
/**
 * redis-cli processes run at once. Hundreds at once (a test asking where 200
 * keys live) made some exit 0 having printed nothing, not even for
 * `--version`: an empty CLUSTER NODES or EXISTS read as "no master".
 */
const CLI_CONCURRENCY = 8;

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

export { sleep, unlessHung, waitFor } from './wait.js';

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

let cliRunning = 0;
const cliWaiting: (() => void)[] = [];

/** Runs redis-cli against a port; resolves with trimmed stdout (bounded by a timeout, and CLI_CONCURRENCY). */
async function redisCli(port: number, ...args: string[]): Promise<string> {
  if (cliRunning >= CLI_CONCURRENCY) await new Promise<void>((resolve) => cliWaiting.push(resolve));
  cliRunning++;
  try {
    return await runRedisCli(port, args);
  } finally {
    cliRunning--;
    cliWaiting.shift()?.();
  }
}

function runRedisCli(port: number, args: string[]): Promise<string> {
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

  /** What start-up waits name (a Sentinel says so). */
  protected readonly label: string = 'redis-server';
  protected readonly logFile: string = 'redis.log';

  /** redis-server's command line. */
  protected serverArgs(): string[] {
    return ['--port', String(this.port), '--bind', HOST, '--dir', this.dir,
      '--save', '', '--appendonly', 'no', '--daemonize', 'no',
      '--logfile', join(this.dir, this.logFile), ...this.args];
  }

  /** Whether a PING answer says the server is up (NOAUTH: up, with --requirepass). */
  protected isUp(answer: string): boolean {
    return answer === 'PONG' || answer.startsWith('NOAUTH');
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
    const child = spawn(REDIS_SERVER, this.serverArgs(), { stdio: 'ignore' });
    this.child = child;
    live.add(child);
    this.exited = new Promise((resolve) => child.once('exit', () => {
      live.delete(child);
      resolve();
    }));
    child.once('error', () => live.delete(child));
    await waitFor(`${this.label} on port ${this.port}`, async () => {
      if (!this.running) throw new Error(`${this.label} exited (see ${this.dir}/${this.logFile})`);
      return this.isUp(await this.cli('PING'));
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

/** Tries to start a server on a port found free; another process may take the port first. */
const START_ATTEMPTS = 5;

/**
 * Starts one redis-server (single node). Without a fixed port, a server that
 * exits at start (its port, or its cluster bus port, was taken between
 * freePort() and its bind: ports found free are handed out to other
 * processes' connections too) is started again on fresh ports.
 */
export async function startRedis(options: StartRedisOptions & { argsFor?: () => Promise<string[]> } = {}): Promise<RedisNode> {
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? await freePort();
    const args = [...(options.args ?? []), ...(options.argsFor === undefined ? [] : await options.argsFor())];
    const node = new RedisProcess(port, mkdtempSync(join(tmpdir(), 'rl-redis-')), args);
    try {
      await node.start();
      options.t?.teardown(() => node.stop());
      return node;
    } catch (error: unknown) {
      const exitedAtStart = !node.running;
      await node.stop();
      if (options.port !== undefined || !exitedAtStart || attempt >= START_ATTEMPTS) throw error;
    }
  }
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
  /** The same for many keys at once (one CLUSTER NODES per master). */
  mastersOf(keys: readonly string[]): Promise<ClusterNodeInfo[]>;
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
      nodes.push(await startRedis({
        args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
          '--cluster-node-timeout', String(nodeTimeoutMs),
          '--cluster-replica-validity-factor', '0', '--cluster-allow-reads-when-down', 'no',
          '--cluster-require-full-coverage', options.requireFullCoverage === true ? 'yes' : 'no', ...(options.args ?? [])],
        argsFor: async () => ['--cluster-port', String(await freePort())],
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
    if (!text.includes('myself')) throw new Error(`CLUSTER NODES on :${alive.port} answered ${JSON.stringify(text)}`);
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
   * The live masters serving `keys`' slots, from CLUSTER NODES of every live
   * master (a few redis-cli calls, however many keys). Asks again while a slot
   * migrates (`[slot->-id]` / `[slot-<-id]`: EXISTS would answer ASK or MOVED
   * on both sides), while the masters disagree (a resharding or a failover
   * still spreading), or while the owner is not a live master yet.
   */
  const mastersOf = async (keys: readonly string[]): Promise<ClusterNodeInfo[]> => {
    const slots = keys.map((key) => clusterSlot(key));
    let owners: ClusterNodeInfo[] = [];
    await waitFor(`the live masters serving ${keys.length} keys`, async () => {
      const masters = (await topology()).filter((n) => n.role === 'master' && n.node.running);
      const views: Map<number, string>[] = [];
      for (const info of masters) {
        const view = slotOwners(await info.node.cli('CLUSTER', 'NODES'));
        if (view === undefined) throw new Error(`:${info.node.port} is migrating slots`);
        views.push(view);
      }
      owners = slots.map((slot) => {
        const ids = new Set(views.map((view) => view.get(slot)));
        const owner = masters.find((info) => info.id === views[0]?.get(slot));
        if (ids.size !== 1 || owner === undefined) throw new Error(`slot ${slot}: masters name ${JSON.stringify([...ids])}`);
        return owner;
      });
      return true;
    }, CLUSTER_TIMEOUT_MS, 50);
    return owners;
  };
  const masterOf = async (key: string): Promise<ClusterNodeInfo> => (await mastersOf([key]))[0]!;
  return {
    nodes,
    seeds: nodes.map((n) => `${HOST}:${n.port}`).join(','),
    topology,
    waitHealthy,
    masterOf,
    mastersOf,
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

/**
 * Slot -> master id from one node's CLUSTER NODES, or undefined while that node
 * migrates or imports a slot (its own line lists `[slot->-id]` or `[slot-<-id]`).
 */
function slotOwners(text: string): Map<number, string> | undefined {
  const owners = new Map<number, string>();
  for (const line of text.split('\n')) {
    const [id, , flags, , , , , , ...ranges] = line.trim().split(' ');
    if (id === undefined || flags === undefined || !flags.includes('master')) continue;
    for (const range of ranges) {
      if (range.startsWith('[')) return undefined;
      const [from, to = from] = range.split('-').map(Number) as [number, number?];
      for (let slot = from; slot <= to; slot++) owners.set(slot, id);
    }
  }
  return owners;
}

// ---------------------------------------------------------------------------
// Redis Sentinel: a master, its replicas and three Sentinels watching it.

const SENTINEL_GROUP_TIMEOUT_MS = 30_000;

/** One `redis-server <config> --sentinel` process (a Sentinel needs a config file it may rewrite). */
class SentinelProcess extends RedisProcess {
  protected override readonly label = 'redis sentinel';
  protected override readonly logFile = 'sentinel.log';

  constructor(port: number, dir: string, configLines: string[], private readonly auth: string[]) {
    super(port, dir, []);
    writeFileSync(join(dir, 'sentinel.conf'), [
      `port ${port}`, `bind ${HOST}`, `dir ${dir}`, `logfile ${join(dir, 'sentinel.log')}`, 'daemonize no', ...configLines, '',
    ].join('\n'));
  }

  protected override serverArgs(): string[] {
    return [join(this.dir, 'sentinel.conf'), '--sentinel'];
  }

  protected override isUp(answer: string): boolean {
    return answer === 'PONG';
  }

  override cli(...args: string[]): Promise<string> {
    return redisCli(this.port, ...this.auth, ...args);
  }
}

export interface SentinelGroupHandle {
  /** The master's name in the Sentinels (`--redis-sentinel-master`). */
  readonly name: string;
  /** The data nodes: the first master, then its replicas. */
  readonly nodes: RedisNode[];
  readonly sentinels: RedisNode[];
  /** `host:port,host:port,host:port` of the Sentinels (`--redis-sentinel`). */
  readonly sentinelAddresses: string;
  /** redis-cli against a data node, authenticated when the group has a password. */
  cli(node: RedisNode, ...args: string[]): Promise<string>;
  /** The data node that the Sentinels name as master now. */
  master(): Promise<RedisNode>;
  /** Waits until every live replica has all that the master has written so far. */
  waitReplicated(timeoutMs?: number): Promise<void>;
  /** Waits until every live Sentinel names a master other than `previous` and it answers as master; returns it. */
  waitForNewMaster(previous: RedisNode, timeoutMs?: number): Promise<RedisNode>;
  /** SENTINEL FAILOVER (a replica is promoted, the old master demoted); resolves with the new master. */
  failover(timeoutMs?: number): Promise<RedisNode>;
  stop(): Promise<void>;
}

export interface StartSentinelGroupOptions {
  t?: Teardown;
  /** The master's name (default `rl-master`). */
  name?: string;
  /** Replicas of the master (default 2). */
  replicas?: number;
  /** `sentinel down-after-milliseconds`: small so a failover starts quickly (default 1000). */
  downAfterMs?: number;
  /** `sentinel failover-timeout` (default 4000). */
  failoverTimeoutMs?: number;
  /** requirepass and masterauth of the data nodes (the Sentinels' auth-pass). */
  password?: string;
  /** requirepass of the Sentinels themselves. */
  sentinelPassword?: string;
}

/**
 * Starts a master, its replicas and three Sentinels (quorum 2) on loopback
 * ports; resolves once every Sentinel sees the master, every replica and
 * the other Sentinels, and a failover could be authorized.
 */
export async function startSentinelGroup(options: StartSentinelGroupOptions = {}): Promise<SentinelGroupHandle> {
  const name = options.name ?? 'rl-master';
  const replicas = options.replicas ?? 2;
  const dataAuth = options.password === undefined ? [] : ['-a', options.password];
  const nodes: RedisNode[] = [];
  const sentinels: SentinelProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all([...sentinels, ...nodes].map((n) => n.stop()));
  };
  options.t?.teardown(stop);
  const cli = (node: RedisNode, ...args: string[]): Promise<string> => node.cli(...dataAuth, ...args);
  const role = async (node: RedisNode): Promise<string | undefined> =>
    /role:(\w+)/.exec(await cli(node, 'INFO', 'replication'))?.[1];
  try {
    const password = options.password === undefined ? [] : ['--requirepass', options.password, '--masterauth', options.password];
    const master = await startRedis({ args: password });
    nodes.push(master);
    for (let i = 0; i < replicas; i++) nodes.push(await startRedis({ args: [...password, '--replicaof', HOST, String(master.port)] }));
    await waitFor('every replica in sync with the master', async () => {
      for (const replica of nodes.slice(1)) {
        if (!(await cli(replica, 'INFO', 'replication')).includes('master_link_status:up')) return false;
      }
      return true;
    }, SENTINEL_GROUP_TIMEOUT_MS, 100);
    const lines = [
      `sentinel monitor ${name} ${HOST} ${master.port} 2`,
      `sentinel down-after-milliseconds ${name} ${options.downAfterMs ?? 1_000}`,
      `sentinel failover-timeout ${name} ${options.failoverTimeoutMs ?? 4_000}`,
      `sentinel parallel-syncs ${name} ${replicas}`,
      ...(options.password === undefined ? [] : [`sentinel auth-pass ${name} ${options.password}`]),
      ...(options.sentinelPassword === undefined ? [] : [`requirepass ${options.sentinelPassword}`]),
    ];
    const sentinelAuth = options.sentinelPassword === undefined ? [] : ['-a', options.sentinelPassword];
    for (let i = 0; i < 3; i++) {
      const sentinel = new SentinelProcess(await freePort(), mkdtempSync(join(tmpdir(), 'rl-sentinel-')), lines, sentinelAuth);
      sentinels.push(sentinel);
      await sentinel.start();
    }
    await waitFor('every Sentinel sees the master, its replicas and the other Sentinels', async () => {
      for (const sentinel of sentinels) {
        const info = await sentinel.cli('INFO', 'sentinel');
        if (!info.includes(`name=${name},status=ok,address=${HOST}:${master.port},slaves=${replicas},sentinels=3`)) return false;
        if (!(await sentinel.cli('SENTINEL', 'CKQUORUM', name)).startsWith('OK')) return false;
      }
      return true;
    }, SENTINEL_GROUP_TIMEOUT_MS, 100);
  } catch (error: unknown) {
    await stop();
    throw error;
  }

  const named = async (sentinel: RedisNode): Promise<RedisNode | undefined> => {
    const [, port] = (await sentinel.cli('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)).split('\n');
    return nodes.find((node) => node.port === Number(port));
  };
  const master = async (): Promise<RedisNode> => {
    const sentinel = sentinels.find((s) => s.running);
    const node = sentinel === undefined ? undefined : await named(sentinel);
    if (node === undefined) throw new Error(`no Sentinel names a master of ${name}`);
    return node;
  };
  const waitForNewMaster = async (previous: RedisNode, timeoutMs = SENTINEL_GROUP_TIMEOUT_MS): Promise<RedisNode> => {
    let promoted: RedisNode | undefined;
    await waitFor(`the Sentinels name a new master of ${name}`, async () => {
      const answers = await Promise.all(sentinels.filter((s) => s.running).map(named));
      const first = answers[0];
      if (first === undefined || first === previous || answers.some((node) => node !== first)) return false;
      if ((await role(first)) !== 'master') return false;
      promoted = first;
      return true;
    }, timeoutMs, 100);
    return promoted!;
  };
  return {
    name,
    nodes,
    sentinels,
    sentinelAddresses: sentinels.map((s) => `${HOST}:${s.port}`).join(','),
    cli,
    master,
    async waitReplicated(timeoutMs = SENTINEL_GROUP_TIMEOUT_MS): Promise<void> {
      const current = await master();
      const offset = Number(/master_repl_offset:(\d+)/.exec(await cli(current, 'INFO', 'replication'))?.[1]);
      await waitFor(`every replica of ${name} at offset ${offset}`, async () => {
        for (const node of nodes.filter((n) => n !== current && n.running)) {
          const replicated = /slave_repl_offset:(\d+)/.exec(await cli(node, 'INFO', 'replication'))?.[1];
          if (replicated === undefined || Number(replicated) < offset) return false;
        }
        return true;
      }, timeoutMs, 50);
    },
    waitForNewMaster,
    async failover(timeoutMs = SENTINEL_GROUP_TIMEOUT_MS): Promise<RedisNode> {
      const previous = await master();
      const sentinel = sentinels.find((s) => s.running)!;
      const answer = await sentinel.cli('SENTINEL', 'FAILOVER', name);
      if (answer !== 'OK') throw new Error(`SENTINEL FAILOVER ${name}: ${answer}`);
      return waitForNewMaster(previous, timeoutMs);
    },
    stop,
  };
}
