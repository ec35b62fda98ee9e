// Field numbers pinned against Envoy's protos with hand-written bytes.
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { decodeCheckRequest, encodeCheckResponse } from '../../../src/transport/grpc/authz-codec.js';
import { loadPackageDefinition } from '../../../src/transport/grpc/proto-root.js';
import { decodeRateLimitRequest, encodeRateLimitResponse } from '../../../src/transport/grpc/rls-codec.js';
import { DEFAULT_REQUEST_BOUNDS } from '../../../src/core/request-bounds.js';
import { FakeDecisionService, decision, limitedStatus, noLimitStatus, startHarness } from '../../helpers/grpc.js';
import { all, bytes, fieldNumbers, int, len, mapEntry, num, str, tag, varint } from '../../helpers/protobuf-wire.js';

type Method = { requestDeserialize(b: Buffer): any; responseSerialize(o: unknown): Buffer };
const definition = loadPackageDefinition() as unknown as Record<string, Record<string, Method>>;
const rlsMethod = definition['envoy.service.ratelimit.v3.RateLimitService']!['ShouldRateLimit']!;
const checkMethod = definition['envoy.service.auth.v3.Authorization']!['Check']!;

// RateLimitRequest {1 domain, 2 descriptors, 3 hits_addend}; RateLimitDescriptor {1 entries
// {1 key, 2 value}, 2 limit {1 requests_per_unit, 2 unit}, 3 hits_addend UInt64Value {1 value}}.
const RATE_LIMIT_REQUEST = Buffer.concat([
  len(1, 'envoy'),
  len(2, [
    len(1, [len(1, 'remote_address'), len(2, '10.0.0.1')]),
    len(1, [len(1, 'path'), len(2, '/foo')]),
    len(2, [num(1, 42), num(2, 2)]),
    len(3, []), // UInt64Value{value: 0}: present, empty
  ]),
  len(2, [len(1, [len(1, 'k'), len(2, 'v')]), len(3, [num(1, 5)])]),
  num(3, 3),
]);

// CheckRequest {1 attributes}; AttributeContext {1 source Peer {1 address Address {1 socket_address
// SocketAddress {2 address, 3 port_value}}}, 4 request Request {2 http HttpRequest {1 id, 2 method,
// 3 headers map, 4 path, 5 host, 6 scheme, 9 size, 10 protocol}}, 10 context_extensions map}.
const CHECK_REQUEST = Buffer.concat([
  len(1, [
    len(1, [len(1, [len(1, [num(1, 0), len(2, '203.0.113.7'), num(3, 51234)])])]),
    len(2, [len(1, [len(1, [len(2, '10.0.0.2'), num(3, 10000)])])]),
    len(4, [len(2, [
      len(1, 'req-1'),
      len(2, 'GET'),
      mapEntry(3, ':path', '/p?q=1'),
      mapEntry(3, 'x-api-key', 'k1'),
      len(4, '/p?q=1'),
      len(5, 'example.com'),
      len(6, 'https'),
      num(9, -1),
      len(10, 'HTTP/2'),
    ])]),
    mapEntry(10, 'domain', 'golden'),
  ]),
]);

t.test('our protos decode a RateLimitRequest built from Envoy field numbers', async (t) => {
  const m = rlsMethod.requestDeserialize(RATE_LIMIT_REQUEST);
  t.equal(m.domain, 'envoy');
  t.equal(m.hits_addend, 3);
  t.same(m.descriptors[0].entries, [{ key: 'remote_address', value: '10.0.0.1' }, { key: 'path', value: '/foo' }]);
  t.same(m.descriptors[0].limit, { requests_per_unit: 42, unit: 2 });
  t.same(m.descriptors[0].hits_addend, { value: '0' }, 'an empty UInt64Value is present');
  t.same(m.descriptors[1].hits_addend, { value: '5' });
  t.equal(m.descriptors[1].limit, null);
});

t.test('our protos decode a CheckRequest built from Envoy field numbers', async (t) => {
  const m = checkMethod.requestDeserialize(CHECK_REQUEST);
  const a = m.attributes;
  t.equal(a.source.address.socket_address.address, '203.0.113.7');
  t.equal(a.source.address.socket_address.port_value, 51234);
  t.equal(a.destination.address.socket_address.address, '10.0.0.2');
  const http = a.request.http;
  t.equal(http.id, 'req-1');
  t.equal(http.method, 'GET');
  t.same(http.headers, { ':path': '/p?q=1', 'x-api-key': 'k1' });
  t.equal(http.path, '/p?q=1');
  t.equal(http.host, 'example.com');
  t.equal(http.scheme, 'https');
  t.equal(http.size, '-1');
  t.equal(http.protocol, 'HTTP/2');
  t.same(a.context_extensions, { domain: 'golden' });
});

function rawCall(client: grpc.Client, path: string, body: Buffer): Promise<{ error: grpc.ServiceError | null; bytes?: Buffer }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(path, (b) => b, (b) => b, body, (error, response) => {
      resolve({ error, ...(response === undefined ? {} : { bytes: response }) });
    });
  });
}

t.test('over the socket: hand-built bytes in, hand-parsed bytes out', async (t) => {
  const service = new FakeDecisionService();
  const h = await startHarness(service, { responseHeaders: true });
  t.teardown(() => h.close());

  t.test('RateLimitRequest reaches the service with per-descriptor hits_addend and the override', async (t) => {
    service.answer = (request) => decision(request.descriptors.map(() => limitedStatus()));
    const { error } = await rawCall(h.rls, '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit', RATE_LIMIT_REQUEST);
    t.equal(error, null);
    t.same(service.decideCalls.at(-1)?.request, {
      domain: 'envoy',
      hitsAddend: 3,
      descriptors: [
        { entries: [{ key: 'remote_address', value: '10.0.0.1' }, { key: 'path', value: '/foo' }], limitOverride: { requestsPerUnit: 42, unit: 'minute' }, hitsAddend: 0 },
        { entries: [{ key: 'k', value: 'v' }], hitsAddend: 5 },
      ],
    });
  });

  t.test('RateLimitResponse bytes carry Envoy field numbers', async (t) => {
    service.answer = () => decision([
      limitedStatus({ code: 'OVER_LIMIT', limit: { requestsPerUnit: 10, unit: 'hour', name: 'n', burst: 10 }, limitRemaining: 0, durationUntilResetMs: 1500, retryAfterS: 360 }),
      noLimitStatus(4294967295),
    ]);
    const { bytes: out } = await rawCall(h.rls, '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit', RATE_LIMIT_REQUEST);
    const body = out!;
    t.equal(int(body, 1), 2, 'overall_code = 1: OVER_LIMIT = 2');
    const statuses = all(body, 2).map((f) => f.value as Buffer);
    t.equal(statuses.length, 2, 'statuses = 2');
    const s0 = statuses[0]!;
    t.equal(int(s0, 1), 2, 'DescriptorStatus.code = 1');
    const limit = bytes(s0, 2);
    t.equal(int(limit, 1), 10, 'RateLimit.requests_per_unit = 1');
    t.equal(int(limit, 2), 3, 'RateLimit.unit = 2, HOUR = 3');
    t.equal(str(limit, 3), 'n', 'RateLimit.name = 3');
    t.equal(int(s0, 3), 0, 'DescriptorStatus.limit_remaining = 3 (protobufjs writes set defaults; valid proto3)');
    const duration = bytes(s0, 4);
    t.equal(int(duration, 1), 1, 'Duration.seconds = 1');
    t.equal(int(duration, 2), 500_000_000, 'Duration.nanos = 2');
    const s1 = statuses[1]!;
    t.same(fieldNumbers(s1), [1, 3], 'no current_limit, no duration');
    t.equal(int(s1, 1), 1);
    t.equal(int(s1, 3), 4294967295, 'DescriptorStatus.limit_remaining = 3');
    const headers = all(body, 3).map((f) => f.value as Buffer);
    t.same(headers.map((hv) => [str(hv, 1), str(hv, 2)]), [
      ['x-ratelimit-limit', '10'], ['x-ratelimit-remaining', '0'], ['x-ratelimit-reset', '2'], ['retry-after', '360'],
    ], 'response_headers_to_add = 3, HeaderValue {key = 1, value = 2}');
    t.same([...new Set(fieldNumbers(body))], [1, 2, 3]);
  });

  t.test('CheckRequest reaches descriptorsFromHttp with the parsed request', async (t) => {
    service.httpInputs = [];
    service.answer = (request) => decision(request.descriptors.map(() => limitedStatus()));
    const { error } = await rawCall(h.authz, '/envoy.service.auth.v3.Authorization/Check', CHECK_REQUEST);
    t.equal(error, null);
    const seen = service.httpInputs[0]!;
    t.equal(seen.domain, 'golden');
    t.equal(seen.input.method, 'GET');
    t.equal(seen.input.path, '/p');
    t.equal(seen.input.query, 'q=1');
    t.equal(seen.input.authority, 'example.com');
    t.equal(seen.input.remoteAddress, '203.0.113.7');
    t.equal(seen.input.header('x-api-key'), 'k1');
  });

  t.test('denied CheckResponse bytes carry Envoy field numbers', async (t) => {
    service.answer = () => decision([limitedStatus({ code: 'OVER_LIMIT', limitRemaining: 0, durationUntilResetMs: 60_000, retryAfterS: 6 })]);
    const { bytes: out } = await rawCall(h.authz, '/envoy.service.auth.v3.Authorization/Check', CHECK_REQUEST);
    const body = out!;
    t.same(fieldNumbers(body), [1, 2], 'status = 1, denied_response = 2');
    const status = bytes(body, 1);
    t.equal(int(status, 1), 8, 'google.rpc.Status.code = 1: RESOURCE_EXHAUSTED');
    const denied = bytes(body, 2);
    t.equal(int(bytes(denied, 1), 1), 429, 'DeniedHttpResponse.status = 1, HttpStatus.code = 1');
    const options = all(denied, 2).map((f) => f.value as Buffer);
    const pairs = options.map((o) => [str(bytes(o, 1), 1), str(bytes(o, 1), 2), int(o, 3)]);
    t.same(pairs.find((p) => p[0] === 'retry-after'), ['retry-after', '6', 2], 'HeaderValueOption {header = 1, append_action = 3}');
    t.ok(str(denied, 3).includes('OVER_LIMIT'), 'DeniedHttpResponse.body = 3');
  });

  t.test('allowed CheckResponse bytes carry Envoy field numbers', async (t) => {
    service.answer = () => decision([limitedStatus({ limitRemaining: 4, durationUntilResetMs: 1000 })]);
    const { bytes: out } = await rawCall(h.authz, '/envoy.service.auth.v3.Authorization/Check', CHECK_REQUEST);
    const body = out!;
    t.same(fieldNumbers(body), [1, 3], 'status = 1 (code 0: empty), ok_response = 3');
    const status = bytes(body, 1);
    t.ok(fieldNumbers(status).every((n) => n !== 1) || int(status, 1) === 0, 'google.rpc.Status.code = 1 is 0 (or absent)');
    const ok = bytes(body, 3);
    t.same([...new Set(fieldNumbers(ok))], [6], 'OkHttpResponse.response_headers_to_add = 6');
    const keys = all(ok, 6).map((f) => str(bytes(f.value as Buffer, 1), 1));
    t.same(keys, ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']);
  });

  t.test('HealthCheckResponse bytes: status = 1, SERVING = 1', async (t) => {
    const { bytes: out } = await rawCall(h.health, '/grpc.health.v1.Health/Check', len(1, 'ratelimit'));
    t.equal(int(out!, 1), 1);
  });
});

// Our codec (rls-codec.ts, authz-codec.ts) against the same hand-built bytes,
// and its output byte for byte.

const hex = (b: Buffer | Error): string => (b instanceof Error ? `Error: ${b.message}` : b.toString('hex'));

t.test('our codec decodes the RateLimitRequest straight into a DecisionRequest', async (t) => {
  t.same(decodeRateLimitRequest(RATE_LIMIT_REQUEST, DEFAULT_REQUEST_BOUNDS), {
    domain: 'envoy',
    hitsAddend: 3,
    descriptors: [
      { entries: [{ key: 'remote_address', value: '10.0.0.1' }, { key: 'path', value: '/foo' }], limitOverride: { requestsPerUnit: 42, unit: 'minute' }, hitsAddend: 0 },
      { entries: [{ key: 'k', value: 'v' }], hitsAddend: 5 },
    ],
  });
});

t.test('our codec decodes the CheckRequest into the HTTP request it asks about', async (t) => {
  const m = decodeCheckRequest(CHECK_REQUEST);
  if (m instanceof Error) throw m;
  t.equal(m.requestedDomain, 'golden');
  t.equal(m.remoteAddress, '203.0.113.7', 'source, not destination');
  t.equal(m.method, 'GET');
  t.equal(m.path, '/p');
  t.equal(m.query, 'q=1');
  t.equal(m.authority, 'example.com');
  t.equal(m.header('x-api-key'), 'k1');
  t.equal(m.header(':path'), '/p');
});

t.test('unknown fields of every wire type are skipped, known ones still read', async (t) => {
  const unknown = Buffer.concat([
    tag(15, 5), Buffer.from([1, 2, 3, 4]), // fixed32
    tag(16, 1), Buffer.alloc(8, 0xff), // fixed64
    num(99, 2n ** 64n - 1n), // a ten-byte varint
    len(2047, [len(1, [num(3, 1)]), len(2, 'nested')]), // a nested message
    varint(536_870_911 * 8 + 2), varint(3), Buffer.from('max'), // the largest field number (wire.ts's tag() is 32-bit)
  ]);
  const request = Buffer.concat([unknown, len(1, 'd'), unknown, len(2, [unknown, len(1, [unknown, len(1, 'k'), unknown, len(2, 'v')]), len(3, [unknown, num(1, 2)])]), unknown]);
  t.same(decodeRateLimitRequest(request, DEFAULT_REQUEST_BOUNDS), {
    domain: 'd', hitsAddend: 0, descriptors: [{ entries: [{ key: 'k', value: 'v' }], hitsAddend: 2 }],
  });
  const check = decodeCheckRequest(Buffer.concat([unknown, len(1, [unknown, len(4, [unknown, len(2, [unknown, len(2, 'PUT'), unknown])])])]));
  if (check instanceof Error) throw check;
  t.equal(check.method, 'PUT');
  // Fields of these messages we do not read may come with any wire type: Peer.service (2) as a varint.
  const peer = decodeCheckRequest(len(1, [len(1, [num(2, 7), len(1, [len(1, [len(2, '192.0.2.9')])])])]));
  t.equal((peer as { remoteAddress: string }).remoteAddress, '192.0.2.9');
});

t.test('a sub-message that occurs twice is merged, as protobuf says', async (t) => {
  const request = Buffer.concat([
    len(2, [len(1, [len(1, 'k')]), len(2, [num(1, 42)]), len(3, [num(1, 9)]), len(2, [num(2, 3)]), len(3, []), len(1, [len(2, 'v2')])]),
    len(1, 'first'), len(1, 'second'),
  ]);
  t.same(decodeRateLimitRequest(request, DEFAULT_REQUEST_BOUNDS), {
    domain: 'second', hitsAddend: 0,
    descriptors: [{ entries: [{ key: 'k', value: '' }, { key: '', value: 'v2' }], limitOverride: { requestsPerUnit: 42, unit: 'hour' }, hitsAddend: 9 }],
  }, 'the limit takes 42 from one and HOUR from the other; an empty UInt64Value keeps 9; the last domain wins');
  const check = decodeCheckRequest(Buffer.concat([
    len(1, [len(1, [len(1, [len(1, [len(2, '198.51.100.1')])])]), mapEntry(10, 'domain', 'a')]),
    len(1, [len(4, [len(2, [len(2, 'POST'), mapEntry(3, 'x-api-key', 'k7')])]), mapEntry(10, 'other', 'x')]),
  ]));
  if (check instanceof Error) throw check;
  t.equal(check.remoteAddress, '198.51.100.1');
  t.equal(check.method, 'POST');
  t.equal(check.header('x-api-key'), 'k7');
  t.equal(check.requestedDomain, 'a', 'other context extensions do not touch the domain');
});

t.test('header_map: raw_value bytes win over value, names compare lower-case, repeats join', async (t) => {
  const m = decodeCheckRequest(len(1, [len(4, [len(2, [
    mapEntry(3, 'x-api-key', 'from-the-map'),
    len(13, [
      len(1, [len(1, 'X-Api-Key'), len(3, Buffer.from([0x6b, 0xff]))]),
      len(1, [len(1, 'x-multi'), len(2, 'a')]),
      len(1, [len(1, 'x-multi'), len(2, 'ignored'), len(3, 'b')]),
      len(1, [len(1, ':path'), len(3, '/raw?q=1')]),
    ]),
  ])])]));
  if (m instanceof Error) throw m;
  t.equal(m.header('x-api-key'), 'k\udcff', 'the invalid byte is kept as U+DCFF');
  t.equal(m.header('x-multi'), 'a,b');
  t.equal(m.path, '/raw');
  t.equal(m.query, 'q=1');
});

t.test('strings keep invalid UTF-8 bytes distinct (regression: v\\xff, v\\xfe and v\\xef\\xbf\\xbd were one value)', async (t) => {
  const values = [[0x76, 0xff], [0x76, 0xfe], [0x76, 0xef, 0xbf, 0xbd]].map((b) => Buffer.from(b));
  const decoded = values.map((value) => {
    const request = decodeRateLimitRequest(Buffer.concat([len(1, value), len(2, [len(1, [len(1, value), len(2, value)])])]), DEFAULT_REQUEST_BOUNDS);
    if (request instanceof Error) throw request;
    const entry = request.descriptors[0]!.entries[0]!;
    t.equal(entry.key, request.domain);
    t.equal(entry.value, request.domain);
    return request.domain;
  });
  t.same(decoded, ['v\udcff', 'v\udcfe', 'v\ufffd']);
});

t.test('our RateLimitResponse bytes, byte for byte', async (t) => {
  const out = encodeRateLimitResponse(decision([
    limitedStatus({ code: 'OVER_LIMIT', limit: { requestsPerUnit: 10, unit: 'hour', name: 'n', burst: 10 }, limitRemaining: 0, durationUntilResetMs: 1500, retryAfterS: 360 }),
    noLimitStatus(4294967295),
    limitedStatus({ limit: { requestsPerUnit: 0, unit: 'week', name: undefined, burst: 0 }, limitRemaining: 0, durationUntilResetMs: 0 }),
  ]), true);
  t.equal(hex(out), hex(Buffer.concat([
    num(1, 2),
    len(2, [num(1, 2), len(2, [num(1, 10), num(2, 3), len(3, 'n')]), num(3, 0), len(4, [num(1, 1), num(2, 500_000_000)])]),
    len(2, [num(1, 1), num(3, 4294967295)]),
    len(2, [num(1, 1), len(2, [num(1, 0), num(2, 7)]), num(3, 0), len(4, [])]),
    len(3, [len(1, 'x-ratelimit-limit'), len(2, '10')]),
    len(3, [len(1, 'x-ratelimit-remaining'), len(2, '0')]),
    len(3, [len(1, 'x-ratelimit-reset'), len(2, '2')]),
    len(3, [len(1, 'retry-after'), len(2, '360')]),
  ])));
  t.equal(hex(encodeRateLimitResponse(decision([noLimitStatus()]), false)), hex(Buffer.concat([num(1, 1), len(2, [num(1, 1), num(3, 0)])])));
});

t.test('a sub-message of 128 bytes or more gets a multi-byte length', async (t) => {
  for (const size of [125, 126, 127, 128, 200, 16_383, 16_384, 70_000]) {
    const name = 'é'.repeat(size / 2) + 'n'.repeat(size % 2);
    const out = encodeRateLimitResponse(decision([limitedStatus({ limit: { requestsPerUnit: 1, unit: 'second', name, burst: 1 }, limitRemaining: 1, durationUntilResetMs: 0 })]), false);
    const expected = Buffer.concat([num(1, 1), len(2, [num(1, 1), len(2, [num(1, 1), num(2, 1), len(3, name)]), num(3, 1), len(4, [])])]);
    t.equal(hex(out), hex(expected), `name of ${Buffer.byteLength(name)} bytes`);
  }
});

t.test('our CheckResponse bytes, byte for byte', async (t) => {
  const option = (key: string, value: string, field: number) => len(field, [len(1, [len(1, key), len(2, value)]), num(3, 2)]);
  t.equal(hex(encodeCheckResponse(undefined)), hex(Buffer.concat([len(1, []), len(3, [])])), 'no descriptor: status 0, empty ok_response');
  t.equal(hex(encodeCheckResponse(decision([limitedStatus({ limitRemaining: 4, durationUntilResetMs: 1000 })]))), hex(Buffer.concat([
    len(1, []),
    len(3, [option('x-ratelimit-limit', '10', 6), option('x-ratelimit-remaining', '4', 6), option('x-ratelimit-reset', '1', 6)]),
  ])));
  t.equal(hex(encodeCheckResponse(decision([limitedStatus({ code: 'OVER_LIMIT', limitRemaining: 0, durationUntilResetMs: 60_000, retryAfterS: 6 })]))), hex(Buffer.concat([
    len(1, [num(1, 8), len(2, 'over limit')]),
    len(2, [
      len(1, [num(1, 429)]),
      option('x-ratelimit-limit', '10', 2), option('x-ratelimit-remaining', '0', 2), option('x-ratelimit-reset', '60', 2), option('retry-after', '6', 2),
      option('content-type', 'application/json', 2),
      len(3, '{"overall_code":"OVER_LIMIT","retry_after_s":6}'),
    ]),
  ])));
});
