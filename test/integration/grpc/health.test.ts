import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { FakeDecisionService, call, startHarness } from '../../helpers/grpc.js';

const SERVING = 1;
const NOT_SERVING = 2;

t.test('grpc.health.v1.Health/Check', async (t) => {
  const service = new FakeDecisionService();
  const h = await startHarness(service);
  t.teardown(() => h.close());

  for (const name of ['', 'ratelimit', 'envoy.service.ratelimit.v3.RateLimitService', 'envoy.service.auth.v3.Authorization']) {
    t.test(`"${name}" follows readiness`, async (t) => {
      service.ready = true;
      t.same((await call(h.health, 'Check', { service: name })).response, { status: SERVING });
      service.ready = false;
      t.same((await call(h.health, 'Check', { service: name })).response, { status: NOT_SERVING });
      service.ready = true;
    });
  }

  t.test('an unknown service is NOT_FOUND', async (t) => {
    const { error } = await call(h.health, 'Check', { service: 'nope' });
    t.equal(error?.code, grpc.status.NOT_FOUND);
  });

});

t.test('Watch streams the status and ends on shutdown', async (t) => {
  const service = new FakeDecisionService();
  const h = await startHarness(service);
  const stream = (h.health as any).Watch({ service: 'ratelimit' }) as grpc.ClientReadableStream<{ status: number }>;
  const seen: number[] = [];
  const ended = new Promise<void>((resolve) => {
    stream.on('data', (m) => seen.push(m.status));
    stream.on('error', () => resolve());
    stream.on('end', () => resolve());
  });
  await new Promise((r) => setTimeout(r, 100));
  service.ready = false;
  await new Promise((r) => setTimeout(r, 1300));
  const started = Date.now();
  await h.close();
  await ended;
  t.same(seen.slice(0, 2), [SERVING, NOT_SERVING]);
  t.ok(Date.now() - started < 1500, 'an open Watch does not hold shutdown');
});

t.test('shutdown lets in-flight calls finish', async (t) => {
  const service = new FakeDecisionService();
  let release: () => void = () => {};
  service.answer = (request) => new Promise((resolve) => {
    release = () => resolve({ overallCode: 'OK', statuses: request.descriptors.map(() => ({ code: 'OK', limit: null, limitRemaining: 0, durationUntilResetMs: 0, retryAfterS: 0, shadowOverLimit: false, shadow: false, rule: undefined })), decidedBy: 'store', storeFailure: undefined, shadowOverLimit: false });
  });
  const h = await startHarness(service);
  const inFlight = call(h.rls, 'ShouldRateLimit', { domain: 'd', descriptors: [{ entries: [{ key: 'a', value: 'b' }] }] });
  await new Promise((r) => setTimeout(r, 100));
  let shutDown = false;
  const closing = h.grpcServer.shutdown(5000).then(() => { shutDown = true; });
  await new Promise((r) => setTimeout(r, 100));
  t.equal(shutDown, false, 'waits for the in-flight call');
  release();
  const { error, response } = await inFlight;
  t.equal(error, null);
  t.equal(response.overall_code, 1);
  await closing;
  t.equal(shutDown, true);
  h.rls.close(); h.authz.close(); h.health.close();
});
