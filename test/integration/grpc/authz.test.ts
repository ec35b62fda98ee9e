import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { InvalidRequestError, StoreUnavailableError } from '../../../src/errors.js';
import { FakeDecisionService, call, decision, limitedStatus, startHarness } from '../../helpers/grpc.js';

/** A CheckRequest shaped as Envoy's HTTP ext_authz filter sends it. */
function envoyCheckRequest(overrides: { path?: string; headers?: Record<string, string>; context?: Record<string, string> } = {}) {
  const path = overrides.path ?? '/rating?sku=42&x=1';
  return {
    attributes: {
      source: { address: { socket_address: { address: '203.0.113.7', port_value: 51234 } } },
      destination: { address: { socket_address: { address: '10.0.0.2', port_value: 10000 } } },
      request: {
        time: { seconds: 1767225600, nanos: 0 },
        http: {
          id: '1234567890',
          method: 'POST',
          headers: {
            ':authority': 'api.openclaw.test',
            ':method': 'POST',
            ':path': path,
            ':scheme': 'https',
            'x-api-key': 'k1',
            'x-forwarded-proto': 'https',
            ...overrides.headers,
          },
          path,
          host: 'api.openclaw.test',
          scheme: 'https',
          protocol: 'HTTP/1.1',
          size: '-1',
        },
      },
      context_extensions: overrides.context ?? {},
    },
  };
}

const headerMap = (options: any[]) => Object.fromEntries(options.map((o) => [o.header.key, o.header.value]));

t.test('ext_authz Check', async (t) => {
  const service = new FakeDecisionService();
  const h = await startHarness(service);
  t.teardown(() => h.close());
  t.beforeEach(() => {
    service.decideCalls = [];
    service.httpInputs = [];
    service.defaultDomain = 'openclaw';
    service.httpDescriptors = [{ entries: [{ key: 'api_key', value: 'k1' }] }];
    service.answer = (request) => decision(request.descriptors.map(() => limitedStatus()));
  });

  t.test('builds the HTTP input from attributes.request.http and the source address', async (t) => {
    const { error } = await call(h.authz, 'Check', envoyCheckRequest());
    t.equal(error, null);
    const seen = service.httpInputs[0];
    t.equal(seen?.domain, 'openclaw', 'default domain when no context extension');
    const input = seen!.input;
    t.equal(input.method, 'POST');
    t.equal(input.path, '/rating', 'query split off');
    t.equal(input.query, 'sku=42&x=1');
    t.equal(input.authority, 'api.openclaw.test');
    t.equal(input.remoteAddress, '203.0.113.7');
    t.equal(input.header('x-api-key'), 'k1');
    t.equal(input.header(':path'), '/rating', ':path without the query');
    t.equal(input.header(':method'), 'POST');
    t.equal(input.header(':authority'), 'api.openclaw.test');
    t.equal(input.header('absent'), undefined);
    t.equal(input.header('constructor'), undefined, 'no prototype keys');
    t.same(service.decideCalls[0]?.request, { domain: 'openclaw', descriptors: [{ entries: [{ key: 'api_key', value: 'k1' }] }] });
    t.equal(service.decideCalls[0]?.api, 'grpc_authz');
  });

  t.test('context_extensions["domain"] picks the domain', async (t) => {
    await call(h.authz, 'Check', envoyCheckRequest({ context: { domain: 'partner' } }));
    t.equal(service.httpInputs[0]?.domain, 'partner');
    t.equal(service.decideCalls[0]?.request.domain, 'partner');
  });

  t.test('no domain resolvable is INVALID_ARGUMENT', async (t) => {
    service.defaultDomain = undefined;
    const { error } = await call(h.authz, 'Check', envoyCheckRequest());
    t.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    t.match(error?.details, /^domain: /);
  });

  t.test('encode_raw_headers: header_map with raw_value bytes is read, repeats joined', async (t) => {
    const request = envoyCheckRequest();
    const http = request.attributes.request.http as any;
    http.headers = {};
    http.header_map = {
      headers: [
        { key: ':path', raw_value: Buffer.from('/raw?q=1') },
        { key: 'x-api-key', raw_value: Buffer.from('k9') },
        { key: 'x-multi', raw_value: Buffer.from('a') },
        { key: 'x-multi', raw_value: Buffer.from('b') },
      ],
    };
    http.path = '';
    await call(h.authz, 'Check', request);
    const input = service.httpInputs[0]!.input;
    t.equal(input.header('x-api-key'), 'k9');
    t.equal(input.header('x-multi'), 'a,b');
    t.equal(input.path, '/raw');
    t.equal(input.query, 'q=1');
  });

  t.test('no descriptors: allowed without calling decide', async (t) => {
    service.httpDescriptors = [];
    const { response } = await call(h.authz, 'Check', envoyCheckRequest());
    t.equal(response.status.code, 0);
    t.equal(response.http_response, 'ok_response');
    t.same(response.ok_response.response_headers_to_add, []);
    t.equal(service.decideCalls.length, 0);
  });

  t.test('an empty CheckRequest is answered, not crashed on', async (t) => {
    service.httpDescriptors = [];
    const { error, response } = await call(h.authz, 'Check', {});
    t.equal(error, null);
    t.equal(response.status.code, 0);
    t.equal(service.httpInputs[0]?.input.path, '/');
    t.equal(service.httpInputs[0]?.input.remoteAddress, '');
  });

  t.test('allowed: status 0, ok_response with x-ratelimit-* to the client', async (t) => {
    service.answer = () => decision([limitedStatus({ limitRemaining: 4, durationUntilResetMs: 30_000 })]);
    const { response } = await call(h.authz, 'Check', envoyCheckRequest());
    t.equal(response.status.code, 0);
    t.equal(response.http_response, 'ok_response');
    t.notOk(response.denied_response);
    t.same(headerMap(response.ok_response.response_headers_to_add), {
      'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '4', 'x-ratelimit-reset': '30',
    });
    t.ok(response.ok_response.response_headers_to_add.every((o: any) => o.append_action === 2), 'overwrite, not append');
    t.same(response.ok_response.headers, [], 'upstream request untouched');
  });

  t.test('denied: status 8, denied_response 429 with retry-after, x-ratelimit-* and a body', async (t) => {
    service.answer = () => decision([limitedStatus({ code: 'OVER_LIMIT', limitRemaining: 0, durationUntilResetMs: 60_000, retryAfterS: 6 })]);
    const { response } = await call(h.authz, 'Check', envoyCheckRequest());
    t.equal(response.status.code, 8);
    t.equal(response.http_response, 'denied_response');
    t.equal(response.denied_response.status.code, 429);
    t.same(headerMap(response.denied_response.headers), {
      'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '60', 'retry-after': '6',
      'content-type': 'application/json',
    });
    t.same(JSON.parse(response.denied_response.body), { overall_code: 'OVER_LIMIT', retry_after_s: 6 });
  });

  t.test('store failure under deny: gRPC UNAVAILABLE, not a CheckResponse', async (t) => {
    service.answer = () => { throw new StoreUnavailableError('store down'); };
    const { error, response } = await call(h.authz, 'Check', envoyCheckRequest());
    t.equal(error?.code, grpc.status.UNAVAILABLE);
    t.equal(response, undefined);
  });

  t.test('bounds errors from the service are INVALID_ARGUMENT', async (t) => {
    service.answer = () => { throw new InvalidRequestError('descriptors[0].entries[0].value', 'longer than 4096 bytes'); };
    const { error } = await call(h.authz, 'Check', envoyCheckRequest());
    t.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    t.equal(error?.details, 'descriptors[0].entries[0].value: longer than 4096 bytes');
  });

  t.test('a throwing descriptorsFromHttp is INTERNAL, not a crash', async (t) => {
    const original = service.descriptorsFromHttp.bind(service);
    service.descriptorsFromHttp = () => { throw new Error('bad action'); };
    t.teardown(() => { service.descriptorsFromHttp = original; });
    const { error } = await call(h.authz, 'Check', envoyCheckRequest());
    t.equal(error?.code, grpc.status.INTERNAL);
  });
});
