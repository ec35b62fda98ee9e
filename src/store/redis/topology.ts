// Which node serves what: one address for a single node, the slot map for a Cluster.
import type { Cluster, Redis } from 'ioredis';
import type { BucketOp } from '../../core/types.js';
import { StoreCallError } from '../../errors.js';
import type { RedisConnection } from './connection.js';
import { clusterSlot } from './cluster-slot.js';
import { groupByNode, groupBySlot, type OpGroup, type SlotMap } from './node-groups.js';

/** Hash tags tried to find one whose slot a master serves (a master serving any slot has one among the first few hundred). */
const MAX_PROBE_TAGS = 100_000;

export class Topology {
  private refreshing: Promise<void> | undefined;
  /** Per master, a probe key it serves (checked against the slot map before each use). */
  private readonly probeKeys = new Map<string, string>();

  constructor(private readonly connection: RedisConnection) {}

  private get cluster(): Cluster {
    return this.connection.client as Cluster;
  }

  /** The request's ops at `indices` (all of them by default), grouped by the master that serves them. */
  groups(ops: readonly BucketOp[], indices?: readonly number[]): OpGroup[] {
    if (this.connection.mode === 'single') {
      const { address } = this.connection;
      const all = indices === undefined ? allIndices(ops) : [...indices];
      return [{ node: address, queue: address, routingKey: ops[all[0]!]!.key, indices: all }];
    }
    return groupByNode(ops, indices ?? allIndices(ops), this.slots());
  }

  /** The same, one group per slot (for batches that came back MOVED). */
  groupsBySlot(ops: readonly BucketOp[], indices: readonly number[]): OpGroup[] {
    return this.connection.mode === 'single' ? this.groups(ops, indices) : groupBySlot(ops, indices, this.slots());
  }

  /** Current masters ("host:port"); empty while a Cluster has no slot map. */
  masters(): string[] {
    if (this.connection.mode === 'single') return [this.connection.address];
    return [...new Set(this.slots().map((nodes) => nodes?.[0]).filter((node): node is string => node !== undefined))];
  }

  /** The master serving `key` now (undefined while a Cluster has no slot map). */
  nodeOf(key: string): string | undefined {
    return this.connection.mode === 'single' ? this.connection.address : this.slots()[clusterSlot(key)]?.[0];
  }

  /** The connection to each current master, by name (the single node's client itself). */
  masterClients(): { node: string; client: Redis }[] {
    if (this.connection.mode === 'single') return [{ node: this.connection.address, client: this.connection.client as Redis }];
    const masters = new Set(this.masters());
    return this.cluster.nodes('master')
      .map((client) => ({ node: `${client.options.host}:${client.options.port}`, client }))
      .filter(({ node }) => masters.has(node));
  }

  /** Asks the cluster for its slot map again (at most one refresh at a time). */
  refresh(): Promise<void> {
    if (this.connection.mode !== 'cluster') return Promise.resolve();
    if (this.refreshing === undefined) {
      const refreshing = new Promise<void>((resolve) => this.cluster.refreshSlotsCache(() => resolve()));
      this.refreshing = refreshing;
      void refreshing.then(() => {
        if (this.refreshing === refreshing) this.refreshing = undefined;
      });
    }
    return this.refreshing;
  }

  /**
   * A key under `prefix` (so the ACL's key patterns apply to it as to the
   * buckets) whose slot `node` serves; throws StoreCallError when `node`
   * serves no slot now. Nothing is ever written to it.
   */
  probeKey(node: string, prefix: string): string {
    if (this.connection.mode === 'single') return `${prefix}{probe}`;
    const slots = this.slots();
    const known = this.probeKeys.get(node);
    if (known !== undefined && slots[clusterSlot(known)]?.[0] === node) return known;
    if (this.masters().includes(node)) for (let tag = 0; tag < MAX_PROBE_TAGS; tag++) {
      const key = `${prefix}{probe-${tag}}`;
      if (slots[clusterSlot(key)]?.[0] !== node) continue;
      this.probeKeys.set(node, key);
      return key;
    }
    throw new StoreCallError(`redis ${node} serves no slot`, { countsAsFailure: false });
  }

  private slots(): SlotMap {
    return this.cluster.slots ?? [];
  }
}

/** 0 … ops.length − 1: every op of a request. */
function allIndices(ops: readonly BucketOp[]): number[] {
  return ops.length === 1 ? [0] : ops.map((_, i) => i);
}
