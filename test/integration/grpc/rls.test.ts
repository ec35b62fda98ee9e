import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { InvalidRequestError, StoreUnavailableError } from '../../../src/errors.js';
import {
  FakeDecisionService, call, decision, limitedStatus, noLimitStatus, recordingLogger, rlsRequest, startHarness,
} from '../../helpers/grpc.js';

const SHOULD = 'ShouldRateLimit';

t.test('ShouldRateLimit', async (t) => {
  const service = new FakeDecisionService();
  const logger = recordingLogger();
  const h = await startHarness(service, { logger });
  t.teardown(() => h.close());
  t.beforeEach(() => {
    service.decideCalls = [];
    service.answer = (request) => decision(request.descriptors.map(() => limitedStatus()));
  });

  t.test('an empty domain is INVALID_ARGUMENT naming the field', async (t) => {
    const { error } = await call(h.rls, SHOULD, rlsRequest('', [[['a', 'b']]]));
    t.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    t.match(error?.details, /^domain: must not be empty/);
    t.equal(service.decideCalls.length, 0);
  });

  t.test('an empty descriptor list is INVALID_ARGUMENT', async (t) => {
    const { error } = await call(h.rls, SHOULD, { domain: 'd', descriptors: [] });
    t.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    t.match(error?.details, /^descriptors: must not be empty/);
  });

  t.test('an empty message is INVALID_ARGUMENT', async (t) => {
    const { error } = await call(h.rls, SHOULD, {});
    t.equal(error?.code, grpc.status.INVALID_ARGUMENT);
  });

  t.test('an empty key names descriptor and entry', async (t) => {
    const { error } = await call(h.rls, SHOULD, rlsRequest('d', [[['a', '1']], [['', 'x']]]));
    t.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    t.equal(error?.details, 'descriptors[1].entries[0].key: must not be empty');
  });

  t.test('a descriptor without entries is INVALID_ARGUMENT', async (t) => {
    const { error } = await call(h.rls, SHOULD, { domain: 'd', descriptors: [{ entries: [] }] });
    t.equal(error?.details, 'descriptors[0].entries: must not be empty');
  });

  t.test('an empty value is allowed (Envoy permits it)', async (t) => {
    const { error } = await call(h.rls, SHOULD, rlsRequest('d', [[['a', '']]]));
    t.equal(error, null);
    t.same(service.decideCalls[0]?.request.descriptors[0]?.entries, [{ key: 'a', value: '' }]);
  });

  t.test('bounds: too many descriptors, entries, bytes', async (t) => {
    const many = Array.from({ length: 65 }, (_, i) => [['k', String(i)]] as [string, string][]);
    let r = await call(h.rls, SHOULD, rlsRequest('d', many));
    t.equal(r.error?.code, grpc.status.INVALID_ARGUMENT);
    t.match(r.error?.details, /^descriptors: at most 64/);
    const wide = Array.from({ length: 17 }, (_, i) => ['k' + i, 'v'] as [string, string]);
    r = await call(h.rls, SHOULD, rlsRequest('d', [wide]));
    t.match(r.error?.details, /^descriptors\[0\]\.entries: at most 16/);
    r = await call(h.rls, SHOULD, rlsRequest('d', [[['é'.repeat(2049), 'v']]]));
    t.match(r.error?.details, /^descriptors\[0\]\.entries\[0\]\.key: longer than 4096 bytes/, 'bytes, not characters');
    t.equal(service.decideCalls.length, 0);
  });

  t.test('an over-long VALUE is decided under its digest, not rejected (a rejection would make Envoy fail open)', async (t) => {
    service.decideCalls = [];
    const r = await call(h.rls, SHOULD, rlsRequest('d', [[['api_key', 'v'.repeat(5000)]], [['remote_address', '192.0.2.1']]]));
    t.equal(r.error, null);
    t.equal(service.decideCalls.length, 1, 'decided');
    t.same(service.decideCalls[0]!.request.descriptors.map((d) => d.entries[0]!.value), ['#digest-of-5000', '192.0.2.1']);
  });

  t.test('the request-level hits_addend is passed through (0 included)', async (t) => {
    await call(h.rls, SHOULD, rlsRequest('d', [[['a', 'b']]], 0));
    await call(h.rls, SHOULD, rlsRequest('d', [[['a', 'b']]], 7));
    t.equal(service.decideCalls[0]?.request.hitsAddend, 0);
    t.equal(service.decideCalls[1]?.request.hitsAddend, 7);
    t.equal(service.decideCalls[1]?.api, 'grpc_rls');
  });

  t.test('a per-descriptor hits_addend is set when present, even 0', async (t) => {
    await call(h.rls, SHOULD, {
      domain: 'd',
      hits_addend: 3,
      descriptors: [
        { entries: [{ key: 'a', value: '1' }], hits_addend: { value: 0 } },
        { entries: [{ key: 'b', value: '2' }] },
        { entries: [{ key: 'c', value: '3' }], hits_addend: { value: '5' } },
      ],
    });
    const request = service.decideCalls[0]?.request;
    t.equal(request?.hitsAddend, 3);
    t.equal(request?.descriptors[0]?.hitsAddend, 0, 'check only');
    t.notOk(request?.descriptors[1] && 'hitsAddend' in request.descriptors[1], 'absent stays absent');
    t.equal(request?.descriptors[2]?.hitsAddend, 5);
  });

  t.test('a uint64 hits_addend above 2^32-1 is INVALID_ARGUMENT, without precision loss', async (t) => {
    for (const value of ['4294967296', '18446744073709551615']) {
      const { error } = await call(h.rls, SHOULD, {
        domain: 'd', descriptors: [{ entries: [{ key: 'a', value: '1' }], hits_addend: { value } }],
      });
      t.equal(error?.details, 'descriptors[0].hits_addend: must be at most 4294967295');
    }
    const { error } = await call(h.rls, SHOULD, {
      domain: 'd', descriptors: [{ entries: [{ key: 'a', value: '1' }], hits_addend: { value: '4294967295' } }],
    });
    t.equal(error, null);
    t.equal(service.decideCalls.at(-1)?.request.descriptors[0]?.hitsAddend, 4294967295);
  });

  t.test('a limit override becomes limitOverride; every unit maps', async (t) => {
    const units: [number, string][] = [[1, 'second'], [2, 'minute'], [3, 'hour'], [4, 'day'], [5, 'month'], [6, 'year'], [7, 'week']];
    for (const [wire, unit] of units) {
      service.decideCalls = [];
      await call(h.rls, SHOULD, {
        domain: 'd', descriptors: [{ entries: [{ key: 'a', value: '1' }], limit: { requests_per_unit: 42, unit: wire } }],
      });
      t.same(service.decideCalls[0]?.request.descriptors[0]?.limitOverride, { requestsPerUnit: 42, unit }, unit);
    }
  });

  t.test('a limit override with UNKNOWN or undefined unit is INVALID_ARGUMENT naming the field', async (t) => {
    for (const unit of [0, 99]) {
      const { error } = await call(h.rls, SHOULD, {
        domain: 'd', descriptors: [{ entries: [{ key: 'a', value: '1' }] }, { entries: [{ key: 'a', value: '1' }], limit: { requests_per_unit: 1, unit } }],
      });
      t.equal(error?.code, grpc.status.INVALID_ARGUMENT);
      t.match(error?.details, /^descriptors\[1\]\.limit\.unit: must be one of SECOND/);
    }
  });

  t.test('statuses in request order with current_limit, remaining and reset', async (t) => {
    service.answer = () => decision([
      limitedStatus({ limit: { requestsPerUnit: 50, unit: 'second', name: 'per-key', burst: 50 }, limitRemaining: 49, durationUntilResetMs: 20 }),
      limitedStatus({ code: 'OVER_LIMIT', limit: { requestsPerUnit: 10, unit: 'hour', name: undefined, burst: 10 }, limitRemaining: 0, durationUntilResetMs: 3_599_500, retryAfterS: 360 }),
      limitedStatus({ limit: { requestsPerUnit: 5, unit: 'week', name: undefined, burst: 5 }, limitRemaining: 4, durationUntilResetMs: 1500 }),
    ]);
    const { error, response } = await call(h.rls, SHOULD, rlsRequest('d', [[['a', '1']], [['b', '2']], [['c', '3']]]));
    t.equal(error, null);
    t.equal(response.overall_code, 2);
    t.same(response.statuses.map((s: any) => s.code), [1, 2, 1]);
    t.same(response.statuses[0].current_limit, { requests_per_unit: 50, unit: 1, name: 'per-key' });
    t.same(response.statuses[1].current_limit, { requests_per_unit: 10, unit: 3, name: '' });
    t.same(response.statuses[2].current_limit, { requests_per_unit: 5, unit: 7, name: '' }, 'WEEK = 7');
    t.same(response.statuses.map((s: any) => s.limit_remaining), [49, 0, 4]);
    t.same(response.statuses[0].duration_until_reset, { seconds: '0', nanos: 20_000_000 });
    t.same(response.statuses[1].duration_until_reset, { seconds: '3599', nanos: 500_000_000 });
  });

  t.test('unknown domain: OK, one bare OK status per descriptor', async (t) => {
    service.answer = (request) => ({ overallCode: 'OK', statuses: request.descriptors.map(() => noLimitStatus()), decidedBy: 'store', storeFailure: undefined, shadowOverLimit: false });
    const { response } = await call(h.rls, SHOULD, rlsRequest('nope', [[['a', '1']], [['b', '2']]]));
    t.equal(response.overall_code, 1);
    t.same(response.statuses, [
      { code: 1, current_limit: null, limit_remaining: 0, duration_until_reset: null },
      { code: 1, current_limit: null, limit_remaining: 0, duration_until_reset: null },
    ]);
    t.same(response.response_headers_to_add, [], 'no headers without a limit');
  });

  t.test('unlimited: OK with limit_remaining 4294967295', async (t) => {
    service.answer = () => decision([noLimitStatus(4294967295)]);
    const { response } = await call(h.rls, SHOULD, rlsRequest('d', [[['health', 'x']]]));
    t.same(response.statuses, [{ code: 1, current_limit: null, limit_remaining: 4294967295, duration_until_reset: null }]);
  });

  t.test('response headers describe the lowest remaining among limited statuses', async (t) => {
    service.answer = () => decision([
      noLimitStatus(4294967295),
      limitedStatus({ limitRemaining: 7, durationUntilResetMs: 2100, limit: { requestsPerUnit: 10, unit: 'minute', name: undefined, burst: 10 } }),
      limitedStatus({ limitRemaining: 3, durationUntilResetMs: 9001, limit: { requestsPerUnit: 5, unit: 'minute', name: undefined, burst: 5 } }),
    ]);
    const { response } = await call(h.rls, SHOULD, rlsRequest('d', [[['a', '1']], [['b', '2']], [['c', '3']]]));
    t.same(response.response_headers_to_add, [
      { key: 'x-ratelimit-limit', value: '5', raw_value: Buffer.alloc(0) },
      { key: 'x-ratelimit-remaining', value: '3', raw_value: Buffer.alloc(0) },
      { key: 'x-ratelimit-reset', value: '10', raw_value: Buffer.alloc(0) },
    ]);
  });

  t.test('OVER_LIMIT adds retry-after from the denying status', async (t) => {
    service.answer = () => decision([
      limitedStatus({ limitRemaining: 0, code: 'OK' }),
      limitedStatus({ code: 'OVER_LIMIT', limitRemaining: 0, durationUntilResetMs: 60_000, retryAfterS: 6 }),
    ]);
    const { response } = await call(h.rls, SHOULD, rlsRequest('d', [[['a', '1']], [['b', '2']]]));
    t.equal(response.overall_code, 2);
    const headers = Object.fromEntries(response.response_headers_to_add.map((x: any) => [x.key, x.value]));
    t.same(headers, { 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '60', 'retry-after': '6' });
  });

  t.test('a StoreUnavailableError is UNAVAILABLE', async (t) => {
    service.answer = () => { throw new StoreUnavailableError('redis: circuit open'); };
    const { error } = await call(h.rls, SHOULD, rlsRequest('d', [[['a', '1']]]));
    t.equal(error?.code, grpc.status.UNAVAILABLE);
  });

  t.test("the service's InvalidRequestError is INVALID_ARGUMENT with its message", async (t) => {
    service.answer = () => { throw new InvalidRequestError('descriptors[0].limit.requests_per_unit', 'too large'); };
    const { error } = await call(h.rls, SHOULD, rlsRequest('d', [[['a', '1']]]));
    t.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    t.equal(error?.details, 'descriptors[0].limit.requests_per_unit: too large');
  });

  t.test('any other error is INTERNAL, logged, and the server keeps serving', async (t) => {
    logger.lines.length = 0;
    service.answer = () => { throw new TypeError('boom with secret'); };
    const { error } = await call(h.rls, SHOULD, rlsRequest('d', [[['a', '1']]]));
    t.equal(error?.code, grpc.status.INTERNAL);
    t.equal(error?.details, 'internal error', 'nothing leaks');
    t.equal(logger.lines.length, 1);
    t.equal(logger.lines[0]?.level, 'error');
    service.answer = async () => Promise.reject(new Error('async boom'));
    t.equal((await call(h.rls, SHOULD, rlsRequest('d', [[['a', '1']]]))).error?.code, grpc.status.INTERNAL);
    service.answer = (request) => decision(request.descriptors.map(() => limitedStatus()));
    t.equal((await call(h.rls, SHOULD, rlsRequest('d', [[['a', '1']]]))).error, null);
  });
});

t.test('response headers are off unless enabled', async (t) => {
  const service = new FakeDecisionService();
  const h = await startHarness(service, { responseHeaders: false });
  t.teardown(() => h.close());
  service.answer = () => decision([limitedStatus({ code: 'OVER_LIMIT', limitRemaining: 0, retryAfterS: 2 })]);
  const { response } = await call(h.rls, SHOULD, rlsRequest('d', [[['a', '1']]]));
  t.equal(response.overall_code, 2);
  t.same(response.response_headers_to_add, []);
});

t.test('a message over the receive limit is refused, not buffered', async (t) => {
  const service = new FakeDecisionService();
  const h = await startHarness(service);
  t.teardown(() => h.close());
  const { error } = await call(h.rls, SHOULD, rlsRequest('d', [[['a', 'x'.repeat(1_100_000)]]]));
  t.equal(error?.code, grpc.status.RESOURCE_EXHAUSTED);
  t.equal(service.decideCalls.length, 0);
});
