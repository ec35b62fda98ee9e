import t from 'tap';
import type { CompiledConfig } from '../../../src/core/config-model.js';
import type { HttpRequestInput } from '../../../src/core/http-actions.js';
import { DEFAULT_REQUEST_BOUNDS, checkDecisionRequest } from '../../../src/core/request-bounds.js';
import type { Api, Decision, DecisionRequest, Descriptor } from '../../../src/core/types.js';
import { InvalidRequestError, StoreUnavailableError } from '../../../src/errors.js';
import { decideHttpRequest, type DecisionService } from '../../../src/service/decision-service.js';
import { createLogger } from '../../../src/telemetry/logger.js';
import { Metrics } from '../../../src/telemetry/metrics.js';
import { ClientAddressResolver } from '../../../src/transport/http/client-address.js';
import { createHttpServer } from '../../../src/transport/http/server.js';

/** A DecisionService whose decide() the test scripts; it keeps the contract's input checks. */
class ScriptedService implements DecisionService {
  readonly bounds = DEFAULT_REQUEST_BOUNDS;
  seen: HttpRequestInput[] = [];
  decided = 0;
  noDescriptors = false;
  next: () => Promise<Decision> = async () => ({ overallCode: 'OK', statuses: [], decidedBy: 'store', storeFailure: undefined, shadowOverLimit: false });
  resolveDomain(requested: string | undefined, field = 'domain'): string {
    if (requested === 'nope') throw new InvalidRequestError(field, '"nope" is not a loaded domain');
    return requested ?? 'd';
  }
  descriptorsFromHttp(_domain: string, request: HttpRequestInput): Descriptor[] {
    this.seen.push(request);
    return this.noDescriptors ? [] : [{ entries: [{ key: 'path', value: request.path }] }];
  }
  decide(request: DecisionRequest, _api: Api): Promise<Decision> {
    checkDecisionRequest(request, this.bounds);
    this.decided++;
    return this.next();
  }
  decideHttp(requestedDomain: string | undefined, request: HttpRequestInput, api: Api, field?: string): Decision | Promise<Decision> {
    return decideHttpRequest(this, requestedDomain, request, api, field);
  }
  readiness() { return { ready: false, detail: 'store down; deciding with: none' }; }
}

const service = new ScriptedService();
const config: CompiledConfig = { domains: new Map(), source: 'x', loadedAtMs: 0 };
const { app } = createHttpServer({
  service, metrics: new Metrics({ processMetrics: false }), config: () => config,
  clientAddress: new ClientAddressResolver(['127.0.0.1']), logger: createLogger('silent'),
});
t.teardown(() => app.close());
const body = JSON.stringify({ descriptors: [{ entries: [{ key: 'a', value: 'b' }] }] });

t.test('a store failure under the deny policy is a 503 with a JSON error', async (t) => {
  service.next = () => Promise.reject(new StoreUnavailableError('store unavailable: ECONNREFUSED'));
  const check = await app.inject({ method: 'POST', url: '/v1/check', payload: body });
  t.equal(check.statusCode, 503);
  t.match(check.json(), { error: { code: 'RL_ERR_STORE_UNAVAILABLE' } });
  const auth = await app.inject({ method: 'GET', url: '/v1/auth/x' });
  t.equal(auth.statusCode, 503);
});

t.test('an unexpected error is a 500 that leaks nothing, and the server keeps answering', async (t) => {
  service.next = () => Promise.reject(new TypeError('secret internals at /srv/app.js:42'));
  const response = await app.inject({ method: 'POST', url: '/v1/check', payload: body });
  t.equal(response.statusCode, 500);
  t.same(response.json(), { error: { code: 'RL_ERR_INTERNAL', message: 'internal error' } });
  service.next = async () => ({ overallCode: 'OK', statuses: [], decidedBy: 'store', storeFailure: undefined, shadowOverLimit: false });
  t.equal((await app.inject({ method: 'POST', url: '/v1/check', payload: body })).statusCode, 200);
});

t.test('Envoy HTTP ext_authz with path_prefix /v1/auth: the path after the prefix is limited', async (t) => {
  service.seen = [];
  await app.inject({ method: 'POST', url: '/v1/auth/rating/v2?q=1', headers: { 'x-forwarded-host': 'api.example' } });
  t.match(service.seen[0], { method: 'POST', path: '/rating/v2', query: 'q=1', authority: 'api.example' });
  await app.inject({ method: 'GET', url: '/v1/auth' });
  t.match(service.seen[1], { path: '/' });
  await app.inject({ method: 'GET', url: '/v1/auth', headers: { 'x-forwarded-uri': '/t?x', 'x-forwarded-method': 'PUT' } });
  t.match(service.seen[2], { path: '/t', query: 'x', method: 'PUT' }, 'Traefik/Caddy headers');
});

t.test('a path the router cannot percent-decode: forward auth still decides it, any other route is a 400 naming the path', async (t) => {
  service.seen = [];
  service.next = async () => ({ overallCode: 'OK', statuses: [], decidedBy: 'store', storeFailure: undefined, shadowOverLimit: false });
  for (const url of ['/v1/auth/x%ff', '/v1/auth/%zz?q=%', '/v1/auth/a%', '/v1/auth?x=%ff']) {
    const response = await app.inject({ method: 'GET', url });
    t.equal(response.statusCode, 200, url);
    t.same(response.json(), { overall_code: 'OK' }, url);
  }
  t.same(service.seen.map((r) => [r.path, r.query]), [['/x%ff', ''], ['/%zz', 'q=%'], ['/a%', ''], ['/', 'x=%ff']], 'the raw bytes are the descriptor value');
  service.next = () => Promise.reject(new StoreUnavailableError('store unavailable: ECONNREFUSED'));
  const failed = await app.inject({ method: 'GET', url: '/v1/auth/x%ff' });
  t.equal(failed.statusCode, 503, 'a failure answered in our own error shape');
  t.match(failed.json(), { error: { code: 'RL_ERR_STORE_UNAVAILABLE' } });
  for (const [method, url] of [['POST', '/v1/check%zz'], ['GET', '/v1/auth%zz'], ['GET', '/nope%ff'], ['GET', '/metrics%']] as const) {
    const response = await app.inject({ method, url, payload: method === 'POST' ? body : undefined });
    t.equal(response.statusCode, 400, url);
    t.same(response.json(), {
      error: { code: 'RL_ERR_INVALID_REQUEST', message: 'path: invalid percent-encoding (each % takes two hex digits, and the bytes must be UTF-8)', field: 'path' },
    }, url);
  }
  service.next = async () => ({ overallCode: 'OK', statuses: [], decidedBy: 'store', storeFailure: undefined, shadowOverLimit: false });
  const unknownDomain = await app.inject({ method: 'GET', url: '/v1/auth/x%ff', headers: { 'x-ratelimit-domain': 'nope' } });
  t.equal(unknownDomain.statusCode, 400, 'a request problem found while deciding is a 400, as on a routed path');
  t.match(unknownDomain.json(), { error: { code: 'RL_ERR_INVALID_REQUEST', field: 'X-RateLimit-Domain' } });
});

t.test('/readyz is 503 when the service cannot decide', async (t) => {
  const response = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(response.statusCode, 503);
  t.match(response.json(), { status: 'not ready' });
});

t.test('a route exists for every method on /v1/auth, but /v1/check is POST only', async (t) => {
  for (const method of ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const) {
    const response = await app.inject({ method, url: '/v1/auth/x' });
    t.equal(response.statusCode, 200, method);
  }
  const wrongMethod = await app.inject({ method: 'GET', url: '/v1/check' });
  t.equal(wrongMethod.statusCode, 405, 'GET /v1/check is a 405 (was a 404 that read as "no such route")');
  t.equal(wrongMethod.headers.allow, 'POST');
  t.match(wrongMethod.json(), { error: { code: 'RL_ERR_METHOD_NOT_ALLOWED' } });
  const postHealth = await app.inject({ method: 'POST', url: '/healthz?x=1' });
  t.equal(postHealth.statusCode, 405);
  t.equal(postHealth.headers.allow, 'GET, HEAD');
  t.equal((await app.inject({ method: 'GET', url: '/v1/checks' })).statusCode, 404, 'an unknown path is still a 404');
});

t.test('forward auth that makes no descriptor is allowed without a decision (DecisionService.decideHttp)', async (t) => {
  service.noDescriptors = true;
  t.teardown(() => { service.noDescriptors = false; });
  service.next = () => Promise.reject(new Error('decide must not be called'));
  const before = service.decided;
  const response = await app.inject({ method: 'GET', url: '/v1/auth/x' });
  t.equal(response.statusCode, 200);
  t.same(response.json(), { overall_code: 'OK' });
  t.equal(response.headers['x-ratelimit-limit'], undefined, 'no limit, no headers');
  t.equal(service.decided, before);
});
