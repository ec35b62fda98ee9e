// The table of algorithms (core/algorithms/table.ts) and its counterpart in
// lua/openclaw.lua: one entry each, the same codes, and a stored state read
// back the way a check-only request would report it.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { algorithmOf, inspectStoredState } from '../../../src/core/algorithms/table.js';
import { compileLimit } from '../../../src/core/limit.js';
import type { LimitSpec } from '../../../src/core/types.js';

const SECOND_US = 1_000_000;
const NOW_US = 1_700_000_000 * SECOND_US;
const bucket = compileLimit({ requestsPerUnit: 10, unit: 'second', burst: 20 });
const fixed = compileLimit({ requestsPerUnit: 5, unit: 'minute', algorithm: 'fixed_window' });
const sliding = compileLimit({ requestsPerUnit: 4, unit: 'minute', algorithm: 'sliding_window' });
const global = compileLimit({ requestsPerUnit: 10, unit: 'hour', scope: 'global' });
const home: LimitSpec = { ...global, algorithm: 'home_bucket' };
const lease: LimitSpec = { ...global, algorithm: 'lease' };
const budget = compileLimit({ requestsPerUnit: 3600, unit: 'hour', overdraft: true });

t.test('every algorithm has one entry in the script, under the code the table sends', async (t) => {
  const lua = readFileSync(new URL('../../../lua/openclaw.lua', import.meta.url), 'utf8');
  const table = /local ALGORITHMS = \{([^}]*)\}/.exec(lua)?.[1] ?? '';
  const luaCodes = [...table.matchAll(/(\w+) = \w+/g)].map((m) => m[1]).sort();
  const codes = [bucket, fixed, sliding, home, lease, budget].map((limit) => algorithmOf(limit).code).sort();
  t.same(luaCodes, codes, 'lua ALGORITHMS has exactly the codes of core/algorithms');
  t.equal(new Set(codes).size, codes.length, 'no two algorithms share a code');
});

t.test('a stored state reads as a check-only request would report it', async (t) => {
  t.same(inspectStoredState(bucket, null, NOW_US), { allowed: true, remaining: 20, resetUs: 0, retryAfterUs: 0 }, 'no key: a full bucket');
  const level = 5 * bucket.levelPerToken;
  t.match(inspectStoredState(bucket, `${level}:${NOW_US}`, NOW_US), { allowed: true, remaining: 5 }, 'a token bucket level, in tokens');
  const windowStart = Math.floor(NOW_US / fixed.unitUs) * fixed.unitUs;
  t.match(inspectStoredState(fixed, `3:${windowStart}`, NOW_US), { allowed: true, remaining: 2, resetUs: windowStart + fixed.unitUs - NOW_US });
  t.match(inspectStoredState(fixed, `3:${windowStart - fixed.unitUs}`, NOW_US), { remaining: 5 }, 'an old window counts nothing');
  const slidingStart = Math.floor(NOW_US / sliding.unitUs) * sliding.unitUs;
  t.match(inspectStoredState(sliding, `1:${slidingStart}:0`, NOW_US), { remaining: 3 });
  t.match(inspectStoredState(home, `${2 * home.levelPerToken}:${NOW_US}`, NOW_US), { remaining: 2 }, 'a home bucket');
  t.match(inspectStoredState(lease, `4:${NOW_US + SECOND_US}:3:2`, NOW_US), { remaining: 4 }, 'a live lease: its tokens');
  t.match(inspectStoredState(lease, `4:${NOW_US - 1}:3:2`, NOW_US), { remaining: 0 }, 'an expired lease holds nothing');
  t.same(inspectStoredState(budget, `${-1400 * budget.levelPerToken}:${NOW_US}`, NOW_US),
    { allowed: false, remaining: 0, resetUs: 5000 * SECOND_US, retryAfterUs: 1400 * SECOND_US + 1, debt: 1400 }, 'a budget below zero: its debt');
  t.same(inspectStoredState(bucket, 'not a state', NOW_US), inspectStoredState(bucket, null, NOW_US), 'text that is no state of ours reads as none');
});
