import t from 'tap';
import { compileLimit } from '../../../src/core/limit.js';
import { inspectStoredState } from '../../../src/core/algorithms/table.js';
import { checkResponseJson, debtJson } from '../../../src/transport/http/check-response.js';
import type { Decision, DescriptorStatus } from '../../../src/core/types.js';

t.test('a status in debt carries "debt" (whole tokens owed, rounded up); others carry none', async (t) => {
  const base: DescriptorStatus = {
    code: 'OVER_LIMIT', limit: { requestsPerUnit: 3600, unit: 'hour', name: undefined, burst: 3600 }, limitRemaining: 0,
    durationUntilResetMs: 5_000_000, retryAfterS: 1400, shadowOverLimit: false, shadow: false, rule: 'tenant',
  };
  const decision: Decision = {
    overallCode: 'OVER_LIMIT', decidedBy: 'store', storeFailure: undefined, shadowOverLimit: false,
    statuses: [{ ...base, debt: 1400 }, { ...base, code: 'OK', retryAfterS: 0, limitRemaining: 5 }],
  };
  t.same(JSON.parse(checkResponseJson(decision)).statuses.map((s: { debt?: number }) => s.debt), [1400, undefined]);
  t.equal(debtJson({}), '');
  t.equal(debtJson({ debt: 0 }), ',"debt":0', 'exactly zero: in debt of nothing, still reported');
});

t.test('debtJson reads a stored bucket as inspect sees it (inspectStoredState)', async (t) => {
  const limit = compileLimit({ requestsPerUnit: 3600, unit: 'hour', overdraft: true });
  const now = 1_700_000_000_000_000;
  // 1400.5 tokens owed at `now`: rounded up to 1401.
  const outcome = inspectStoredState(limit, `-1400500000:${now}`, now);
  t.match(outcome, { allowed: false, remaining: 0, debt: 1401 });
  t.equal(debtJson(outcome), ',"debt":1401');
  t.equal(debtJson(inspectStoredState(limit, null, now)), '', 'a full budget owes nothing');
});
