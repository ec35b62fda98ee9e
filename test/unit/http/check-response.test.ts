import t from 'tap';
import fastJson from 'fast-json-stringify';
import type { Decision, DescriptorStatus, ReportedLimit } from '../../../src/core/types.js';
import { checkResponseJson } from '../../../src/transport/http/check-response.js';

// POST /v1/check bodies are written as text by checkResponseJson. Before,
// fastify serialized this object with this schema (fast-json-stringify):
// the bytes must be the same.
const CHECK_RESPONSE_SCHEMA: Parameters<typeof fastJson>[0] = {
  type: 'object',
  properties: {
    overall_code: { type: 'string' },
    statuses: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          code: { type: 'string' },
          limit: {
            anyOf: [
              { type: 'null' },
              {
                type: 'object',
                properties: {
                  requests_per_unit: { type: 'integer' },
                  unit: { type: 'string' },
                  burst: { type: 'integer' },
                  unit_multiplier: { type: 'integer' },
                  name: { type: 'string' },
                },
                required: ['requests_per_unit', 'unit', 'burst'],
              },
            ],
          },
          limit_remaining: { type: 'integer' },
          duration_until_reset_ms: { type: 'integer' },
          retry_after_s: { type: 'integer' },
          unsatisfiable: { type: 'boolean' },
        },
        required: ['code', 'limit', 'limit_remaining', 'duration_until_reset_ms'],
      },
    },
  },
  required: ['overall_code', 'statuses'],
};

function statusBody(decision: Decision): unknown {
  return {
    overall_code: decision.overallCode,
    statuses: decision.statuses.map((status) => ({
      code: status.code,
      limit: status.limit === null
        ? null
        : {
            requests_per_unit: status.limit.requestsPerUnit,
            unit: status.limit.unit,
            burst: status.limit.burst,
            ...(status.limit.unitMultiplier === undefined ? {} : { unit_multiplier: status.limit.unitMultiplier }),
            ...(status.limit.name === undefined ? {} : { name: status.limit.name }),
          },
      limit_remaining: status.limitRemaining,
      duration_until_reset_ms: status.durationUntilResetMs,
      ...(status.code === 'OVER_LIMIT' ? { retry_after_s: status.retryAfterS } : {}),
      ...(status.unsatisfiable === true ? { unsatisfiable: true } : {}),
    })),
  };
}

const serialize = fastJson(CHECK_RESPONSE_SCHEMA);

const limits: (ReportedLimit | null)[] = [
  null,
  Object.freeze({ requestsPerUnit: 1000, unit: 'second', name: undefined, burst: 1000 }),
  Object.freeze({ requestsPerUnit: 100, unit: 'minute', unitMultiplier: 5, name: '100/5m', burst: 100 }),
  Object.freeze({ requestsPerUnit: 6, unit: 'minute', name: 'say "hi" \\ 50% café 😀 \u0001 \u2028', burst: 6 }),
  { requestsPerUnit: 0, unit: 'day', name: 'not frozen', burst: 0 },
  Object.freeze({ requestsPerUnit: 4_294_967_295, unit: 'year', name: '', burst: 9_007_199_254_740_991 }),
];

function status(i: number): DescriptorStatus {
  const over = i % 3 === 1;
  return {
    code: over ? 'OVER_LIMIT' : 'OK',
    limit: limits[i % limits.length]!,
    limitRemaining: [0, 7, 4_294_967_295, 12.7][i % 4]!,
    durationUntilResetMs: [0, 1, 999, 86_400_000, 3.2][i % 5]!,
    retryAfterS: over ? 1 + (i % 60) : 0,
    shadowOverLimit: false,
    shadow: i % 7 === 0,
    rule: 'r',
    ...(i % 5 === 4 ? { unsatisfiable: true } : {}),
  };
}

t.test('the /v1/check body is byte for byte what the compiled schema serializer wrote', async (t) => {
  let compared = 0;
  for (let n = 0; n < 6; n++) {
    for (let offset = 0; offset < 40; offset++) {
      const statuses = Array.from({ length: n }, (_, i) => status(i + offset));
      for (const overallCode of ['OK', 'OVER_LIMIT'] as const) {
        const decision: Decision = { overallCode, statuses, decidedBy: 'store', storeFailure: undefined, shadowOverLimit: false };
        t.equal(checkResponseJson(decision), serialize(statusBody(decision)), `${n} statuses from ${offset}, ${overallCode}`);
        compared++;
      }
    }
  }
  t.ok(compared > 400);
});

t.test('the same limit written twice gives the same text (the per-limit cache)', async (t) => {
  const decision: Decision = { overallCode: 'OK', statuses: [status(1), status(1)], decidedBy: 'store', storeFailure: undefined, shadowOverLimit: false };
  t.equal(checkResponseJson(decision), checkResponseJson(decision));
  t.equal(checkResponseJson(decision), serialize(statusBody(decision)));
});
