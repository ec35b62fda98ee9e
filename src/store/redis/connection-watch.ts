// The connection's own events, read for node health: a closed connection or
// a refused connect opens the node's breaker at once (a dead master's keys go
// to the failure policy from the first request, not after five failed
// decisions), every (re)connect is checked at once with the script itself,
// and a refused password is a misconfiguration, not an outage.
import type { Cluster, Redis } from 'ioredis';
import { StoreCallError } from '../../errors.js';
import type { RedisConnection } from './connection.js';
import { misconfigurationOf } from './misconfiguration.js';
import type { NodeHealth } from './node-health.js';
import type { Topology } from './topology.js';

export interface ConnectionWatchOptions {
  readonly connection: RedisConnection;
  readonly topology: Topology;
  readonly health: NodeHealth;
  /** The connect check of `node`: resolves when decisions can run there, rejects as they would fail. */
  check(node: string): Promise<unknown>;
  closed(): boolean;
}

const closedConnection = (): StoreCallError => new StoreCallError('redis connection closed');

/** Subscribes node health to the connection's events (for the connection's life). */
export function watchConnection(options: ConnectionWatchOptions): void {
  const { connection, topology, health, closed } = options;
  const checkNode = (node: string): void => {
    if (closed()) return;
    options.check(node).then(() => health.success(node), (error: unknown) => {
      if (!closed()) health.failure(node, error);
    });
  };
  if (connection.mode === 'single') {
    // Through Sentinels too: the node is the master role, whichever server holds it.
    const node = connection.address;
    connection.client.on('error', (error: unknown) => {
      if (!closed()) health.failure(node, error);
    });
    connection.client.on('close', () => {
      if (!closed()) health.failure(node, closedConnection());
    });
    connection.client.on('ready', () => checkNode(node));
    return;
  }
  const cluster = connection.client as Cluster;
  const isMaster = (node: string): boolean => topology.masters().includes(node);
  cluster.on('ready', () => {
    for (const node of topology.masters()) checkNode(node);
  });
  cluster.on('+node', (redis: Redis) => {
    const node = nodeName(redis);
    // A node connects before the Cluster is ready (its first slot map): the Cluster's own 'ready' checks it then.
    redis.on('ready', () => {
      if (cluster.status === 'ready' && isMaster(node)) checkNode(node);
    });
  });
  cluster.on('-node', (redis: Redis) => {
    const node = nodeName(redis);
    if (!closed() && isMaster(node)) health.failure(node, closedConnection());
  });
  cluster.on('node error', (error: unknown, node: string) => {
    if (closed()) return;
    // Before the first slot map (a refused password at connect) only a misconfiguration is news.
    if (isMaster(node) || (topology.masters().length === 0 && misconfigurationOf(error) !== undefined)) health.failure(node, error);
  });
}

function nodeName(redis: Redis): string {
  return `${redis.options.host}:${redis.options.port}`;
}
