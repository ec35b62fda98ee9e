import { gzipSync } from 'node:zlib';
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { RawHttpConnection } from '../../helpers/http1.js';
import { startServer } from '../../helpers/server.js';

const config = fileURLToPath(new URL('../../fixtures/shop.yaml', import.meta.url));
const server = await startServer({ config });
t.teardown(() => server.stop());

function check(body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${server.url}/v1/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
const key = (value: string) => ({ descriptors: [{ entries: [{ key: 'api_key', value }] }] });

t.test('POST /v1/check: 200s, then 429 with Retry-After and X-RateLimit-* headers', async (t) => {
  for (let i = 2; i >= 0; i--) {
    const response = await check(key('c1'));
    t.equal(response.status, 200);
    t.equal(response.headers.get('x-ratelimit-limit'), '3');
    t.equal(response.headers.get('x-ratelimit-remaining'), String(i));
    t.equal(response.headers.get('retry-after'), null);
  }
  const denied = await check(key('c1'));
  t.equal(denied.status, 429);
  t.equal(denied.headers.get('retry-after'), '20', '3/minute: one token every 20 s');
  t.equal(denied.headers.get('x-ratelimit-remaining'), '0');
  t.equal(denied.headers.get('x-ratelimit-reset'), '60');
  t.match(await denied.json(), {
    overall_code: 'OVER_LIMIT',
    statuses: [{ code: 'OVER_LIMIT', limit: { requests_per_unit: 3, unit: 'minute', burst: 3 }, limit_remaining: 0 }],
  });
});

t.test('POST /v1/check works without a content type (curl -d) and with the only domain implied', async (t) => {
  const response = await fetch(`${server.url}/v1/check`, { method: 'POST', body: JSON.stringify(key('c2')) });
  t.equal(response.status, 200);
  t.match(await response.json(), { overall_code: 'OK', statuses: [{ code: 'OK', limit_remaining: 2 }] });
});

t.test('regression: a mistyped domain on /v1/check is a 400 naming the field and the loaded domains, not an unlimited 200', async (t) => {
  const response = await check({ domain: 'shpo', ...key('c3') });
  t.equal(response.status, 400);
  t.same(await response.json(), {
    error: { code: 'RL_ERR_INVALID_REQUEST', field: 'domain', message: 'domain: "shpo" is not a loaded domain (loaded: shop)' },
  });
  t.equal((await check({ domain: 'shop', ...key('c3') })).status, 200, 'the loaded domain decides');
});

t.test('an unknown X-RateLimit-Domain on /v1/auth and /v1/auth/nginx is a 400 naming the header', async (t) => {
  for (const path of ['/v1/auth/rating', '/v1/auth/nginx']) {
    const response = await fetch(`${server.url}${path}`, { headers: { 'x-ratelimit-domain': 'shpo', 'x-api-key': 'd1' } });
    t.equal(response.status, 400, path);
    t.same(await response.json(), {
      error: { code: 'RL_ERR_INVALID_REQUEST', field: 'X-RateLimit-Domain', message: 'X-RateLimit-Domain: "shpo" is not a loaded domain (loaded: shop)' },
    }, path);
  }
  const known = await fetch(`${server.url}/v1/auth/nginx`, { headers: { 'x-ratelimit-domain': 'shop', 'x-api-key': 'd1' } });
  t.equal(known.status, 200, 'a loaded domain decides');
});

const badInputs: Array<[string, unknown, string]> = [
  ['invalid JSON', '{"descriptors": [', 'body'],
  ['a JSON array', '[]', 'body'],
  ['missing descriptors', {}, 'descriptors'],
  ['empty descriptors', { descriptors: [] }, 'descriptors'],
  ['descriptors not a list', { descriptors: 'x' }, 'descriptors'],
  ['empty entries', { descriptors: [{ entries: [] }] }, 'descriptors[0].entries'],
  ['entry value a number', { descriptors: [{ entries: [{ key: 'a', value: 1 }] }] }, 'descriptors[0].entries[0].value'],
  ['empty key', { descriptors: [{ entries: [{ key: '', value: 'v' }] }] }, 'descriptors[0].entries[0].key'],
  ['negative hits_addend', { ...key('x'), hits_addend: -1 }, 'hits_addend'],
  ['fractional hits_addend', { descriptors: [{ entries: [{ key: 'a', value: 'b' }], hits_addend: 1.5 }] }, 'descriptors[0].hits_addend'],
  ['hits_addend a string', { ...key('x'), hits_addend: '2' }, 'hits_addend'],
  ['domain a number', { domain: 7, ...key('x') }, 'domain'],
  ['unknown field', { ...key('x'), extra: true }, 'extra'],
  ['unknown field in an entry (was silently accepted)', { descriptors: [{ entries: [{ key: 'a', value: 'b', extra: 1 }] }] }, 'descriptors[0].entries[0].extra'],
  ['too many descriptors', { descriptors: Array.from({ length: 65 }, () => key('x').descriptors[0]) }, 'descriptors'],
  ['too many entries', { descriptors: [{ entries: Array.from({ length: 17 }, (_, i) => ({ key: `k${i}`, value: 'v' })) }] }, 'descriptors[0].entries'],
  ['a value over 4 KiB', { descriptors: [{ entries: [{ key: 'api_key', value: 'x'.repeat(4097) }] }] }, 'descriptors[0].entries[0].value'],
  ['an empty body', '', 'body'],
];
for (const [name, body, field] of badInputs) {
  t.test(`bad input is a 400 naming the field: ${name}`, async (t) => {
    const response = await check(body);
    t.equal(response.status, 400);
    const json = (await response.json()) as { error: { field: string; message: string; code: string } };
    t.equal(json.error.field, field);
    t.equal(json.error.code, 'RL_ERR_INVALID_REQUEST');
    t.match(json.error.message, field);
  });
}

t.test('a body that is not JSON is a 400 in our words (where, when known), never the parser\'s', async (t) => {
  const cases: Array<[string, string]> = [
    ['hello', 'body: invalid JSON'],
    ['{', 'body: invalid JSON at line 1, column 2'],
    ['{"descriptors": [', 'body: invalid JSON: the body ends before the JSON does'],
    ['{\n  "descriptors": []\n}x', 'body: invalid JSON at line 3, column 2'],
  ];
  for (const [body, message] of cases) {
    const response = await check(body);
    t.equal(response.status, 400, JSON.stringify(body));
    t.same(await response.json(), { error: { code: 'RL_ERR_INVALID_REQUEST', message, field: 'body' } }, JSON.stringify(body));
  }
  const bom = await check(`\ufeff${JSON.stringify(key('bom'))}`);
  t.equal(bom.status, 200, 'a UTF-8 byte order mark before the JSON is ignored (RFC 8259 §8.1)');
});

t.test('a compressed body is a 400 naming content-encoding (was "must be UTF-8 text")', async (t) => {
  const response = await fetch(`${server.url}/v1/check`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify(key('gz'))),
  });
  t.equal(response.status, 400);
  t.match(await response.json(), { error: { code: 'RL_ERR_INVALID_REQUEST', field: 'content-encoding', message: /"gzip" is not supported/ } });
});

t.test('a body over the limit is a 413', async (t) => {
  const response = await check({ descriptors: [{ entries: [{ key: 'api_key', value: 'x'.repeat(70_000) }] }] });
  t.equal(response.status, 413);
  t.match(await response.json(), { error: { code: 'RL_ERR_BODY_TOO_LARGE' } });
});

t.test('/v1/auth/*: the forwarded request is limited; 429 on denial', async (t) => {
  const auth = (path: string, headers: Record<string, string>) =>
    fetch(`${server.url}/v1/auth${path}`, { headers: { 'x-real-ip': '203.0.113.9', ...headers } });
  t.equal((await auth('/rating', { 'x-api-key': 'a1' })).status, 200);
  t.equal((await auth('/rating?x=1', { 'x-api-key': 'a1' })).status, 200, 'the query is not part of :path');
  const denied = await auth('/rating', { 'x-api-key': 'a1' });
  t.equal(denied.status, 429, 'the nested path+api_key limit (2/hour) denies');
  t.equal(denied.headers.get('retry-after'), '1800');
  t.equal((await auth('/other', { 'x-api-key': 'a1' })).status, 200, 'the flat api_key limit had tokens left');
});

t.test('/v1/auth/nginx answers 403 on denial, with Retry-After', async (t) => {
  const nginx = () => fetch(`${server.url}/v1/auth/nginx`, {
    headers: { 'x-original-uri': '/rating/x', 'x-original-method': 'DELETE', 'x-real-ip': '203.0.113.10' },
  });
  const denied = await nginx();
  t.equal(denied.status, 403, 'X-Original-Method DELETE matches the always-over limit');
  t.ok(Number(denied.headers.get('retry-after')) >= 1);
});

t.test('without an API key the client-address limit applies; X-Forwarded-For only from trusted peers', async (t) => {
  const hit = (headers: Record<string, string>) => fetch(`${server.url}/v1/auth/x`, { headers });
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await hit({ 'x-forwarded-for': '198.51.100.7, 127.0.0.1' })).status);
  t.same(statuses, [200, 200, 200, 200, 200, 429], '5/minute per address; trusted loopback hop skipped');
  t.equal((await hit({ 'x-forwarded-for': '198.51.100.8' })).status, 200, 'another address has its own bucket');
});

t.test('/healthz, /readyz, /metrics, /v1/config', async (t) => {
  t.equal((await fetch(`${server.url}/healthz`)).status, 200);
  const ready = await fetch(`${server.url}/readyz`);
  t.equal(ready.status, 200);
  t.match(await ready.json(), { status: 'ready' });
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  t.match(metrics, /ratelimit_decisions_total\{domain="shop",api="http_check",outcome="over_limit",decided_by="store"\} 1/);
  t.match(metrics, /ratelimit_decision_duration_seconds_bucket/);
  t.match(metrics, /ratelimit_config_reloads_total\{result="failure"\} 0/);
  t.match(metrics, /process_cpu_user_seconds_total/);
  t.notMatch(metrics, /c1|a1|203\.0\.113/, 'no request values in labels');
  const config = (await (await fetch(`${server.url}/v1/config`)).json()) as { domains: Array<{ domain: string; config: { domain: string } }> };
  t.equal(config.domains[0]?.domain, 'shop');
  t.equal(config.domains[0]?.config.domain, 'shop');
});

t.test('unknown routes are a JSON 404', async (t) => {
  const response = await fetch(`${server.url}/nope`);
  t.equal(response.status, 404);
  t.match(await response.json(), { error: { code: 'RL_ERR_NOT_FOUND' } });
});

t.test('regression: an over-long client header must not bypass the limits (it made NGINX/Envoy fail open)', async (t) => {
  const longKey = 'k'.repeat(5000);
  const nginx = (key: string) => fetch(`${server.url}/v1/auth/nginx`, {
    headers: { 'x-original-uri': '/x', 'x-real-ip': '203.0.113.77', 'x-api-key': key },
  });
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await nginx(longKey)).status);
  t.same(statuses, [200, 200, 200, 403], 'the long key gets its own bucket (3/minute) and is limited');
  t.equal((await nginx(`${longKey}-other`)).status, 200, 'another long key is another bucket');
  t.equal((await nginx(`${longKey}-third`)).status, 200, 'the address has used 5 of 5 (the denial took nothing)');
  t.equal((await nginx(`${longKey}-fourth`)).status, 403, 'and the per-address limit still applies to all of them');
  const check = await fetch(`${server.url}/v1/check`, { method: 'POST', body: JSON.stringify({ descriptors: [{ entries: [{ key: 'api_key', value: longKey }] }] }) });
  t.equal(check.status, 400, '/v1/check, whose callers build descriptors on purpose, still rejects it');
});

t.test('regression: big client headers on forward auth are decided, not refused with 431', async (t) => {
  const headers: Record<string, string> = { 'x-real-ip': '203.0.113.88', 'x-api-key': 'big-headers' };
  for (let i = 0; i < 4; i++) headers[`x-padding-${i}`] = 'p'.repeat(7000);
  const response = await fetch(`${server.url}/v1/auth/nginx`, { headers });
  t.equal(response.status, 200);
  t.equal(response.headers.get('x-ratelimit-remaining'), '2');
});

t.test('regression: shadow-mode limits never set the headers clients see', async (t) => {
  const exampleServer = await startServer({ config: fileURLToPath(new URL('../../../examples/openclaw.yaml', import.meta.url)) });
  t.teardown(() => exampleServer.stop());
  const hit = () => fetch(`${exampleServer.url}/v1/auth/rating`, { headers: { 'x-api-key': 'shadow-k1', 'x-real-ip': '203.0.113.99' } });
  let last: Response | undefined;
  for (let i = 0; i < 8; i++) last = await hit();
  t.equal(last!.status, 200, 'the shadow 5/s limit never denies');
  t.equal(last!.headers.get('x-ratelimit-limit'), '20', 'the enforced api_key limit (burst 20), not the shadow one (5)');
  t.ok(Number(last!.headers.get('x-ratelimit-remaining')) >= 12);
});

t.test('regression: a lone surrogate in /v1/check text is a 400 naming the field (JSON text has no bytes to keep)', async (t) => {
  for (const value of ['\udffa\udf72\udf23', '\udc6c\udd68\udd97']) {
    const response = await check({ descriptors: [{ entries: [{ key: 'api_key', value }] }] });
    t.equal(response.status, 400, JSON.stringify(value));
    const json = (await response.json()) as { error: { field: string; message: string; code: string } };
    t.equal(json.error.field, 'descriptors[0].entries[0].value');
    t.match(json.error.message, /^descriptors\[0\]\.entries\[0\]\.value: .*lone surrogate/);
    t.equal(json.error.code, 'RL_ERR_INVALID_REQUEST');
  }
  const key = await check({ descriptors: [{ entries: [{ key: 'k\ud800', value: 'v' }] }] });
  t.equal(key.status, 400);
  t.match(await key.json(), { error: { field: 'descriptors[0].entries[0].key' } });
  const domain = await check({ domain: '\udc80', descriptors: [{ entries: [{ key: 'api_key', value: 'v' }] }] });
  t.match(await domain.json(), { error: { field: 'domain' } });
  const pair = await check({ descriptors: [{ entries: [{ key: 'api_key', value: 'surrogate-pair-\ud83d\ude00' }] }] });
  t.equal(pair.status, 200, 'a surrogate pair is a character (U+1F600) and fine');
});

t.test('regression: /v1/check body bytes that are not UTF-8 are a 400, not silently U+FFFD', async (t) => {
  const head = Buffer.from('{"descriptors":[{"entries":[{"key":"api_key","value":"v');
  const body = Buffer.concat([head, Buffer.from([0xff]), Buffer.from('"}]}]}')]);
  const response = await fetch(`${server.url}/v1/check`, { method: 'POST', body });
  t.equal(response.status, 400);
  t.match(await response.json(), { error: { field: 'body', message: /UTF-8/ } });
});

t.test('regression: forward-auth header values are bytes, decoded as UTF-8 like on the gRPC APIs', async (t) => {
  const port = Number(new URL(server.url).port);
  const nginx = async (apiKeyBytes: Buffer, address: string) => {
    const connection = await RawHttpConnection.open(port);
    try {
      const head = `GET /v1/auth/nginx HTTP/1.1\r\nHost: x\r\nX-Original-URI: /bytes\r\nX-Real-IP: ${address}\r\nX-Api-Key: `;
      return await connection.request(Buffer.concat([Buffer.from(head), apiKeyBytes, Buffer.from('\r\n\r\n')]));
    } finally {
      connection.close();
    }
  };
  // The UTF-8 bytes of "ké" through a header are the JSON string "ké" on /v1/check: one bucket.
  const utf8 = Buffer.from('bytes-ké', 'utf8');
  t.equal((await nginx(utf8, '203.0.113.120')).status, 200);
  t.equal((await nginx(utf8, '203.0.113.121')).status, 200);
  const probe = await check({ descriptors: [{ entries: [{ key: 'api_key', value: 'bytes-ké' }], hits_addend: 0 }] });
  t.match(await probe.json(), { statuses: [{ limit_remaining: 1 }] }, 'two of 3 spent through the header');
  // Invalid bytes stay distinct values: \xff, \xfe and the real U+FFFD (EF BF BD).
  const invalid = [Buffer.from([0x62, 0xff]), Buffer.from([0x62, 0xfe]), Buffer.from([0x62, 0xef, 0xbf, 0xbd])];
  for (let round = 0; round < 3; round++) {
    for (const [i, bytes] of invalid.entries()) t.equal((await nginx(bytes, `203.0.113.${130 + i}`)).status, 200);
  }
  for (const [i, bytes] of invalid.entries()) {
    t.equal((await nginx(bytes, `203.0.113.${140 + i}`)).status, 403, `value ${i}: its own 3/minute bucket is spent, no other`);
  }
});

t.test('regression: CONNECT gets a 405 in our error shape, not a closed connection (curl exit 52)', async (t) => {
  for (const target of ['example.com:443', '/v1/check']) {
    const connection = await RawHttpConnection.open(Number(new URL(server.url).port));
    const response = await connection.request(`CONNECT ${target} HTTP/1.1\r\nHost: example.com:443\r\n\r\n`);
    t.equal(response.status, 405, target);
    t.equal(response.headers['connection'], 'close');
    t.match(response.headers['allow'] ?? '', /GET/);
    t.match(JSON.parse(response.body), { error: { code: 'RL_ERR_METHOD_NOT_ALLOWED', message: /CONNECT/ } });
    t.equal((await connection.closed).error, undefined, 'then closed cleanly');
  }
  t.equal((await fetch(`${server.url}/healthz`)).status, 200, 'the server carries on');
});

t.test('regression: an unparseable Content-Type is not a 415: /v1/check decodes the body, forward auth decides', async (t) => {
  for (const type of [';;', 'json', 'application/json; charset', '"', 'a/b/c']) {
    const response = await check(key('ctype'), { 'content-type': type });
    t.not(response.status, 415, `/v1/check with Content-Type ${JSON.stringify(type)}`);
    t.match(await response.json(), { overall_code: /OK|OVER_LIMIT/ });
  }
  const nginx = await fetch(`${server.url}/v1/auth/nginx`, {
    method: 'POST',
    headers: { 'content-type': ';;', 'x-original-uri': '/ctype', 'x-real-ip': '203.0.113.150' },
  });
  t.equal(nginx.status, 200, 'NGINX would turn a 415 into a 500 and fail open');
  t.equal(nginx.headers.get('x-ratelimit-remaining'), '4');
});

t.test('forward auth never reads the body: a big one is decided, not refused with 413', async (t) => {
  const response = await fetch(`${server.url}/v1/auth/upload`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'x-real-ip': '203.0.113.151' },
    body: Buffer.alloc(200_000, 1),
  });
  t.equal(response.status, 200);
  t.equal(response.headers.get('x-ratelimit-remaining'), '4');
  const tooBig = await check({ descriptors: [{ entries: [{ key: 'api_key', value: 'x'.repeat(70_000) }] }] });
  t.equal(tooBig.status, 413, '/v1/check still bounds its body');
});
