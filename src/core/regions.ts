// --region / --regions: where each region's Redis is, for limits with scope: global (docs/multi-region.md).
import { SettingsError } from '../errors.js';
import { fnv1a32 } from './keys.js';

export interface RegionAddress {
  name: string;
  /** `redis://…` / `rediss://…` of a single node, or undefined for a Cluster. */
  redis: string | undefined;
  /** Seed nodes `host:port` of a Redis Cluster, or undefined for a single node. */
  redisCluster: readonly string[] | undefined;
  /**
   * A Cluster reached through address translation (a proxy, a NAT): what the
   * cluster announces ("host:port") → where this region connects instead.
   */
  natMap: Readonly<Record<string, { host: string; port: number }>> | undefined;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/i;
const HOST_PORT = /^(\[[0-9a-fA-F:]+\]|[^:\s/]+):(\d{1,5})$/;

function hostPort(text: string, what: string): { host: string; port: number } {
  const match = HOST_PORT.exec(text.trim());
  const port = Number(match?.[2]);
  if (match === null || !(port > 0 && port <= 65535)) throw new SettingsError(`${what}: "${text}" is not host:port`);
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

/**
 * Parses `a=redis://h:6379;b=rediss://h:6380;c=redis-cluster://h1:7000,h2:7001`
 * (a Cluster may add `?nat=announced:port>reached:port,...`). Throws SettingsError
 * with what is wrong. Names are sorted: every sidecar derives the same homes.
 */
export function parseRegions(text: string): RegionAddress[] {
  const regions: RegionAddress[] = [];
  for (const part of text.split(';').map((p) => p.trim()).filter((p) => p !== '')) {
    const at = part.indexOf('=');
    const name = at < 0 ? '' : part.slice(0, at).trim();
    const address = at < 0 ? '' : part.slice(at + 1).trim();
    if (!NAME.test(name)) throw new SettingsError(`"${part}": expected name=address with a name of letters, digits, - or _`);
    if (regions.some((r) => r.name === name)) throw new SettingsError(`region "${name}" is given twice`);
    if (/^rediss?:\/\/[^,\s]+$/.test(address)) {
      regions.push({ name, redis: address, redisCluster: undefined, natMap: undefined });
      continue;
    }
    const cluster = /^redis-cluster:\/\/([^?\s]+)(?:\?nat=(\S+))?$/.exec(address);
    if (cluster === null) {
      throw new SettingsError(`region "${name}": expected redis://host:port, rediss://host:port or redis-cluster://host:port,host:port, got "${address}"`);
    }
    const seeds = cluster[1]!.split(',').filter((s) => s !== '');
    seeds.forEach((seed) => hostPort(seed, `region "${name}"`));
    let natMap: Record<string, { host: string; port: number }> | undefined;
    if (cluster[2] !== undefined) {
      natMap = {};
      for (const pair of cluster[2].split(',')) {
        const [from = '', to = ''] = pair.split('>');
        const announced = hostPort(from, `region "${name}" nat`);
        natMap[`${announced.host}:${announced.port}`] = hostPort(to, `region "${name}" nat`);
      }
    }
    regions.push({ name, redis: undefined, redisCluster: seeds, natMap });
  }
  if (regions.length < 2) throw new SettingsError('give at least two regions (one budget across one region is scope: region)');
  return regions.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The region whose Redis holds a global bucket: a stable hash of its key over the sorted region names. */
export function homeRegion(regions: readonly RegionAddress[], key: string): string {
  return regions[Number.parseInt(fnv1a32(key), 16) % regions.length]!.name;
}
