// SPEC §10 through the real composition root (config, limiter, memory store)
// over gRPC: Envoy's RateLimitService and ext_authz on real sockets.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseList } from 'structured-headers';
import t from 'tap';
import { startAppHarness } from './app-harness.js';
import { call, rlsRequest } from '../../helpers/grpc.js';

const CONFIG = `
domain: edge
descriptors:
  - key: report
    rate_limit: { unit: minute, unit_multiplier: 5, requests_per_unit: 100 }
  - key: named
    rate_limit: { unit: minute, unit_multiplier: 5, requests_per_unit: 100, name: five-minutes }
  - key: api_key
    rate_limit: { unit: second, requests_per_unit: 2, burst: 4, name: burst }
    rate_limits:
      - { unit: day, requests_per_unit: 6, name: daily }
  - key: plan
    value: free
    quota_mode: true
    rate_limit: { unit: hour, requests_per_unit: 1 }
  - key: plan
    value: team
    quota_mode: true
    rate_limit: { unit: hour, requests_per_unit: 2 }
  - key: window
    rate_limit: { unit: hour, requests_per_unit: 3, algorithm: sliding_window }
http:
  descriptors:
    - [ { request_headers: { header_name: x-api-key, descriptor_key: api_key } } ]
`;

const dir = mkdtempSync(join(tmpdir(), 'rl-more-limits-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'edge.yaml');
writeFileSync(file, CONFIG);

const headerValues = (list: { key: string; value: string }[]) => Object.fromEntries(list.map((h) => [h.key, h.value]));
const optionValues = (options: { header: { key: string; value: string } }[]) => headerValues(options.map((o) => o.header));
const RLS = { OK: 1, OVER_LIMIT: 2 };
const UNIT = { SECOND: 1, MINUTE: 2, DAY: 4 };

function authzCheck(apiKey: string) {
  return {
    attributes: {
      source: { address: { socket_address: { address: '198.51.100.9', port_value: 1 } } },
      request: { http: { method: 'GET', headers: { 'x-api-key': apiKey }, path: '/x', host: 'api.test' } },
      context_extensions: { domain: 'edge' },
    },
  };
}

t.test('RateLimitService with --header-style draft10 and --response-headers', async (t) => {
  const h = await startAppHarness(file, { 'header-style': 'draft10', 'response-headers': true });
  t.teardown(() => h.close());

  t.test('unit_multiplier: current_limit as configured, named 100/5m when the limit has no name', async (t) => {
    const { error, response } = await call(h.rls, 'ShouldRateLimit', rlsRequest('edge', [[['report', 'r']], [['named', 'n']]]));
    t.equal(error, null);
    t.match(response.statuses, [
      { code: RLS.OK, current_limit: { requests_per_unit: 100, unit: UNIT.MINUTE, name: '100/5m' }, limit_remaining: 99 },
      { code: RLS.OK, current_limit: { requests_per_unit: 100, unit: UNIT.MINUTE, name: 'five-minutes' } },
    ]);
  });

  t.test('rate_limits: burst and sustained both apply; the status shows the most restrictive', async (t) => {
    const request = rlsRequest('edge', [[['api_key', 'k1']]]);
    const first = (await call(h.rls, 'ShouldRateLimit', request)).response;
    t.match(first.statuses[0], { code: RLS.OK, current_limit: { requests_per_unit: 2, unit: UNIT.SECOND, name: 'burst' }, limit_remaining: 3 });
    const headers = headerValues(first.response_headers_to_add);
    t.same(parseList(headers['ratelimit-policy']!).map(([name, params]) => [name, Object.fromEntries(params)]),
      [['burst', { q: 4, w: 2 }], ['daily', { q: 6, w: 86400 }]]);
    t.same(parseList(headers['ratelimit']!).map(([name, params]) => [name, Object.fromEntries(params)['r']]), [['burst', 3], ['daily', 5]]);
    for (let i = 0; i < 3; i++) await call(h.rls, 'ShouldRateLimit', request);
    const denied = (await call(h.rls, 'ShouldRateLimit', request)).response;
    t.equal(denied.overall_code, RLS.OVER_LIMIT, 'the burst of 4 is spent');
    t.match(denied.statuses[0], { code: RLS.OVER_LIMIT, current_limit: { name: 'burst' }, limit_remaining: 0 });
    t.match(headerValues(denied.response_headers_to_add), { 'retry-after': '1' });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const afterRefill = (await call(h.rls, 'ShouldRateLimit', rlsRequest('edge', [[['api_key', 'k1']]], 2))).response;
    t.equal(afterRefill.overall_code, RLS.OK, 'the denial took nothing from the daily limit: 2 of its 6 are left');
    const dailyOver = (await call(h.rls, 'ShouldRateLimit', request)).response;
    t.match(dailyOver.statuses[0], { code: RLS.OVER_LIMIT, current_limit: { requests_per_unit: 6, unit: UNIT.DAY, name: 'daily' } });
  });

  t.test('quota_mode: OVER_LIMIT only when every quota descriptor is over', async (t) => {
    const request = rlsRequest('edge', [[['plan', 'free']], [['plan', 'team']]]);
    t.equal((await call(h.rls, 'ShouldRateLimit', request)).response.overall_code, RLS.OK);
    const one = (await call(h.rls, 'ShouldRateLimit', request)).response;
    t.equal(one.overall_code, RLS.OK, 'free is over, team is not');
    t.match(one.statuses, [{ code: RLS.OVER_LIMIT }, { code: RLS.OK, limit_remaining: 0 }]);
    const all = (await call(h.rls, 'ShouldRateLimit', request)).response;
    t.equal(all.overall_code, RLS.OVER_LIMIT);
  });

  t.test('sliding_window decides over RLS', async (t) => {
    const request = rlsRequest('edge', [[['window', 'w']]]);
    for (let i = 2; i >= 0; i--) t.match((await call(h.rls, 'ShouldRateLimit', request)).response.statuses[0], { limit_remaining: i });
    t.equal((await call(h.rls, 'ShouldRateLimit', request)).response.overall_code, RLS.OVER_LIMIT);
  });
});

t.test('ext_authz with --header-style draft03 and both', async (t) => {
  const draft03 = await startAppHarness(file, { 'header-style': 'draft03' });
  t.teardown(() => draft03.close());
  const allowed = (await call(draft03.authz, 'Check', authzCheck('a'))).response;
  t.same(optionValues(allowed.ok_response.response_headers_to_add), { 'ratelimit-limit': '2', 'ratelimit-remaining': '3', 'ratelimit-reset': '1' });

  const both = await startAppHarness(file, { 'header-style': 'both' });
  t.teardown(() => both.close());
  for (let i = 0; i < 4; i++) await call(both.authz, 'Check', authzCheck('b'));
  const denied = (await call(both.authz, 'Check', authzCheck('b'))).response;
  t.equal(denied.denied_response.status.code, 429);
  const headers = optionValues(denied.denied_response.headers);
  t.match(headers, { 'x-ratelimit-limit': '4', 'x-ratelimit-remaining': '0', 'retry-after': '1' });
  t.same(parseList(headers['ratelimit']!).map(([name]) => name), ['burst', 'daily']);
});
