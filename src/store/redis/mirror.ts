// What a Redis reply means: the reference model's reading of it, and the local
// mirror of what Redis last reported of each key, on the local clock.
import { algorithmOf } from '../../core/algorithms/table.js';
import { chargesAlways, evaluate, evaluateBatch, takes, type BatchEvaluation, type BucketState } from '../../core/bucket.js';
import type { StoreDecision } from '../../core/store.js';
import type { BucketOp } from '../../core/types.js';
import type { MemoryStore } from '../memory-store.js';
import { KeyCounts } from './key-counts.js';
import type { TakeResult } from './library.js';
import type { StoreLogger } from './options.js';

/**
 * The local mirror: every Redis reply (late ones too) records the states of
 * its keys in a MemoryStore, on the local clock. Tokens only refill with time
 * and other sidecars only take more, so a request that those states deny is
 * denied without a call, and the `local` policy decides from what Redis was
 * last known to hold instead of from full buckets. Off (`enabled` false), a
 * reply is still read by the model and nothing is recorded or denied.
 */
export class Mirror {
  /** Per key: policy admissions held for a late reply (see `hold`). */
  private readonly held = new KeyCounts();

  constructor(
    private readonly local: MemoryStore,
    private readonly enabled: boolean,
    private readonly logger: StoreLogger,
    /** Whether a key has policy admissions owed to Redis as debits (written back, or on their way). */
    private readonly owes: (key: string) => boolean = () => false,
  ) {}

  /**
   * The policy admitted `ops` while their call was still with Redis: until
   * its fate is known (`release`), replies about these keys cannot raise the
   * local state (see rememberBatch).
   */
  hold(ops: readonly BucketOp[]): void {
    this.held.add(ops);
  }

  release(ops: readonly BucketOp[]): void {
    this.held.remove(ops);
  }

  /** Whether admissions are held for calls whose late reply (or failure) has not come yet. */
  get holding(): boolean {
    return this.held.size > 0;
  }

  /** A key the local policy admitted on that Redis has not confirmed yet. */
  private unconfirmed(key: string): boolean {
    return this.held.has(key) || this.owes(key);
  }

  /** The decision at once when what Redis last reported already denies `ops`, else undefined (Redis must decide). */
  denial(ops: readonly BucketOp[]): StoreDecision | undefined {
    if (!this.enabled) return undefined;
    // A charge recorded whatever the decision (token budgets, reports) must reach Redis.
    for (const op of ops) if (chargesAlways(op)) return undefined;
    // What Redis last reported, refilled locally, can only have more tokens than Redis has now.
    const known = this.local.peek(ops);
    return known.commits ? undefined : { outcomes: known.outcomes, fallback: undefined, fromMirror: true };
  }

  /**
   * Records what a local lease call found a bucket holding (`tokens`, after
   * its grant): a leased key is rarely decided in Redis, so this keeps what
   * the mirror knows of it (and what the `local` policy starts from) fresh.
   * Not over a key with admissions Redis has not seen (see rememberBatch).
   */
  observeTokens(op: BucketOp, tokens: number): void {
    if (!this.enabled || this.unconfirmed(op.key)) return;
    const nowUs = this.local.clock();
    const after = evaluate(op.limit, { level: tokens * op.limit.levelPerToken, tsUs: nowUs }, nowUs, 0);
    this.local.observe(op.key, after.next, after.ttlUs, nowUs);
  }

  /** Forgets what Redis last reported of these ops' keys (an operator reset them). */
  forget(ops: readonly BucketOp[]): void {
    this.local.reset(ops);
  }

  /** Records the states a reply read (when enabled) and returns the model's reading of the batch. */
  record(ops: readonly BucketOp[], result: TakeResult): BatchEvaluation {
    const evaluation = modelOfReply(ops, result, (model) =>
      this.logger.error({ status: result.status, model }, 'lua/openclaw.lua and core/bucket.ts disagree'));
    if (this.enabled) rememberBatch(this.local, ops, result, evaluation, (key) => this.unconfirmed(key));
    return evaluation;
  }
}

/**
 * The outcomes of a batch Redis decided, computed by the reference model
 * (core/algorithms/, core/bucket.ts) from the states the script read, at Redis's time. The
 * model's commit decision must be Redis's; when it is not (a bug in one of
 * the two), `onMismatch` is told and what Redis did stands — a denial wins:
 * nothing is reported taken that Redis did not take.
 */
function modelOfReply(ops: readonly BucketOp[], result: TakeResult, onMismatch: (modelCommits: boolean) => void): BatchEvaluation {
  const evaluation = evaluateBatch(ops, (i) => result.states[i]!, result.nowUs);
  if (evaluation.commits !== (result.status === 'committed')) {
    onMismatch(evaluation.commits);
    if (result.status === 'denied') {
      evaluation.plan = 'none';
      evaluation.commits = false;
      evaluation.outcomes = evaluation.evaluations.map((e) => ({ ...e.untaken, allowed: false }));
    }
  }
  return evaluation;
}

/**
 * Records each key's state after a batch Redis decided: the last take on a key
 * decides its state, else the state Redis held (refilled). States move from
 * Redis time onto the local clock at the moment the reply is read — later
 * than Redis computed them, so the local copy refills a little less than
 * Redis: it can only under-estimate the tokens left, never over-estimate.
 *
 * A key with policy admissions Redis has not seen yet (`unconfirmed`: held for
 * a late reply, or owed as debits) keeps its local state when that is lower:
 * Redis's state lacks those admissions, and overwriting the local bucket with
 * it would let the policy grant them a second time (measured: a Redis slower
 * than the deadline admitted 260 where 200 were allowed, before this rule).
 */
function rememberBatch(local: MemoryStore, ops: readonly BucketOp[], result: TakeResult, evaluation: BatchEvaluation, unconfirmed: (key: string) => boolean): void {
  const localNowUs = local.clock();
  const shiftUs = localNowUs - result.nowUs;
  const seen = ops.length > 1 ? new Set<string>() : undefined;
  for (let i = ops.length - 1; i >= 0; i--) {
    const op = ops[i]!;
    if (!algorithmOf(op.limit).mirrored) continue; // a global limit's buckets change by grants too
    if (seen !== undefined) {
      if (seen.has(op.key)) continue;
      seen.add(op.key);
    }
    // The last take on the key (a denied batch's `always` charges take too).
    let last = -1;
    for (let k = i; k >= 0 && last < 0; k--) {
      if (ops[k]!.key === op.key && ops[k]!.cost > 0 && takes(evaluation.plan, evaluation.evaluations, k)) last = k;
    }
    // Every op on a key sees the same batch-start state.
    const after = last >= 0 ? evaluation.evaluations[last]! : evaluate(op.limit, result.states[i]!, result.nowUs, 0);
    const next = shifted(after.next, shiftUs);
    if (unconfirmed(op.key) && lowerHere(local, op, next, localNowUs)) continue;
    local.observe(op.key, next, after.ttlUs, localNowUs);
  }
}

/** Whether the local bucket of `op` has fewer tokens left now than `reported` would give. */
function lowerHere(local: MemoryStore, op: BucketOp, reported: BucketState | null, nowUs: number): boolean {
  const probe = { ...op, cost: 0 };
  const here = local.peek([probe]).evaluations[0]!.untaken.remaining;
  return here < evaluate(op.limit, reported, nowUs, 0).untaken.remaining;
}

function shifted(state: BucketState | null, shiftUs: number): BucketState | null {
  return state === null ? null : { ...state, tsUs: state.tsUs + shiftUs };
}
