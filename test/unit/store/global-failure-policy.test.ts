/**
 * The local failure policy and limits with scope: global (SPEC §9, §11).
 * Regression: with every link healthy, a busy machine made calls to a
 * region's own Redis miss their deadline, and the local policy then decided
 * global ops from memory: the home bucket from a full copy of the whole
 * global bucket (global ops are not mirrored), leases from the static share.
 * The regions together admitted 882 in 6 s on a limit of 100/s, burst 100.
 */
import t from 'tap';
import { compileLimit } from '../../../src/core/limit.js';
import type { BucketOp } from '../../../src/core/types.js';
import { StoreCallError } from '../../../src/errors.js';
import { MemoryStore } from '../../../src/store/memory-store.js';
import { FailurePolicy } from '../../../src/store/redis/failure-policy.js';

const global = compileLimit({ requestsPerUnit: 100, unit: 'second', burst: 100, scope: 'global' });
const share = compileLimit({ requestsPerUnit: 33, unit: 'second', burst: 33 });
const regional = compileLimit({ requestsPerUnit: 100, unit: 'second' });
const late = new StoreCallError('redis: take not answered within its 50 ms deadline', { timedOut: true });
const unavailable = new StoreCallError('redis 127.0.0.1:6379 unavailable (circuit open)', { countsAsFailure: false });

/** As store/redis/global-limits.ts routes it in the key's home region: the fallback is the op on the static share. */
function homeOp(shadow = false): BucketOp {
  const op: BucketOp = { key: '{t}k', slotTag: 't', limit: global, cost: 1, shadow };
  return { ...op, key: '{t}k:g', limit: { ...global, algorithm: 'home_bucket' }, fallback: { ...op, key: '{t}k:share:a', limit: share } };
}
const regionalOp: BucketOp = { key: '{t}r', slotTag: 't', limit: regional, cost: 1, shadow: false };

function policy(): FailurePolicy {
  let nowUs = 1_000_000_000;
  return new FailurePolicy('local', new MemoryStore({ maxKeys: 100, clock: () => nowUs++ }), 1);
}

t.test('a global op whose call missed its deadline is denied, not decided from memory (Redis has the call)', async (t) => {
  const p = policy();
  for (let i = 0; i < 50; i++) {
    const decision = p.decide([homeOp()], late);
    t.notOk(decision.commits, `request ${i} denied`);
    t.equal(decision.staticShares, 0, 'and not from the static share');
  }
  const mixed = p.decide([regionalOp, homeOp()], late);
  t.notOk(mixed.commits, 'a request with a regional and a global op is denied as a whole');
  t.ok(mixed.outcomes[0]!.allowed, 'the regional op alone would have been allowed');
  t.notOk(mixed.outcomes[1]!.allowed);
  t.ok(p.decide([homeOp(true)], late).commits, 'a shadow global op still never denies');
});

t.test('a global op whose Redis is unavailable decides from its static share, counted', async (t) => {
  const p = policy();
  let allowed = 0;
  let shares = 0;
  for (let i = 0; i < 50; i++) {
    const decision = p.decide([homeOp()], unavailable);
    if (decision.commits) allowed++;
    shares += decision.staticShares;
  }
  t.equal(allowed, 33, 'the share\'s burst, not the global burst');
  t.equal(shares, 50, 'every one of them a static-share decision');
});

t.test('regional ops are decided locally as before, whatever the error', async (t) => {
  const p = policy();
  t.ok(p.decide([regionalOp], late).commits);
  t.equal(p.decide([regionalOp], late).staticShares, 0);
});

t.test('a request whose groups failed differently: each op is judged by its own group\'s failure', async (t) => {
  const p = policy();
  // Two global ops, homed on two masters: one call missed its deadline, the other master is unavailable.
  const decision = p.decide([homeOp(), homeOp()], late, [true, false]);
  t.notOk(decision.outcomes[0]!.allowed, 'the late group\'s op is denied (Redis has its call)');
  t.ok(decision.outcomes[1]!.allowed, 'the unavailable group\'s op is decided from its static share');
  t.equal(decision.staticShares, 1, 'one static-share decision, not none (the first group\'s error used to judge both)');
});
