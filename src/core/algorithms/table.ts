// The one table of bucket algorithms: every store, the local mirror and the
// Redis script's encoding find an algorithm's arithmetic here. Adding one is
// a module beside these (its arithmetic, whole), its row here, its entry in
// lua/openclaw.lua's ALGORITHMS, and its name: in the config schema, the
// Algorithm type (core/types.ts) and its key tag (core/limit.ts KEY_TAG; the
// compiler refuses a Record that lacks it). A limit whose numbers need a scale
// of their own (token buckets' ticks, sliding windows' tick) adds it in
// core/limit.ts; token-bucket-only options (burst, scope: global, overdraft)
// are checked in config/compile-domain.ts.
import type { BucketState } from '../bucket.js';
import type { BucketOutcome, LimitSpec } from '../types.js';
import { parseStoredState, type AlgorithmModule } from './algorithm.js';
import { fixedWindow } from './fixed-window.js';
import { homeBucket } from './home-bucket.js';
import { lease } from './lease.js';
import { overdraftBucket } from './overdraft-bucket.js';
import { slidingWindow } from './sliding-window.js';
import { tokenBucket } from './token-bucket.js';

const ALGORITHMS: Readonly<Record<LimitSpec['algorithm'], AlgorithmModule>> = Object.freeze({
  token_bucket: tokenBucket,
  fixed_window: fixedWindow,
  sliding_window: slidingWindow,
  home_bucket: homeBucket,
  lease,
});

/** A limit's module: its algorithm's, or a token budget's (`overdraft: true` on a token bucket). */
export function algorithmOf(limit: LimitSpec): AlgorithmModule {
  return limit.overdraft ? overdraftBucket : ALGORITHMS[limit.algorithm];
}

/**
 * What a bucket holds at `nowUs`, from its stored text (null = no key: full),
 * as a check-only request would report it. Pure; changes nothing.
 */
export function inspectStoredState(limit: LimitSpec, text: string | null, nowUs: number): BucketOutcome {
  return algorithmOf(limit).evaluate(limit, storedState(limit, text), nowUs, 0).outcome;
}

/** The state a key's stored text stands for (null: no key, or text the script would not read: full). */
export function storedState(limit: LimitSpec, text: string | null): BucketState | null {
  const fields = parseStoredState(text);
  return fields === null ? null : algorithmOf(limit).fromStored(fields);
}
