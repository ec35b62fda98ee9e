// SPEC §10 over HTTP through the real server (memory store): /v1/check bodies
// and the header styles of /v1/check and the forward-auth routes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseList } from 'structured-headers';
import t from 'tap';
import { startServer } from '../../helpers/server.js';

const CONFIG = `
domain: web
descriptors:
  - key: api_key
    rate_limit: { unit: second, requests_per_unit: 5, burst: 10 }
    rate_limits:
      - { unit: minute, unit_multiplier: 10, requests_per_unit: 50, name: ten-minutes }
  - key: upload
    rate_limit: { unit: hour, requests_per_unit: 3 }
http:
  descriptors:
    - [ { request_headers: { header_name: x-api-key, descriptor_key: api_key } } ]
`;

const dir = mkdtempSync(join(tmpdir(), 'rl-more-http-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const config = join(dir, 'web.yaml');
writeFileSync(config, CONFIG);

const check = (url: string, descriptors: unknown[], hitsAddend?: number) => fetch(`${url}/v1/check`, {
  method: 'POST',
  body: JSON.stringify(hitsAddend === undefined ? { descriptors } : { descriptors, hits_addend: hitsAddend }),
});
const entry = (key: string, value: string) => ({ entries: [{ key, value }] });

t.test('/v1/check reports unit_multiplier and the limit that decided; an unsatisfiable cost says so', async (t) => {
  const server = await startServer({ config });
  t.teardown(() => server.stop());
  const ok = await check(server.url, [entry('api_key', 'k')], 10);
  t.equal(ok.status, 200);
  t.match(await ok.json(), {
    statuses: [{ code: 'OK', limit: { requests_per_unit: 5, unit: 'second', burst: 10 }, limit_remaining: 0 }],
  });
  const over = await check(server.url, [entry('api_key', 'j')], 11);
  t.equal(over.status, 429);
  t.equal(over.headers.get('retry-after'), '1', 'the whole period of the per-second limit');
  t.match(await over.json(), { statuses: [{ code: 'OVER_LIMIT', unsatisfiable: true, retry_after_s: 1, limit_remaining: 10 }] });
  const never = await check(server.url, [entry('upload', 'u')], 4);
  t.equal(never.headers.get('retry-after'), '3600', 'regression: a cost above the burst was told to retry after 1 s');
  t.match(await never.json(), { statuses: [{ unsatisfiable: true, retry_after_s: 3600 }] });
  const tenMinutes = await check(server.url, [entry('api_key', 'm')], 9);
  t.match(await tenMinutes.json(), { statuses: [{ limit: { burst: 10 }, limit_remaining: 1 }] }, 'burst (1 left) is more restrictive than 41 of 50');
});

t.test('--header-style both on /v1/check and /v1/auth/nginx; Retry-After on every denial', async (t) => {
  const server = await startServer({ config, 'header-style': 'both' });
  t.teardown(() => server.stop());
  const response = await check(server.url, [entry('api_key', 'h')]);
  t.equal(response.headers.get('x-ratelimit-limit'), '10');
  t.same(parseList(response.headers.get('ratelimit-policy')!).map(([name, params]) => [name, Object.fromEntries(params)]),
    [['api_key', { q: 10, w: 2 }], ['ten-minutes', { q: 50, w: 600 }]]);
  t.same(parseList(response.headers.get('ratelimit')!).map(([name, params]) => [name, Object.fromEntries(params)['r']]),
    [['api_key', 9], ['ten-minutes', 49]]);
  for (let i = 0; i < 9; i++) await fetch(`${server.url}/v1/auth/nginx`, { headers: { 'x-api-key': 'n' } });
  const last = await fetch(`${server.url}/v1/auth/nginx`, { headers: { 'x-api-key': 'n' } });
  t.equal(last.status, 200);
  const denied = await fetch(`${server.url}/v1/auth/nginx`, { headers: { 'x-api-key': 'n' } });
  t.equal(denied.status, 403);
  t.equal(denied.headers.get('retry-after'), '1');
  t.equal(denied.headers.get('x-ratelimit-remaining'), '0');
  t.match(denied.headers.get('ratelimit'), /^"api_key";r=0;t=2, "ten-minutes";r=40;t=\d+$/);
});

t.test('--header-style draft03 and draft10 replace the X- headers', async (t) => {
  const draft03 = await startServer({ config, 'header-style': 'draft03' });
  t.teardown(() => draft03.stop());
  const three = await fetch(`${draft03.url}/v1/auth/x`, { headers: { 'x-api-key': 'd' } });
  t.equal(three.headers.get('ratelimit-limit'), '5', 'requests_per_unit, as envoyproxy/ratelimit');
  t.equal(three.headers.get('ratelimit-remaining'), '9');
  t.equal(three.headers.get('x-ratelimit-limit'), null);
  const draft10 = await startServer({ config, 'header-style': 'draft10' });
  t.teardown(() => draft10.stop());
  const ten = await fetch(`${draft10.url}/v1/auth/x`, { headers: { 'x-api-key': 'd' } });
  t.equal(ten.headers.get('ratelimit-limit'), null);
  t.equal(ten.headers.get('x-ratelimit-limit'), null);
  t.equal(ten.headers.get('ratelimit'), '"api_key";r=9;t=1, "ten-minutes";r=49;t=12');
});

t.test('a bad --header-style is a usage error naming the choices', async (t) => {
  await t.rejects(startServer({ config, 'header-style': 'draft11' }),
    { message: '--header-style (RL_HEADER_STYLE): expected x | draft03 | draft10 | both, got "draft11"' });
});
