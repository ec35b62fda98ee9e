// What every bucket algorithm is made of, once: its arithmetic (take,
// refund, debit), what it reports, how lua/openclaw.lua names it, what of its
// limit the script reads, and how its state is stored. One module per
// algorithm implements this; core/algorithms/table.ts dispatches to them.
import type { BucketOutcome, LimitSpec } from '../types.js';

/**
 * Stored state of one bucket. For token_bucket: `level` (1/levelPerToken
 * tokens) at time `tsUs`. For fixed_window: `level` = hits counted in the
 * window that starts at `tsUs`. For sliding_window: `level` = hits counted in
 * the window that starts at `tsUs` and `prevLevel` = hits counted in the
 * window before it. A bucket with no state is full (or an empty window).
 */
export interface BucketState {
  level: number;
  tsUs: number;
  /** sliding_window only: hits of the window `[tsUs - unitUs, tsUs)`. */
  prevLevel?: number;
  /**
   * A global limit's home bucket only: what the regions hold in unexpired
   * leases, level units. The bucket refills only up to capacity −
   * outstanding, so bucket plus leases never exceed the burst.
   */
  outstanding?: number;
  /**
   * A bucket with local leases out (store/redis/local-leases.ts): until when
   * `outstanding` holds (the last lease's end); past it the bucket refills to
   * the burst. Absent with `outstanding`: it holds while the state is used.
   */
  outstandingUntilUs?: number;
  /** A region's lease only: tokens spent from it since its last report to the home region. */
  spent?: number;
}

export interface Evaluation {
  /** The outcome when this op's batch commits (an allowed op took its tokens). */
  outcome: BucketOutcome;
  /** The outcome when the batch does not commit: nothing taken, same `allowed`. */
  untaken: BucketOutcome;
  /**
   * State to store when this op is allowed and its batch commits; null = delete
   * (bucket full again / window empty). When not committed, nothing is written:
   * the stored state already implies the same refill.
   */
  next: BucketState | null;
  /** How long `next` must live (µs) before the bucket would be full anyway. */
  ttlUs: number;
  /**
   * The op writes `next` whatever its batch decides: a charge on a token
   * budget (overdraft-bucket.ts) or of a report (core/bucket.ts). Never
   * given back when another part of the request denies.
   */
  always?: true;
}

export interface AlgorithmModule {
  /** Its entry in lua/openclaw.lua's ALGORITHMS table. */
  readonly code: string;
  /** What the script reads of a limit after the code, in the order its ALGORITHMS entry reads them. */
  limitArgs(limit: LimitSpec): string[];
  /** Evaluates one op at `nowUs` without deciding whether its batch commits. Pure, integers below 2^53 only. */
  evaluate(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): Evaluation;
  /**
   * Gives back `cost` that a committed take wrote (`chargedStartUs`: the
   * state timestamp it wrote); undefined when nothing changes, null = the
   * key is deleted (full again). Never more
   * than was taken: under-admission is possible, over-admission is not.
   */
  refund(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number, chargedStartUs: number): BucketState | null | undefined;
  /** Takes `cost` unconditionally (admissions Redis did not see); undefined when nothing changes, null = deleted. */
  debit(limit: LimitSpec, state: BucketState | null, nowUs: number, cost: number): BucketState | null | undefined;
  /** The state from the three integers a `take` reply carries per op (level, tsUs, extra). */
  fromReply(level: number, tsUs: number, extra: number): BucketState;
  /** The state from the integers of its stored text (see parseStoredState). */
  fromStored(fields: readonly number[]): BucketState;
  /** Whether the local mirror may keep this bucket: false when it also changes by grants (global limits). */
  readonly mirrored: boolean;
}

export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

/** The script's stored text of a state: integers joined by ':' (see lua/openclaw.lua "State per key"); null = none. */
export function parseStoredState(text: string | null): number[] | null {
  // A token budget's level may be negative.
  if (text === null || !/^-?\d+(:\d+)*$/.test(text)) return null;
  return text.split(':').map(Number);
}
