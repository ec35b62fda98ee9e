// Regression tests for issue 14 (bad input to the gRPC APIs was INTERNAL) and
// issue 13 (invalid UTF-8 collapsed distinct values onto one bucket), through
// the real composition root (config, limiter, memory store) on real sockets.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { CHECK_PATH, SHOULD_RATE_LIMIT_PATH } from '../../../src/transport/grpc/service-definitions.js';
import { startAppHarness } from './app-harness.js';
import { call } from '../../helpers/grpc.js';
import { connect, firstMessage, grpcFrame, rawGrpcCall } from '../../helpers/raw-http2.js';
import { all, bytes, int, len, mapEntry, num, str } from '../../helpers/protobuf-wire.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const YEAR = 6;

function rawCall(client: grpc.Client, path: string, body: Buffer): Promise<{ error: grpc.ServiceError | null; bytes?: Buffer }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(path, (b) => b, (b) => b, body, { deadline: Date.now() + 5000 }, (error, response) => {
      resolve({ error, ...(response === undefined ? {} : { bytes: response }) });
    });
  });
}

t.test('issue 14: bad input is INVALID_ARGUMENT', async (t) => {
  const h = await startAppHarness(join(FIXTURES, 'envoy-ratelimit'), { 'default-domain': 'openclaw' });
  t.teardown(() => h.close());

  t.test('regression: undecodable RateLimitRequest bytes were INTERNAL; now INVALID_ARGUMENT naming what is wrong', async (t) => {
    const cases: [string, string][] = [
      ['93', 'RateLimitRequest: truncated varint at byte 0'],
      ['1205', 'descriptors[0]: length 5 at byte 1 runs past the end of the message (0 bytes left)'],
      ['0a0164' + '1204' + '0a02' + '0a05', 'descriptors[0].entries[0].key: length 5 at byte 8 runs past the end of the message (0 bytes left)'],
      ['0801', 'domain: unexpected wire type 0 (varint) in the tag at byte 0'],
      ['0a0164' + '1203' + '1201' + '08', 'descriptors[0].limit.requests_per_unit: truncated varint at byte 8'],
      ['1a00', 'hits_addend: unexpected wire type 2 (length-delimited) in the tag at byte 0'],
      ['18' + 'ff'.repeat(10) + '01', 'hits_addend: varint longer than 10 bytes at byte 1'],
      ['00', 'RateLimitRequest: invalid tag 0 at byte 0 (field number 0)'],
      ['0b', 'domain: unexpected wire type 3 (start-group) in the tag at byte 0'],
      ['7b', '(field 15): unsupported wire type 3 (start-group) in the tag at byte 0'],
      ['490102', '(field 9): truncated 8-byte field (tag at byte 0)'],
      ['0a0164' + '1206' + '0a040a01' + 'ff', 'descriptors[0]: length 6 at byte 4 runs past the end of the message (5 bytes left)'],
      ['0a0164' + '1204' + '0a02' + '0a01', 'descriptors[0].entries[0].key: length 1 at byte 8 runs past the end of the message (0 bytes left)'],
    ];
    for (const [hex, details] of cases) {
      const { error } = await rawCall(h.rls, SHOULD_RATE_LIMIT_PATH, Buffer.from(hex, 'hex'));
      t.equal(error?.code, grpc.status.INVALID_ARGUMENT, `${hex}: INVALID_ARGUMENT`);
      t.equal(error?.details, details, hex);
    }
  });

  t.test('regression: undecodable CheckRequest bytes were INTERNAL; now INVALID_ARGUMENT naming what is wrong', async (t) => {
    const cases: [Buffer, string][] = [
      [Buffer.from('0a05', 'hex'), 'attributes: length 5 at byte 1 runs past the end of the message (0 bytes left)'],
      [Buffer.from('93', 'hex'), 'CheckRequest: truncated varint at byte 0'],
      [len(1, [len(4, [len(2, [Buffer.from('1a03', 'hex'), Buffer.from('0a05', 'hex'), Buffer.from('00', 'hex')])])]),
        'attributes.request.http.headers.key: length 5 at byte 9 runs past the end of the message (1 bytes left)'],
      [len(1, [len(1, [len(1, [len(1, [num(2, 1)])])])]), 'attributes.source.address.socket_address.address: unexpected wire type 0 (varint) in the tag at byte 8'],
      [len(1, [len(4, [len(2, [len(13, [len(1, [num(3, 1)])])])])]), 'attributes.request.http.header_map.headers[0].raw_value: unexpected wire type 0 (varint) in the tag at byte 10'],
      [len(1, [Buffer.from('5205', 'hex')]), 'attributes.context_extensions: length 5 at byte 3 runs past the end of the message (0 bytes left)'],
    ];
    for (const [body, details] of cases) {
      const { error } = await rawCall(h.authz, CHECK_PATH, body);
      t.equal(error?.code, grpc.status.INVALID_ARGUMENT, `${body.toString('hex')}: INVALID_ARGUMENT`);
      t.equal(error?.details, details, body.toString('hex'));
    }
  });

  t.test('regression (found by the fuzz suite): undecodable HealthCheckRequest bytes were INTERNAL "Error deserializing request"', async (t) => {
    const { error } = await rawCall(h.health, '/grpc.health.v1.Health/Check', Buffer.from('530a00', 'hex'));
    t.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    t.equal(error?.details, '(field 10): unsupported wire type 3 (start-group) in the tag at byte 0');
    const watch = h.health.makeServerStreamRequest<Buffer, Buffer>('/grpc.health.v1.Health/Watch', (b) => b, (b) => b, Buffer.from('93', 'hex'), { deadline: Date.now() + 5000 });
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      watch.on('data', () => undefined);
      watch.on('error', () => undefined);
      watch.on('status', resolve);
    });
    t.equal(status.code, grpc.status.INVALID_ARGUMENT, 'Watch too');
    t.equal(status.details, 'HealthCheckRequest: truncated varint at byte 0');
  });

  t.test('regression (found by the fuzz suite): status details quoting invalid UTF-8 were UNKNOWN (grpc-js encodeURI threw on the lone surrogate)', async (t) => {
    const { error } = await rawCall(h.health, '/grpc.health.v1.Health/Check', len(1, Buffer.from([0x24, 0x84, 0x22, 0xed, 0xa0, 0x80])));
    t.equal(error?.code, grpc.status.NOT_FOUND);
    t.equal(error?.details, 'unknown service "$\\x84"\\xed\\xa0\\x80"', 'each invalid byte shown as \\xNN');
  });

  t.test('regression: a limit override that cannot be counted exactly was INTERNAL (compileLimit threw in the limiter)', async (t) => {
    for (const requestsPerUnit of [4_294_967_295, 300_000_001]) {
      const { error } = await call(h.rls, 'ShouldRateLimit', {
        domain: 'another_tb',
        descriptors: [{ entries: [{ key: 'key3', value: `v${requestsPerUnit}` }], limit: { requests_per_unit: requestsPerUnit, unit: YEAR } }],
      });
      t.equal(error?.code, grpc.status.INVALID_ARGUMENT, `${requestsPerUnit}/YEAR`);
      t.equal(error?.details, `descriptors[0].limit.requests_per_unit: ${requestsPerUnit} per year cannot be counted exactly in integers (use a shorter unit or a rounder number)`);
    }
    const { error, response } = await call(h.rls, 'ShouldRateLimit', {
      domain: 'another_tb',
      descriptors: [{ entries: [{ key: 'key3', value: 'round' }], limit: { requests_per_unit: 300_000_000, unit: YEAR } }],
    });
    t.equal(error, null, '300000000/YEAR is decided');
    t.same(response.statuses[0].current_limit, { requests_per_unit: 300_000_000, unit: YEAR, name: '' });
  });

  t.test('regression (found by a new-user review): a uint32 varint holding more than 32 bits was cut to its low bits (2^32 + 21 decided as a cost of 21)', async (t) => {
    const entry = len(1, [len(1, 'key2'), len(2, 'wide')]);
    const descriptor = len(2, [entry]);
    for (const [name, request, field] of [
      ['hits_addend 2^32 + 21', Buffer.concat([len(1, 'another'), descriptor, num(3, 2n ** 32n + 21n)]), 'hits_addend'],
      ['hits_addend 2^40', Buffer.concat([len(1, 'another'), descriptor, num(3, 2n ** 40n)]), 'hits_addend'],
      ['limit.requests_per_unit 2^32 + 5', Buffer.concat([len(1, 'another'),
        len(2, [entry, len(2, [num(1, 2n ** 32n + 5n), num(2, 3)])])]), 'descriptors[0].limit.requests_per_unit'],
    ] as const) {
      const { error } = await rawCall(h.rls, SHOULD_RATE_LIMIT_PATH, request);
      t.equal(error?.code, grpc.status.INVALID_ARGUMENT, name);
      t.ok(error?.details.startsWith(`${field}: must be at most 4294967295 (a uint32), got `), `${name}: names ${field} (${error?.details})`);
    }
    const { error } = await rawCall(h.rls, SHOULD_RATE_LIMIT_PATH, Buffer.concat([len(1, 'another'), descriptor, num(3, 4_294_967_295)]));
    t.equal(error, null, 'hits_addend 2^32 - 1 is decided');
  });

  t.test('gzip: a valid gzip body is decoded; one of bad bytes is INVALID_ARGUMENT', async (t) => {
    const session = await connect(h.app.grpcPort);
    t.teardown(() => session.close());
    const good = Buffer.concat([len(1, 'another_tb'), len(2, [len(1, [len(1, 'key3'), len(2, `gz-${Date.now()}`)])])]);
    const ok = await rawGrpcCall(session, SHOULD_RATE_LIMIT_PATH, grpcFrame(gzipSync(good), true), { headers: { 'grpc-encoding': 'gzip' } });
    t.equal(ok.grpcStatus, grpc.status.OK);
    t.equal(int(firstMessage(ok.body)!, 1), 1, 'overall_code OK');
    const bad = await rawGrpcCall(session, SHOULD_RATE_LIMIT_PATH, grpcFrame(gzipSync(Buffer.from('93', 'hex')), true), { headers: { 'grpc-encoding': 'gzip' } });
    t.equal(bad.grpcStatus, grpc.status.INVALID_ARGUMENT);
    t.equal(bad.grpcMessage, 'RateLimitRequest: truncated varint at byte 0');
  });

  t.test('known limitation: a corrupt gzip body is INTERNAL, chosen inside grpc-js below every hook (see docs/api.md "gRPC status codes")', async (t) => {
    // grpc-js BaseServerInterceptingCall.decompressMessage rejects with INTERNAL
    // "Failed to decompress message" and decompressAndMaybePush sends it with the
    // base call's own sendStatus: no interceptor, option or deserializer sees it.
    // If this starts failing, grpc-js changed: drop the fuzz suite's exception too.
    const session = await connect(h.app.grpcPort);
    t.teardown(() => session.close());
    const corrupt = await rawGrpcCall(session, SHOULD_RATE_LIMIT_PATH, grpcFrame(Buffer.from('1f8b0800deadbeef', 'hex'), true), { headers: { 'grpc-encoding': 'gzip' } });
    t.equal(corrupt.grpcStatus, grpc.status.INTERNAL);
    t.equal(corrupt.grpcMessage, 'Failed to decompress message');
    const after = await call(h.health, 'Check', { service: '' });
    t.same(after.response, { status: 1 }, 'still serving');
  });
});

t.test('issue 14: keys are built from bytes', async (t) => {
  const h = await startAppHarness(join(FIXTURES, 'envoy-ratelimit'), { 'default-domain': 'openclaw' });
  t.teardown(() => h.close());
  const variants = [[0xff], [0xfe], [0xef, 0xbf, 0xbd]];
  const stamp = Buffer.from(`${Date.now()}-`);

  t.test('regression: RLS values v\\xff, v\\xfe and v\\xef\\xbf\\xbd shared one bucket; each now sees a fresh one', async (t) => {
    const remaining = async (tail: number[]): Promise<number> => {
      const value = Buffer.concat([stamp, Buffer.from('v'), Buffer.from(tail)]);
      const request = Buffer.concat([len(1, 'another_tb'), len(2, [len(1, [len(1, 'key3'), len(2, value)])])]);
      const { error, bytes: out } = await rawCall(h.rls, SHOULD_RATE_LIMIT_PATH, request);
      t.equal(error, null);
      return int(all(out!, 2)[0]!.value as Buffer, 3);
    };
    for (const tail of variants) t.equal(await remaining(tail), 9, `v + ${Buffer.from(tail).toString('hex')}: a fresh 10/hour bucket`);
    t.equal(await remaining(variants[0]!), 8, 'the same bytes again: the same bucket');
  });

  t.test('regression: ext_authz header_map raw_value bytes collapsed the same way; each now has its own bucket', async (t) => {
    const remaining = async (tail: number[]): Promise<string> => {
      const apiKey = Buffer.concat([stamp, Buffer.from('k'), Buffer.from(tail)]);
      const request = len(1, [
        len(1, [len(1, [len(1, [len(2, '198.51.100.77')])])]),
        len(4, [len(2, [len(2, 'GET'), len(4, '/r'), len(13, [len(1, [len(1, 'x-api-key'), len(3, apiKey)])])])]),
        mapEntry(10, 'domain', 'openclaw'),
      ]);
      const { error, bytes: out } = await rawCall(h.authz, CHECK_PATH, request);
      t.equal(error, null);
      const ok = bytes(out!, 3);
      const headers = all(ok, 6).map((f) => bytes(f.value as Buffer, 1));
      return str(headers.find((hv) => str(hv, 1) === 'x-ratelimit-remaining')!, 2);
    };
    for (const tail of variants) t.equal(await remaining(tail), '2', `k + ${Buffer.from(tail).toString('hex')}: a fresh 3/minute bucket`);
    t.equal(await remaining(variants[1]!), '1', 'the same bytes again: the same bucket');
  });
});
