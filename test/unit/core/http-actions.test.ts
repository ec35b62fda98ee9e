import t from 'tap';
import type { HttpAction } from '../../../src/core/config-model.js';
import { descriptorsFromHttp, queryParameter, type HttpRequestInput } from '../../../src/core/http-actions.js';
import { maskedAddress } from '../../../src/core/ip-address.js';

function request(overrides: Partial<Omit<HttpRequestInput, 'header'>> & { headers?: Record<string, string> } = {}): HttpRequestInput {
  const headers = overrides.headers ?? {};
  return {
    method: overrides.method ?? 'GET',
    path: overrides.path ?? '/rating',
    query: overrides.query ?? '',
    authority: overrides.authority ?? 'api.example.com',
    remoteAddress: overrides.remoteAddress ?? '203.0.113.7',
    header: (name) => headers[name],
  };
}

const header = (headerName: string, descriptorKey: string, skipIfAbsent = false): HttpAction =>
  ({ type: 'request_headers', headerName, descriptorKey, skipIfAbsent });
const query = (queryParameterName: string, descriptorKey: string, skipIfAbsent = false): HttpAction =>
  ({ type: 'query_parameters', queryParameterName, descriptorKey, skipIfAbsent });
const masked = (v4PrefixMaskLen: number, v6PrefixMaskLen: number): HttpAction =>
  ({ type: 'masked_remote_address', v4PrefixMaskLen, v6PrefixMaskLen });

t.test('each action list produces one descriptor, in order (the SPEC example)', async (t) => {
  const actions: HttpAction[][] = [
    [header('x-api-key', 'api_key')],
    [{ type: 'remote_address' }],
    [header(':path', 'path'), header('x-api-key', 'api_key')],
  ];
  t.same(descriptorsFromHttp(actions, request({ headers: { 'x-api-key': 'k1' } })), [
    [{ key: 'api_key', value: 'k1' }],
    [{ key: 'remote_address', value: '203.0.113.7' }],
    [{ key: 'path', value: '/rating' }, { key: 'api_key', value: 'k1' }],
  ]);
});

t.test('an absent header drops the whole descriptor', async (t) => {
  const actions: HttpAction[][] = [
    [header('x-api-key', 'api_key')],
    [header(':path', 'path'), header('x-api-key', 'api_key')],
    [{ type: 'remote_address' }],
  ];
  t.same(descriptorsFromHttp(actions, request()), [[{ key: 'remote_address', value: '203.0.113.7' }]]);
});

t.test('skip_if_absent drops only its own entry', async (t) => {
  const actions: HttpAction[][] = [[header(':path', 'path'), header('x-api-key', 'api_key', true)]];
  t.same(descriptorsFromHttp(actions, request()), [[{ key: 'path', value: '/rating' }]]);
  t.same(descriptorsFromHttp(actions, request({ headers: { 'x-api-key': 'k' } })),
    [[{ key: 'path', value: '/rating' }, { key: 'api_key', value: 'k' }]]);
});

t.test('a descriptor whose actions produced no entry is not produced', async (t) => {
  const actions: HttpAction[][] = [[header('x-api-key', 'api_key', true), query('key', 'api_key', true)]];
  t.same(descriptorsFromHttp(actions, request()), []);
});

t.test('a present header with an empty value is present', async (t) => {
  t.same(descriptorsFromHttp([[header('x-api-key', 'api_key')]], request({ headers: { 'x-api-key': '' } })),
    [[{ key: 'api_key', value: '' }]]);
});

t.test('pseudo-headers come from the request line; :path has no query', async (t) => {
  const actions: HttpAction[][] = [[header(':method', 'method'), header(':path', 'path'), header(':authority', 'host')]];
  t.same(descriptorsFromHttp(actions, request({ method: 'POST', path: '/v1/items', query: 'a=1', authority: 'shop.test' })),
    [[{ key: 'method', value: 'POST' }, { key: 'path', value: '/v1/items' }, { key: 'host', value: 'shop.test' }]]);
  t.same(descriptorsFromHttp([[header(':authority', 'host')]], request({ authority: '' })), [],
    'no authority: absent');
  t.same(descriptorsFromHttp([[header('host', 'host')]], request({ authority: 'shop.test' })),
    [[{ key: 'host', value: 'shop.test' }]], 'host falls back to the authority, as Envoy folds them');
});

t.test('remote_address gives the client address; IPv4-mapped IPv6 as plain IPv4', async (t) => {
  const actions: HttpAction[][] = [[{ type: 'remote_address' }]];
  t.same(descriptorsFromHttp(actions, request({ remoteAddress: '::ffff:198.51.100.4' })),
    [[{ key: 'remote_address', value: '198.51.100.4' }]]);
  t.same(descriptorsFromHttp(actions, request({ remoteAddress: '2001:db8::1' })),
    [[{ key: 'remote_address', value: '2001:db8::1' }]]);
  t.same(descriptorsFromHttp(actions, request({ remoteAddress: '' })), [], 'no address: absent');
});

t.test('masked_remote_address gives the network in CIDR form', async (t) => {
  const at = (remoteAddress: string, v4: number, v6: number) =>
    descriptorsFromHttp([[masked(v4, v6)]], request({ remoteAddress }));
  t.same(at('192.168.1.77', 24, 128), [[{ key: 'masked_remote_address', value: '192.168.1.0/24' }]]);
  t.same(at('192.168.1.77', 32, 128), [[{ key: 'masked_remote_address', value: '192.168.1.77/32' }]]);
  t.same(at('10.200.3.4', 12, 128), [[{ key: 'masked_remote_address', value: '10.192.0.0/12' }]]);
  t.same(at('10.200.3.4', 0, 128), [[{ key: 'masked_remote_address', value: '0.0.0.0/0' }]]);
  t.same(at('::ffff:10.200.3.4', 8, 64), [[{ key: 'masked_remote_address', value: '10.0.0.0/8' }]],
    'IPv4-mapped uses the IPv4 mask');
  t.same(at('2001:db8:85a3:1234:5678:8a2e:370:7334', 32, 64), [[{ key: 'masked_remote_address', value: '2001:db8:85a3:1234::/64' }]]);
  t.same(at('2001:DB8:85A3::8A2E:370:7334', 32, 48), [[{ key: 'masked_remote_address', value: '2001:db8:85a3::/48' }]]);
  t.same(at('2001:db8::1', 32, 128), [[{ key: 'masked_remote_address', value: '2001:db8::1/128' }]]);
  t.same(at('fe80::abcd%eth0', 32, 10), [[{ key: 'masked_remote_address', value: 'fe80::/10' }]], 'zone ignored');
  t.same(at('2001:db8:0:ff::1', 32, 60), [[{ key: 'masked_remote_address', value: '2001:db8:0:f0::/60' }]],
    'a mask inside a group');
  t.same(at('::1', 32, 0), [[{ key: 'masked_remote_address', value: '::/0' }]]);
  t.same(at('not-an-ip', 24, 64), [], 'not an IP address: absent');
  t.same(at('1.2.3', 24, 64), []);
  t.same(at('1.2.3.256', 24, 64), []);
  t.same(at('1::2::3', 24, 64), []);
});

t.test('IPv6 text is RFC 5952: the longest zero run becomes ::', async (t) => {
  t.equal(maskedAddress('1:0:0:1:0:0:0:1', 32, 128), '1:0:0:1::1/128');
  t.equal(maskedAddress('1:0:1:1:1:1:1:1', 32, 128), '1:0:1:1:1:1:1:1/128', 'a single zero group stays');
  t.equal(maskedAddress('0:0:1:0:0:1:0:0', 32, 128), '::1:0:0:1:0:0/128', 'the first of equal runs');
  t.equal(maskedAddress('64:ff9b::192.0.2.33', 32, 128), '64:ff9b::c000:221/128', 'an IPv4 tail parses');
});

t.test('generic_key adds a fixed entry', async (t) => {
  const actions: HttpAction[][] = [[
    { type: 'generic_key', descriptorKey: 'generic_key', descriptorValue: 'everyone' },
    header(':method', 'method'),
  ]];
  t.same(descriptorsFromHttp(actions, request()),
    [[{ key: 'generic_key', value: 'everyone' }, { key: 'method', value: 'GET' }]]);
});

t.test('query_parameters reads a decoded query parameter', async (t) => {
  const at = (q: string, name = 'key') => descriptorsFromHttp([[query(name, 'api_key')]], request({ query: q }));
  t.same(at('key=k1'), [[{ key: 'api_key', value: 'k1' }]]);
  t.same(at('a=1&key=hello%20world+again&b=2'), [[{ key: 'api_key', value: 'hello world again' }]]);
  t.same(at('key=%E2%82%AC'), [[{ key: 'api_key', value: '€' }]], 'UTF-8 percent-encoding');
  t.same(at('key=a%2Bb'), [[{ key: 'api_key', value: 'a+b' }]], 'an encoded + is a plus');
  t.same(at('key=first&key=second'), [[{ key: 'api_key', value: 'first' }]], 'the first value wins');
  t.same(at('key'), [[{ key: 'api_key', value: '' }]], 'a bare name is present and empty');
  t.same(at('key='), [[{ key: 'api_key', value: '' }]]);
  t.same(at('k%65y=v'), [[{ key: 'api_key', value: 'v' }]], 'names are compared decoded');
  t.same(at('my+key=v', 'my key'), [[{ key: 'api_key', value: 'v' }]]);
  t.same(at('key=100%'), [[{ key: 'api_key', value: '100%' }]], 'a malformed escape stays as written');
  t.same(at('key=%E2%82%AC%zz'), [[{ key: 'api_key', value: '€%zz' }]]);
  t.same(at('keys=1&akey=2'), [], 'other names do not match');
  t.same(at(''), [], 'no query: absent');
  t.same(at('&&key=x&'), [[{ key: 'api_key', value: 'x' }]], 'empty pairs are skipped');
});

t.test('an absent query parameter drops the descriptor unless skip_if_absent', async (t) => {
  const actions: HttpAction[][] = [
    [header(':path', 'path'), query('key', 'api_key')],
    [header(':path', 'path'), query('key', 'api_key', true)],
  ];
  t.same(descriptorsFromHttp(actions, request({ query: 'other=1' })), [[{ key: 'path', value: '/rating' }]]);
});

t.test('queryParameter handles a value containing =', async (t) => {
  t.equal(queryParameter('token=a=b', 'token'), 'a=b');
  t.equal(queryParameter('x=1', 'token'), undefined);
});

t.test('no actions: no descriptors', async (t) => {
  t.same(descriptorsFromHttp([], request()), []);
});
