// --header-style: the header sets every API sends, built from real decisions.
// The draft-10 fields are checked with an independent Structured Fields
// parser (structured-headers), not by comparing strings only.
import { parseList } from 'structured-headers';
import t from 'tap';
import { configFromYaml } from '../../helpers/config.js';
import { compileLimit } from '../../../src/core/limit.js';
import { Limiter } from '../../../src/core/limiter.js';
import { headerPolicy, rateLimitHeaders, sfString, type HeaderStyle } from '../../../src/core/response-headers.js';
import type { Decision, Descriptor } from '../../../src/core/types.js';
import { MemoryStore } from '../../../src/store/memory-store.js';

const CONFIG = `
domain: shop
descriptors:
  - key: api_key
    rate_limit: { unit: second, requests_per_unit: 10, burst: 20 }
  - key: tenant
    rate_limits:
      - { unit: second, requests_per_unit: 5, name: burst }
      - { unit: day, requests_per_unit: 1000, name: daily, algorithm: fixed_window }
  - key: beta
    shadow_mode: true
    rate_limit: { unit: second, requests_per_unit: 1 }
  - key: path
    value: "/caf\u00e9/*"
    rate_limit: { unit: minute, requests_per_unit: 6, name: 'say "hi" \\ 50%' }
`;

const config = configFromYaml(t, CONFIG);
const d = (key: string, value: string): Descriptor => ({ entries: [{ key, value }] });

function limiter() {
  const now = 1_700_000_000_000_000;
  const store = new MemoryStore({ maxKeys: 1_000_000, clock: () => now, sweep: false });
  const instance = new Limiter({
    store, shadow: false, keyPrefix: 'rl:', digest: (x) => x,
  });
  return (descriptors: Descriptor[], hitsAddend?: number): Promise<Decision> =>
    Promise.resolve(instance.decide(config, hitsAddend === undefined ? { domain: 'shop', descriptors } : { domain: 'shop', descriptors, hitsAddend }));
}

const asObject = (headers: Array<[string, string]>) => Object.fromEntries(headers);

/** A parsed draft-10 list as [name, {param: value}] pairs. */
function members(field: string): Array<[unknown, Record<string, unknown>]> {
  return parseList(field).map(([value, params]) => [value, Object.fromEntries(params)]);
}

t.test('sf-strings: quotes and backslashes escaped; what an sf-string cannot hold is percent-encoded', async (t) => {
  t.equal(sfString('api_key'), '"api_key"');
  t.equal(sfString('say "hi" \\ 50%'), '"say \\"hi\\" \\\\ 50%25"');
  t.equal(sfString('path_/café/*'), '"path_/caf%C3%A9/*"');
  t.equal(sfString('tab\there'), '"tab%09here"');
  for (const name of ['a"b', 'c\\d', 'é', '\u0000', '日本', '%41']) {
    const value = parseList(`${sfString(name)};q=1`)[0]?.[0];
    t.equal(typeof value, 'string', `${JSON.stringify(name)} parses as a string`);
  }
  t.not(sfString('%41'), sfString('A'), 'distinct names stay distinct');
});

t.test('the policy of a limit: q is what can be spent at once, w the seconds in which it comes back', async (t) => {
  const policy = (input: Parameters<typeof compileLimit>[0]) => headerPolicy('p', compileLimit(input)).policy;
  t.equal(policy({ requestsPerUnit: 10, unit: 'second', burst: 20 }), '"p";q=20;w=2', 'a burst of 20 at 10/s refills in 2 s');
  t.equal(policy({ requestsPerUnit: 10, unit: 'second', burst: 1 }), '"p";q=1;w=1', 'rounded up to whole seconds');
  t.equal(policy({ requestsPerUnit: 1, unit: 'day', burst: 3 }), '"p";q=3;w=259200');
  t.equal(policy({ requestsPerUnit: 7, unit: 'year', burst: 1_000_000 }), '"p";q=1000000;w=4505142857143',
    'burst × period beyond 2^53 µs is still exact');
  t.equal(policy({ requestsPerUnit: 100, unit: 'minute', unitMultiplier: 5, algorithm: 'fixed_window' }), '"p";q=100;w=300');
  t.equal(policy({ requestsPerUnit: 100, unit: 'hour', algorithm: 'sliding_window' }), '"p";q=100;w=3600');
  t.equal(policy({ requestsPerUnit: 0, unit: 'minute' }), '"p";q=0;w=60');
});

t.test('x (default): the X-RateLimit trio of the most restrictive limit, Retry-After on denial', async (t) => {
  const decide = limiter();
  const ok = await decide([d('api_key', 'k')]);
  t.same(rateLimitHeaders(ok), [['x-ratelimit-limit', '20'], ['x-ratelimit-remaining', '19'], ['x-ratelimit-reset', '1']]);
  t.same(rateLimitHeaders(ok, 'x'), rateLimitHeaders(ok));
  const denied = await decide([d('api_key', 'k')], 20);
  t.same(asObject(rateLimitHeaders(denied, 'x')), {
    'x-ratelimit-limit': '20', 'x-ratelimit-remaining': '19', 'x-ratelimit-reset': '1', 'retry-after': '1',
  });
});

t.test('draft03: RateLimit-Limit (requests_per_unit, as envoyproxy/ratelimit), -Remaining, -Reset', async (t) => {
  const decide = limiter();
  t.same(rateLimitHeaders(await decide([d('api_key', 'k')]), 'draft03'),
    [['ratelimit-limit', '10'], ['ratelimit-remaining', '19'], ['ratelimit-reset', '1']]);
  const denied = await decide([d('api_key', 'k')], 30);
  t.match(asObject(rateLimitHeaders(denied, 'draft03')), { 'ratelimit-limit': '10', 'retry-after': '1' },
    'an unsatisfiable cost: Retry-After is the whole period, never 0');
});

t.test('draft10: one list member per matched enforced limit, valid Structured Fields', async (t) => {
  const decide = limiter();
  const decision = await decide([d('api_key', 'k'), d('tenant', 't'), d('beta', 'b'), d('path', '/café/menu'), d('nothing', 'x')]);
  const headers = asObject(rateLimitHeaders(decision, 'draft10'));
  t.same(Object.keys(headers), ['ratelimit-policy', 'ratelimit'], 'no X- headers in this style');
  t.same(members(headers['ratelimit-policy']!), [
    ['api_key', { q: 20, w: 2 }],
    ['burst', { q: 5, w: 1 }],
    ['daily', { q: 1000, w: 86400 }],
    ['say "hi" \\ 50%25', { q: 6, w: 60 }],
  ], 'the shadow limit and the unmatched descriptor are not shown; a name is the limit\'s, else the rule path');
  t.same(members(headers['ratelimit']!), [
    ['api_key', { r: 19, t: 1 }],
    ['burst', { r: 4, t: 1 }],
    ['daily', { r: 999, t: Math.ceil(decision.statuses[1]!.limitStatuses![1]!.durationUntilResetMs / 1000) }],
    ['say "hi" \\ 50%25', { r: 5, t: 10 }],
  ]);
  const unnamed = asObject(rateLimitHeaders(await decide([d('api_key', 'other')]), 'draft10'));
  t.equal(unnamed['ratelimit-policy'], '"api_key";q=20;w=2', 'the SPEC example: policy name = the rule path');
  t.equal(unnamed['ratelimit'], '"api_key";r=19;t=1');
});

t.test('both: x and draft10; Retry-After on every denial whatever the style', async (t) => {
  const decide = limiter();
  await decide([d('tenant', 't')], 5);
  const denied = await decide([d('tenant', 't')]);
  t.equal(denied.overallCode, 'OVER_LIMIT');
  const both = asObject(rateLimitHeaders(denied, 'both'));
  t.same(Object.keys(both), ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'ratelimit-policy', 'ratelimit', 'retry-after']);
  t.same(members(both['ratelimit']!), [['burst', { r: 0, t: 1 }], ['daily', { r: 995, t: members(both['ratelimit']!)[1]![1]['t'] }]]);
  for (const style of ['x', 'draft03', 'draft10', 'both'] as HeaderStyle[]) {
    t.equal(asObject(rateLimitHeaders(denied, style))['retry-after'], '1', `${style}: retry-after`);
  }
  t.same(rateLimitHeaders(await decide([d('nothing', 'x')]), 'both'), [], 'no limit matched: no headers');
});
