// Which Redis master decides which ops of a request.
import type { BucketOp } from '../../core/types.js';
import { clusterSlot } from './cluster-slot.js';

/** Some of a request's ops, sent to one node in one batch. */
export interface OpGroup {
  /** The master serving these keys ("host:port"); for a single node, its address. */
  node: string;
  /** Groups with the same queue may travel in one script call (see batcher.ts). */
  queue: string;
  /** A key of the group, declared in KEYS to route the call. */
  routingKey: string;
  /** Indices into the request's ops. */
  indices: number[];
}

/** The master of each slot, as the client's slot map says (`slots[slot][0]`). */
export type SlotMap = readonly (readonly string[] | undefined)[];

/** The node of keys whose slot has no master in the slot map (none yet: a Cluster not connected). */
export const UNKNOWN_NODE = 'unknown';

/**
 * Groups ops by the master that serves each key's slot, per the slot map. A
 * stale map costs a MOVED batch (sent again), never a wrong decision. The
 * usual request, every key on one master, is one group built without a map.
 */
export function groupByNode(ops: readonly BucketOp[], indices: readonly number[], slots: SlotMap): OpGroup[] {
  const nodeOf = (i: number): string => slots[clusterSlot(ops[i]!.key)]?.[0] ?? UNKNOWN_NODE;
  const first = nodeOf(indices[0]!);
  let same = 1;
  while (same < indices.length && nodeOf(indices[same]!) === first) same++;
  const sole: OpGroup = { node: first, queue: first, routingKey: ops[indices[0]!]!.key, indices: indices.slice(0, same) };
  if (same === indices.length) return [sole];
  const groups = new Map<string, OpGroup>([[first, sole]]);
  for (let k = same; k < indices.length; k++) {
    const i = indices[k]!;
    const node = nodeOf(i);
    const group = groups.get(node);
    if (group === undefined) groups.set(node, { node, queue: node, routingKey: ops[i]!.key, indices: [i] });
    else group.indices.push(i);
  }
  return [...groups.values()];
}

/**
 * Groups ops by slot: for a batch that came back MOVED during a resharding,
 * each slot goes on its own (ioredis follows MOVED/ASK for the declared key,
 * which is then the only slot the batch touches).
 */
export function groupBySlot(ops: readonly BucketOp[], indices: readonly number[], slots: SlotMap): OpGroup[] {
  const groups = new Map<number, OpGroup>();
  for (const i of indices) {
    const key = ops[i]!.key;
    const slot = clusterSlot(key);
    const group = groups.get(slot);
    if (group === undefined) {
      const node = slots[slot]?.[0] ?? UNKNOWN_NODE;
      groups.set(slot, { node, queue: `${node}#${slot}`, routingKey: key, indices: [i] });
    }
    else group.indices.push(i);
  }
  return [...groups.values()];
}
