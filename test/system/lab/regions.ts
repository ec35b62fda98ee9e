/**
 * The multi-region lab (SPEC §11): every region has its own Redis (a single
 * redis-server, or a Redis Cluster for `clusterRegion`) and its own sidecars;
 * regions reach each other's Redis only through delay proxies (60 ms one way
 * by default), which can be cut and healed per ordered pair of regions.
 *
 * Redis Cluster through proxies. A cluster client learns node addresses from
 * CLUSTER SLOTS and MOVED/ASK, which give the nodes' real addresses: a client
 * in region a that was only given proxy seeds would go straight to the real
 * nodes after its first slot refresh. Announcing proxy addresses
 * (cluster-announce-*) cannot work either: one announced address for every
 * region. The lab uses NAT-style mapping on the client side, per region:
 * region X's view of region c is one proxy per c node, and X's address of c
 * carries the mapping "real node address > X's proxy for it", which ioredis
 * applies to CLUSTER SLOTS and to MOVED/ASK (`natMap`). The address format
 * (see formatRegionAddress) is what the product must accept in --regions:
 *
 *   c=redis-cluster://127.0.0.1:41001,127.0.0.1:41002?nat=127.0.0.1:7001>127.0.0.1:41001,127.0.0.1:7002>127.0.0.1:41002
 *
 * Each region's proxies connect to the other regions' Redis from a loopback
 * address of their own (127.0.0.11 for the first region, .12, ...), so the
 * CLIENT LIST of any node says which region every connection came from, and
 * a direct (bypassing) connection from another region shows up as 127.0.0.1.
 * The lab's redis-servers run with --protected-mode no for that (loopback only).
 */
import { Agent } from 'node:http';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { startDelayProxy, type DelayProxy, type DelayProxyStats, type HealOptions } from '../../helpers/delay-proxy.js';
import { spawnServer, type ServerProcess } from '../../helpers/process.js';
import { startRedis, startRedisCluster, type RedisClusterHandle, type RedisNode, type Teardown } from '../../helpers/redis.js';
import type { Descriptor } from '../scenarios/lib.js';
import { LAB_DOMAIN, checkBody, postCheck, type CheckAnswer, type LoadTargets } from './load.js';


const LOOPBACK = '127.0.0.1';
const DEFAULT_DELAY_MS = 60;
const SIDECAR_START_TIMEOUT_MS = 30_000;
const CLIENT_COMMAND_TIMEOUT_MS = 2_000;

/**
 * The lab's default rules (domain `lab`). `scope` sits in `rate_limit`, next
 * to the numbers it qualifies; pass `configYaml` if the product places it
 * elsewhere.
 */
const LAB_CONFIG_YAML = [
  `domain: ${LAB_DOMAIN}`,
  'descriptors:',
  '  # one budget shared by every region',
  '  - key: global_key',
  '    rate_limit: { unit: second, requests_per_unit: 100, burst: 100, scope: global }',
  '  # one budget per region (today\'s behaviour, the default scope)',
  '  - key: region_key',
  '    rate_limit: { unit: second, requests_per_unit: 100, burst: 100 }',
  '',
].join('\n');

/**
 * Rules today's product accepts (no `scope`): every limit is per region. For
 * baseline runs with `multiRegionFlags: false`.
 */
export const LAB_BASELINE_CONFIG_YAML = [
  `domain: ${LAB_DOMAIN}`,
  'descriptors:',
  '  - key: region_key',
  '    rate_limit: { unit: second, requests_per_unit: 100, burst: 100 }',
  '',
].join('\n');

// ---- the address of a region's Redis, as --regions carries it ----------------

interface HostPort {
  host: string;
  port: number;
}

export type RegionAddress =
  | { kind: 'single'; url: string }
  /** natMap as ioredis takes it: keys `host:port` as the cluster names its nodes (IPv6 unbracketed). */
  | { kind: 'cluster'; seeds: HostPort[]; natMap: Record<string, HostPort> };

function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function parseHostPort(text: string, what: string): HostPort {
  const at = text.lastIndexOf(':');
  const port = Number(text.slice(at + 1));
  const host = text.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  if (at <= 0 || host === '' || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`${what}: "${text}" is not host:port`);
  }
  return { host, port };
}

/**
 * One region's address:
 * - `redis://host:port` (or any --redis URL) for a single node;
 * - `redis-cluster://h:p,h:p[?nat=A>B,A>B]` for a cluster: the seeds, then
 *   optionally the NAT map: each `A>B` says "a node that the cluster calls A
 *   (CLUSTER SLOTS, MOVED, ASK) is reached at B". Host:port pairs; IPv6 in
 *   brackets. Without `nat`, nodes are reached at the addresses the cluster gives.
 */
export function formatRegionAddress(address: RegionAddress): string {
  if (address.kind === 'single') return address.url;
  const seeds = address.seeds.map(formatHostPort).join(',');
  const nat = Object.entries(address.natMap)
    .map(([from, to]) => `${formatHostPort(parseHostPort(from, 'nat entry'))}>${formatHostPort(to)}`).join(',');
  return `redis-cluster://${seeds}${nat === '' ? '' : `?nat=${nat}`}`;
}

/** The inverse of formatRegionAddress; throws on anything else. */
export function parseRegionAddress(text: string): RegionAddress {
  if (text.startsWith('redis://') || text.startsWith('rediss://')) return { kind: 'single', url: text };
  const prefix = 'redis-cluster://';
  if (!text.startsWith(prefix)) throw new Error(`region address "${text}": expected redis://, rediss:// or redis-cluster://`);
  const [seedText = '', query] = text.slice(prefix.length).split('?', 2);
  const seeds = seedText.split(',').map((s) => parseHostPort(s, 'redis-cluster seed'));
  const natMap: Record<string, HostPort> = {};
  if (query !== undefined) {
    if (!query.startsWith('nat=')) throw new Error(`region address "${text}": the only parameter is nat=`);
    for (const pair of query.slice(4).split(',')) {
      const [from, to, extra] = pair.split('>');
      if (from === undefined || to === undefined || extra !== undefined) throw new Error(`nat entry "${pair}": expected A>B`);
      const announced = parseHostPort(from, 'nat entry');
      // ioredis looks a node up as `${host}:${port}`, IPv6 without brackets.
      natMap[`${announced.host}:${announced.port}`] = parseHostPort(to, 'nat entry');
    }
  }
  return { kind: 'cluster', seeds, natMap };
}

/** `a=<address>;b=<address>;...` in the order given. */
function formatRegions(addresses: ReadonlyMap<string, RegionAddress>): string {
  return [...addresses].map(([name, address]) => `${name}=${formatRegionAddress(address)}`).join(';');
}

export function parseRegions(text: string): Map<string, RegionAddress> {
  const result = new Map<string, RegionAddress>();
  for (const entry of text.split(';')) {
    const at = entry.indexOf('=');
    if (at <= 0) throw new Error(`--regions entry "${entry}": expected name=address`);
    result.set(entry.slice(0, at), parseRegionAddress(entry.slice(at + 1)));
  }
  return result;
}

// ---- the lab ---------------------------------------------------------------

interface RegionStore {
  name: string;
  kind: 'single' | 'cluster';
  /** Every node (one for a single Redis). */
  nodes: RedisNode[];
  /** The single node. */
  node: RedisNode | undefined;
  cluster: RedisClusterHandle | undefined;
  /** Direct, as this region's sidecars get it: ['--redis', url] or ['--redis-cluster', seeds]. */
  storeArgs: string[];
  /** Direct address, as in --regions for this region itself. */
  address: RegionAddress;
  /** The loopback address this region's proxies connect from. */
  sourceAddress: string;
}

/** Region `from`'s way to region `to`'s Redis. */
interface Link {
  from: string;
  to: string;
  /** One per node of `to`, in the order of its nodes. */
  proxies: DelayProxy[];
  /** `to`'s address as `from` sees it (through the proxies). */
  address: RegionAddress;
}

interface LabSidecar {
  region: string;
  index: number;
  name: string;
  proc: ServerProcess;
  url: string;
  args: string[];
}

export interface LabOptions {
  t: Teardown;
  delayMs?: number;
  regions?: string[];
  /** The region whose Redis is a cluster; null = none. */
  clusterRegion?: string | null;
  clusterMasters?: number;
  clusterReplicas?: number;
  /** 0 = no sidecars (Redis and proxies only). */
  sidecarsPerRegion?: number;
  configYaml?: string;
  /** More `serve` flags, for every sidecar or per sidecar. */
  extraArgs?: readonly string[] | ((region: string, index: number) => readonly string[]);
  /** Every proxy's cap on bytes queued per connection and direction (see DelayProxyOptions). */
  maxQueuedBytes?: number;
  /**
   * Pass --region and --regions (default true). False starts today's product
   * (each region's sidecars on their own Redis, nothing shared): a baseline
   * with `LAB_BASELINE_CONFIG_YAML`, and a way to run the lab before §11 lands.
   */
  multiRegionFlags?: boolean;
}

interface LinkOptions {
  /** Only `from`'s way to `to`'s Redis; `to` still reaches `from`'s. */
  oneWay?: boolean;
}

export interface Lab extends LoadTargets {
  readonly regions: readonly string[];
  readonly delayMs: number;
  readonly configPath: string;
  readonly domain: string;
  redis(region: string): RegionStore;
  link(from: string, to: string): Link;
  /** The --regions value for sidecars of `region` (its own address direct, the others through its proxies). */
  regionsArg(region: string): string;
  /** Every flag a sidecar of `region` is started with (before extraArgs; spawnServer adds host and ports). */
  sidecarArgs(region: string): string[];
  sidecar(region: string, index?: number): LabSidecar;
  sidecars(region?: string): LabSidecar[];
  /** One more sidecar in `region`. */
  startSidecar(region: string, extraArgs?: readonly string[]): Promise<LabSidecar>;
  /** POST /v1/check on a sidecar of `region` (default its first); a failed request is status 0, a missing sidecar throws. */
  check(region: string, descriptors: readonly Descriptor[], options?: { sidecar?: number; timeoutMs?: number; domain?: string }): Promise<CheckAnswer>;
  /**
   * An ioredis client that reaches `to`'s Redis the way region `from` does
   * (through the proxies, NAT map included; direct when from === to); closed
   * at stop. Commands time out after 2 s; no offline queue.
   */
  client(from: string, to: string): Redis | Cluster;
  /** Partitions `from` and `to` (both ways unless oneWay). */
  cut(from: string, to: string, options?: LinkOptions): Promise<void>;
  heal(from: string, to: string, options?: LinkOptions & HealOptions): Promise<void>;
  /** Cuts `region` off from every other region, both ways. */
  cutRegion(region: string): Promise<void>;
  healRegion(region: string, options?: HealOptions): Promise<void>;
  healAll(options?: HealOptions): Promise<void>;
  /** The links that are cut now, as "from>to". */
  cutLinks(): string[];
  /** Sets the one-way delay of one link (from, to), or of every link. */
  setDelay(ms: number, from?: string, to?: string): void;
  /** The link's proxies' counters, summed. */
  linkStats(from: string, to: string): DelayProxyStats;
  /**
   * Client connections on `region`'s Redis nodes by where they come from:
   * a region's name (through its proxies) or 'direct' (127.0.0.1: the
   * region's own sidecars, or a bypass). redis-cli's own is not counted.
   */
  connectionsBySource(region: string): Promise<Record<string, number>>;
  /** Stops sidecars, clients, proxies, then Redis; idempotent (also run on teardown). */
  stop(): Promise<void>;
}

const liveSidecars = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveSidecars) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Settles every promise; registers nothing on failure but rethrows the first error once all have settled. */
async function allSettledOrThrow<T>(promises: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

export async function startLab(options: LabOptions): Promise<Lab> {
  const { t } = options;
  const delayMs = options.delayMs ?? DEFAULT_DELAY_MS;
  const names = options.regions ?? ['a', 'b', 'c'];
  const clusterRegion = options.clusterRegion === undefined ? 'c' : options.clusterRegion;
  if (new Set(names).size !== names.length || names.some((n) => !/^[a-z0-9][a-z0-9_-]*$/.test(n))) {
    throw new Error(`startLab: region names must be distinct [a-z0-9_-]: ${names.join(',')}`);
  }
  if (names.length > 100) throw new Error('startLab: at most 100 regions');
  if (clusterRegion !== null && !names.includes(clusterRegion)) throw new Error(`startLab: cluster region ${clusterRegion} is not a region`);
  const sourceAddressOf = (index: number): string => `127.0.0.${11 + index}`;

  const stores = new Map<string, RegionStore>();
  const links = new Map<string, Link>();
  const sidecars: LabSidecar[] = [];
  const clients: (Redis | Cluster)[] = [];
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const configDir = mkdtempSync(join(tmpdir(), 'rl-lab-'));
  const configPath = join(configDir, `${LAB_DOMAIN}.yaml`);
  writeFileSync(configPath, options.configYaml ?? LAB_CONFIG_YAML);
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.allSettled(sidecars.map(async (s) => {
        await s.proc.stop('SIGTERM');
        liveSidecars.delete(s.proc.child);
      }));
      for (const client of clients) client.disconnect();
      agent.destroy();
      await Promise.allSettled([...links.values()].flatMap((l) => l.proxies.map((p) => p.close())));
      await Promise.allSettled([...stores.values()].map((s) => (s.cluster !== undefined ? s.cluster.stop() : s.node?.stop())));
      rmSync(configDir, { recursive: true, force: true });
    })();
    return stopping;
  };
  t.teardown(stop);

  const redisArgs = ['--protected-mode', 'no'];
  const started = await allSettledOrThrow(names.map(async (name, index): Promise<RegionStore> => {
    const sourceAddress = sourceAddressOf(index);
    if (name === clusterRegion) {
      const cluster = await startRedisCluster({
        t, masters: options.clusterMasters ?? 3, replicasPerMaster: options.clusterReplicas ?? 0, args: redisArgs,
      });
      const seeds = cluster.nodes.map((n) => ({ host: n.host, port: n.port }));
      return {
        name, kind: 'cluster', nodes: cluster.nodes, node: undefined, cluster,
        storeArgs: ['--redis-cluster', cluster.seeds],
        address: { kind: 'cluster', seeds, natMap: {} },
        sourceAddress,
      };
    }
    const node = await startRedis({ t, args: redisArgs });
    return {
      name, kind: 'single', nodes: [node], node, cluster: undefined,
      storeArgs: ['--redis', node.url], address: { kind: 'single', url: node.url }, sourceAddress,
    };
  })).catch(async (error: unknown) => {
    await stop();
    throw error;
  });
  for (const store of started) stores.set(store.name, store);

  const store = (region: string): RegionStore => {
    const found = stores.get(region);
    if (found === undefined) throw new Error(`no region ${region} (regions: ${names.join(',')})`);
    return found;
  };
  const linkKey = (from: string, to: string): string => `${from}>${to}`;

  try {
    for (const from of names) {
      for (const to of names) {
        if (from === to) continue;
        const target = store(to);
        const proxies: DelayProxy[] = [];
        for (const node of target.nodes) {
          proxies.push(await startDelayProxy({
            t, target: { host: node.host, port: node.port }, delayMs, sourceAddress: store(from).sourceAddress,
            name: `${from}>${to} ${node.host}:${node.port}`,
            ...(options.maxQueuedBytes !== undefined ? { maxQueuedBytes: options.maxQueuedBytes } : {}),
          }));
        }
        const address: RegionAddress = target.kind === 'single'
          ? { kind: 'single', url: `redis://${proxies[0]!.address}` }
          : {
            kind: 'cluster',
            seeds: proxies.map((p) => ({ host: p.host, port: p.port })),
            natMap: Object.fromEntries(target.nodes.map((node, i) => [`${node.host}:${node.port}`, { host: proxies[i]!.host, port: proxies[i]!.port }])),
          };
        links.set(linkKey(from, to), { from, to, proxies, address });
      }
    }
  } catch (error: unknown) {
    await stop();
    throw error;
  }

  const link = (from: string, to: string): Link => {
    const found = links.get(linkKey(from, to));
    if (found === undefined) throw new Error(`no link ${from}>${to} (regions: ${names.join(',')})`);
    return found;
  };
  const regionsArg = (region: string): string => formatRegions(new Map(names.map((name) => [
    name, name === region ? store(name).address : link(region, name).address,
  ])));
  const sidecarArgs = (region: string): string[] => [
    '--config', configPath, ...store(region).storeArgs,
    ...(options.multiRegionFlags === false ? [] : ['--region', region, '--regions', regionsArg(region)]),
  ];
  const extraFor = (region: string, index: number): readonly string[] => {
    const extra = options.extraArgs;
    if (extra === undefined) return [];
    return typeof extra === 'function' ? extra(region, index) : extra;
  };
  const sidecarsOf = (region: string): LabSidecar[] => sidecars.filter((s) => s.region === region);

  const spawnSidecar = async (region: string, index: number, extra: readonly string[]): Promise<LabSidecar> => {
    const args = [...sidecarArgs(region), ...extra];
    const proc = await spawnServer(args, {}, SIDECAR_START_TIMEOUT_MS);
    liveSidecars.add(proc.child);
    void proc.exited.then(() => liveSidecars.delete(proc.child));
    return { region, index, name: `${region}${index}`, proc, url: proc.httpUrl, args };
  };
  const startOne = async (region: string, extra?: readonly string[]): Promise<LabSidecar> => {
    if (stopping !== undefined) throw new Error('the lab is stopped');
    store(region);
    const index = sidecarsOf(region).length;
    const sidecar = await spawnSidecar(region, index, extra ?? extraFor(region, index));
    sidecars.push(sidecar);
    return sidecar;
  };

  const perRegion = options.sidecarsPerRegion ?? 1;
  const spawned = await Promise.allSettled(names.flatMap((region) => Array.from({ length: perRegion }, (_, index) => (
    spawnSidecar(region, index, extraFor(region, index))
  ))));
  for (const result of spawned) if (result.status === 'fulfilled') sidecars.push(result.value);
  const spawnError = spawned.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (spawnError !== undefined) {
    await stop();
    throw spawnError.reason;
  }
  sidecars.sort((x, y) => names.indexOf(x.region) - names.indexOf(y.region) || x.index - y.index);

  const setCut = (from: string, to: string, cut: boolean, heal: HealOptions = {}): void => {
    for (const proxy of link(from, to).proxies) {
      if (cut) proxy.cut();
      else proxy.heal(heal);
    }
  };
  const others = (region: string): string[] => {
    store(region);
    return names.filter((n) => n !== region);
  };

  const lab: Lab = {
    regions: names,
    delayMs,
    configPath,
    domain: LAB_DOMAIN,
    redis: store,
    link,
    regionsArg,
    sidecarArgs,
    sidecar(region, index = 0) {
      const found = sidecarsOf(region)[index];
      if (found === undefined) throw new Error(`no sidecar ${index} in region ${region} (${sidecarsOf(region).length} there)`);
      return found;
    },
    sidecars: (region) => (region === undefined ? [...sidecars] : sidecarsOf(region)),
    startSidecar: startOne,
    urls: (region) => sidecarsOf(region).map((s) => s.url),
    check(region, descriptors, checkOptions = {}) {
      const sidecar = lab.sidecar(region, checkOptions.sidecar ?? 0);
      return postCheck(sidecar.url, checkBody(descriptors, checkOptions.domain ?? LAB_DOMAIN), {
        agent, ...(checkOptions.timeoutMs !== undefined ? { timeoutMs: checkOptions.timeoutMs } : {}),
      });
    },
    client(from, to) {
      if (stopping !== undefined) throw new Error('the lab is stopped');
      const address = from === to ? store(to).address : link(from, to).address;
      const common = {
        lazyConnect: false, enableOfflineQueue: true, maxRetriesPerRequest: 0, commandTimeout: CLIENT_COMMAND_TIMEOUT_MS,
        connectTimeout: 1_000, retryStrategy: () => 100,
      };
      let client: Redis | Cluster;
      if (address.kind === 'single') {
        client = new Redis(address.url, common);
      } else {
        client = new Cluster(address.seeds, {
          natMap: address.natMap,
          redisOptions: common,
          clusterRetryStrategy: () => 100,
          // Long: a test that wants MOVED to happen must not have it pre-empted by a refresh.
          slotsRefreshInterval: 60_000,
          slotsRefreshTimeout: 4 * delayMs + 1_000,
        });
      }
      client.on('error', () => undefined);
      clients.push(client);
      return client;
    },
    async cut(from, to, linkOptions = {}) {
      setCut(from, to, true);
      if (linkOptions.oneWay !== true) setCut(to, from, true);
    },
    async heal(from, to, healOptions = {}) {
      setCut(from, to, false, healOptions);
      if (healOptions.oneWay !== true) setCut(to, from, false, healOptions);
    },
    async cutRegion(region) {
      for (const other of others(region)) await lab.cut(region, other);
    },
    async healRegion(region, healOptions = {}) {
      for (const other of others(region)) await lab.heal(region, other, healOptions);
    },
    async healAll(healOptions = {}) {
      for (const l of links.values()) setCut(l.from, l.to, false, healOptions);
    },
    cutLinks: () => [...links.values()].filter((l) => l.proxies.some((p) => p.isCut)).map((l) => linkKey(l.from, l.to)),
    setDelay(ms, from, to) {
      if ((from === undefined) !== (to === undefined)) throw new Error('setDelay: give both from and to, or neither');
      const chosen = from === undefined ? [...links.values()] : [link(from, to!)];
      for (const l of chosen) for (const proxy of l.proxies) proxy.setDelay(ms);
    },
    linkStats(from, to) {
      const total: DelayProxyStats = { connections: 0, open: 0, bytesToTarget: 0, bytesToClient: 0, bytesQueued: 0, bytesDiscarded: 0, resets: 0 };
      for (const proxy of link(from, to).proxies) {
        const stats = proxy.stats();
        for (const key of Object.keys(total) as (keyof DelayProxyStats)[]) total[key] += stats[key];
      }
      return total;
    },
    async connectionsBySource(region) {
      const bySource = new Map(names.map((name, index) => [sourceAddressOf(index), name]));
      const counts: Record<string, number> = {};
      for (const node of store(region).nodes.filter((n) => n.running)) {
        for (const line of (await node.cli('CLIENT', 'LIST')).split('\n')) {
          const addr = / addr=([^ ]+):\d+ /.exec(` ${line}`)?.[1];
          if (addr === undefined || line.includes('cmd=client|list')) continue;
          const source = addr === LOOPBACK ? 'direct' : bySource.get(addr) ?? addr;
          counts[source] = (counts[source] ?? 0) + 1;
        }
      }
      return counts;
    },
    stop,
  };
  return lab;
}
