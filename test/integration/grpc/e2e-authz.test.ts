// ext_authz and health through the real composition root (config, limiter, memory store).
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { call } from '../../helpers/grpc.js';
import { startAppHarness } from './app-harness.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

function check(apiKey: string | undefined, domain?: string) {
  const headers: Record<string, string> = { ':authority': 'api.test', ':method': 'GET', ':path': '/rating?x=1', ':scheme': 'http' };
  if (apiKey !== undefined) headers['x-api-key'] = apiKey;
  return {
    attributes: {
      source: { address: { socket_address: { address: '198.51.100.4', port_value: 40000 } } },
      request: { http: { method: 'GET', headers, path: '/rating?x=1', host: 'api.test', scheme: 'http' } },
      context_extensions: domain === undefined ? {} : { domain },
    },
  };
}

const headerMap = (options: any[]) => Object.fromEntries(options.map((o) => [o.header.key, o.header.value]));

t.test('ext_authz end to end', async (t) => {
  const h = await startAppHarness(join(FIXTURES, 'envoy-ratelimit'), { 'default-domain': 'openclaw' });
  t.teardown(() => h.close());

  t.test('three per minute per API key, then 429 with retry-after', async (t) => {
    const key = `k-${Date.now()}`;
    for (let i = 0; i < 3; i++) {
      const { error, response } = await call(h.authz, 'Check', check(key));
      t.equal(error, null);
      t.equal(response.status.code, 0);
      t.equal(response.http_response, 'ok_response');
      t.equal(headerMap(response.ok_response.response_headers_to_add)['x-ratelimit-remaining'], String(2 - i));
      t.equal(headerMap(response.ok_response.response_headers_to_add)['x-ratelimit-limit'], '3');
    }
    const { response } = await call(h.authz, 'Check', check(key));
    t.equal(response.status.code, 8);
    t.equal(response.denied_response.status.code, 429);
    const headers = headerMap(response.denied_response.headers);
    t.equal(headers['x-ratelimit-remaining'], '0');
    const retryAfter = Number(headers['retry-after']);
    t.ok(retryAfter >= 1 && retryAfter <= 20, `retry-after ${retryAfter}: one token per 20 s`);
    const other = await call(h.authz, 'Check', check(`${key}-other`));
    t.equal(other.response.status.code, 0, 'another key has its own bucket');
  });

  t.test('no API key: only the remote_address descriptor applies', async (t) => {
    const { response } = await call(h.authz, 'Check', check(undefined));
    t.equal(response.status.code, 0);
    t.equal(headerMap(response.ok_response.response_headers_to_add)['x-ratelimit-limit'], '1000');
  });

  t.test('context_extensions domain without http descriptors: allowed, no headers', async (t) => {
    const { response } = await call(h.authz, 'Check', check('k', 'basic'));
    t.equal(response.status.code, 0);
    t.same(response.ok_response.response_headers_to_add, []);
  });

  t.test('an unknown domain: allowed', async (t) => {
    const { response } = await call(h.authz, 'Check', check('k', 'no-such-domain'));
    t.equal(response.status.code, 0);
  });

  t.test('an over-long header value is decided under its digest (an error would make Envoy fail open)', async (t) => {
    const { error, response } = await call(h.authz, 'Check', check('v'.repeat(5000)));
    t.equal(error, null);
    t.equal((response as { status: { code: number } }).status.code, 0, 'allowed: a bucket of its own');
  });

  t.test('health: SERVING for "" and "ratelimit"', async (t) => {
    t.same((await call(h.health, 'Check', { service: '' })).response, { status: 1 });
    t.same((await call(h.health, 'Check', { service: 'ratelimit' })).response, { status: 1 });
  });
});

t.test('without a default domain and several domains, ext_authz needs context_extensions', async (t) => {
  const h = await startAppHarness(join(FIXTURES, 'envoy-ratelimit'));
  t.teardown(() => h.close());
  const { error } = await call(h.authz, 'Check', check('k'));
  t.equal(error?.code, grpc.status.INVALID_ARGUMENT);
  t.match(error?.details, /^domain: /);
  const ok = await call(h.authz, 'Check', check(`k-${Date.now()}`, 'openclaw'));
  t.equal(ok.response.status.code, 0);
});
