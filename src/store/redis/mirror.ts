// The local mirror: what Redis last reported of each key, on the local clock.
import { evaluate, takes, type BatchEvaluation, type BucketState } from '../../core/bucket.js';
import type { BucketOp } from '../../core/types.js';
import type { MemoryStore } from '../memory-store.js';
import type { TakeResult } from './library.js';

/**
 * Records each key's state after a batch Redis decided: the last take on a key
 * decides its state, else the state Redis held (refilled). States move from
 * Redis time onto the local clock at the moment the reply is read — later
 * than Redis computed them, so the local copy refills a little less than
 * Redis: it can only under-estimate the tokens left, never over-estimate.
 */
export function rememberBatch(local: MemoryStore, ops: readonly BucketOp[], result: TakeResult, evaluation: BatchEvaluation): void {
  const localNowUs = local.clock();
  const shiftUs = localNowUs - result.nowUs;
  const committed = result.status === 'committed';
  const seen = ops.length > 1 ? new Set<string>() : undefined;
  for (let i = ops.length - 1; i >= 0; i--) {
    const op = ops[i]!;
    if (op.limit.scope === 'global' || op.limit.algorithm === 'lease') continue; // changed by grants too: not mirrored
    if (seen !== undefined) {
      if (seen.has(op.key)) continue;
      seen.add(op.key);
    }
    let last = -1;
    if (committed) {
      for (let k = i; k >= 0 && last < 0; k--) {
        if (ops[k]!.key === op.key && ops[k]!.cost > 0 && takes(evaluation.plan, evaluation.evaluations, k)) last = k;
      }
    }
    // Every op on a key sees the same batch-start state.
    const after = last >= 0 ? evaluation.evaluations[last]! : evaluate(op.limit, result.states[i]!, result.nowUs, 0);
    local.observe(op.key, shifted(after.next, shiftUs), after.ttlUs, localNowUs);
  }
}

function shifted(state: BucketState | null, shiftUs: number): BucketState | null {
  return state === null ? null : { ...state, tsUs: state.tsUs + shiftUs };
}
