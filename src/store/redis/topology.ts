// Which node serves what: one address for a single node, the slot map for a Cluster.
import type { Cluster } from 'ioredis';
import type { BucketOp } from '../../core/types.js';
import { StoreCallError } from '../../errors.js';
import type { RedisConnection } from './connection.js';
import { groupByNode, groupBySlot, type OpGroup, type SlotMap } from './node-groups.js';

export class Topology {
  private refreshing: Promise<void> | undefined;

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

  ping(node: string): Promise<unknown> {
    if (this.connection.mode === 'single') return this.connection.client.ping();
    const target = this.cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === node);
    return target === undefined ? Promise.reject(new StoreCallError(`redis ${node} is not a known master`)) : target.ping();
  }

  private slots(): SlotMap {
    return this.cluster.slots ?? [];
  }
}

/** 0 … ops.length − 1: every op of a request. */
function allIndices(ops: readonly BucketOp[]): number[] {
  return ops.length === 1 ? [0] : ops.map((_, i) => i);
}
