/**
 * Token budgets end to end (docs/budgets.md): sidecars built by the real
 * composition root (HTTP and gRPC on real sockets) on the memory store, one
 * Redis, and a 3+3 Redis Cluster. Three sidecars charge one budget at once —
 * through POST /v1/report, POST /v1/check with hits_addend, and gRPC
 * ShouldRateLimit with a per-descriptor hits_addend — and a fourth then
 * reads exactly their sum (less the refill of the elapsed seconds); a budget
 * charged past zero answers OVER_LIMIT with a Retry-After that covers the
 * debt; a charge whose request another limit denies is still recorded.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { slotTagFor } from '../../../src/core/keys.js';
import { startAppHarness, type AppHarness } from '../grpc/app-harness.js';
import { call } from '../../helpers/grpc.js';
import { startRedis, startRedisCluster, type RedisClusterHandle } from '../../helpers/redis.js';

t.setTimeout(240_000);

const BUDGET = 3_600; // tokens an hour: one token a second comes back
const CONFIG = [
  'domain: llm',
  'descriptors:',
  '  - key: tenant',
  `    rate_limit: { unit: hour, requests_per_unit: ${BUDGET}, overdraft: true }`,
  '  - key: plan',
  '    rate_limit: { unit: hour, requests_per_unit: 1 }',
  '',
].join('\n');

const dir = mkdtempSync(join(tmpdir(), 'rl-budgets-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const configPath = join(dir, 'llm.yaml');
writeFileSync(configPath, CONFIG);

interface HttpStatus { code: string; limit_remaining: number; retry_after_s?: number; debt?: number }
interface HttpAnswer { status: number; retryAfter: string | null; statuses: HttpStatus[] }

async function post(app: AppHarness, path: '/v1/check' | '/v1/report', descriptors: object[]): Promise<HttpAnswer> {
  const response = await fetch(`http://127.0.0.1:${app.app.httpPort}${path}`, {
    method: 'POST', body: JSON.stringify({ domain: 'llm', descriptors }), signal: AbortSignal.timeout(10_000),
  });
  const body = await response.json() as { statuses: HttpStatus[] };
  return { status: response.status, retryAfter: response.headers.get('retry-after'), statuses: body.statuses };
}

const tenant = (value: string, hits?: number): object => (hits === undefined
  ? { entries: [{ key: 'tenant', value }] }
  : { entries: [{ key: 'tenant', value }], hits_addend: hits });

async function grpcCharge(app: AppHarness, value: string, hits: number): Promise<{ overall_code: number; statuses: { code: number; limit_remaining: number }[] }> {
  const { error, response } = await call(app.rls, 'ShouldRateLimit', {
    domain: 'llm', descriptors: [{ entries: [{ key: 'tenant', value }], hits_addend: { value: hits } }],
  });
  if (error !== null || response === undefined) throw new Error(`ShouldRateLimit failed: ${error?.message}`);
  return response;
}

/** The budget's debt as a fresh reader sees it (a check), with the whole answer. */
async function debtOf(app: AppHarness, value: string): Promise<{ debt: number; answer: HttpAnswer }> {
  const answer = await post(app, '/v1/check', [tenant(value, 0)]);
  return { debt: answer.statuses[0]?.debt ?? -1, answer };
}

async function scenario(t: Test, label: string, flags: Record<string, string>, cluster?: RedisClusterHandle): Promise<void> {
  // Memory: one process plays every sidecar (there is nothing to share).
  const count = flags.store === 'memory' ? 1 : 4;
  const apps: AppHarness[] = [];
  for (let i = 0; i < count; i++) apps.push(await startAppHarness(configPath, flags));
  t.teardown(() => Promise.all(apps.map((app) => app.close())));
  const [a, b, c, d] = [apps[0]!, apps[1 % count]!, apps[2 % count]!, apps[3 % count]!];
  const value = `${label}-t1`;
  // A first check: the store answers (Redis connected) before the clock of the test starts.
  for (let i = 0; i < 100 && (await post(d, '/v1/check', [tenant(value, 0)])).statuses[0]?.limit_remaining !== BUDGET; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  await t.test('charges from three sidecars (report, check, gRPC) sum exactly in a fourth', async (t) => {
    const started = performance.now();
    const reports = Array.from({ length: 10 }, () => post(a, '/v1/report', [tenant(value, 200)]));
    const checks = Array.from({ length: 10 }, () => post(b, '/v1/check', [tenant(value, 150)]));
    const grpcCalls = Array.from({ length: 10 }, () => grpcCharge(c, value, 100));
    const [reported, checked] = await Promise.all([Promise.all(reports), Promise.all(checks), Promise.all(grpcCalls)]);
    t.ok(reported.every((r) => r.status === 200), 'a report is never denied (200)');
    t.ok(checked.every((r) => r.status === 200 || r.status === 429), 'a charge through /v1/check answers 200 or 429');
    // 10 × 200 + 10 × 150 + 10 × 100 = 4500 charged on 3600: 900 owed, less what refilled meanwhile.
    const { debt, answer } = await debtOf(d, value);
    const refilled = Math.ceil((performance.now() - started) / 1000) + 1;
    t.comment(`${label}: debt ${debt} after 4500 charged on ${BUDGET} (at most ${refilled} s of refill)`);
    t.ok(debt <= 900 && debt >= 900 - refilled, `no charge lost, none counted twice: debt ${debt} in [${900 - refilled}, 900]`);
    t.equal(answer.status, 429, 'a check on a budget in debt is denied');
    t.match(answer.statuses[0], { code: 'OVER_LIMIT', limit_remaining: 0 });
    t.ok(Number(answer.retryAfter) >= debt, `Retry-After ${answer.retryAfter} s covers the debt of ${debt} tokens at one a second`);
    const viaGrpc = await grpcCharge(d, value, 0);
    // OVER_LIMIT is 2 in Envoy's enum; the status keeps Envoy's fields (no debt there).
    t.match(viaGrpc, { overall_code: 2, statuses: [{ code: 2, limit_remaining: 0 }] }, 'gRPC: the same, in Envoy\'s shape');
  });

  await t.test('a charge whose request another limit denies is still recorded', async (t) => {
    const budgetValue = `${label}-t2`;
    // In a Cluster: a plan value whose key lives on another master than the budget's.
    let planValue = `${label}-p0`;
    if (cluster !== undefined) {
      const masterOf = async (key: string, v: string): Promise<string> => (await cluster.masterOf(`x{${slotTagFor([{ key, value: v }])}}`)).id;
      const budgetMaster = await masterOf('tenant', budgetValue);
      for (let i = 1; (await masterOf('plan', planValue)) === budgetMaster; i++) planValue = `${label}-p${i}`;
      t.pass('the budget and the other limit are on two masters');
    }
    const plan = { entries: [{ key: 'plan', value: planValue }] };
    t.equal((await post(b, '/v1/check', [plan])).status, 200, 'the other limit\'s one token is taken');
    const denied = await post(b, '/v1/check', [tenant(budgetValue, 1000), plan]);
    t.equal(denied.status, 429, 'the request is denied by the other limit');
    t.match(denied.statuses[0], { code: 'OK', limit_remaining: BUDGET - 1000 }, 'the charge is reported recorded');
    const { debt, answer } = await debtOf(d, budgetValue);
    t.equal(debt, -1, 'no debt: the budget is above zero');
    const left = answer.statuses[0]!.limit_remaining;
    t.ok(left >= BUDGET - 1000 && left <= BUDGET - 1000 + 5, `another sidecar reads the charge: ${left} left`);
    const reported = await post(d, '/v1/report', [tenant(budgetValue, 3000), plan]);
    t.equal(reported.status, 200, 'a report never denies, even with an exhausted limit in it');
    t.ok(reported.statuses[0]!.debt! >= 395 && reported.statuses[0]!.debt! <= 400, `the report's charge went into debt: ${reported.statuses[0]!.debt}`);
  });
}

await t.test('memory store', (t) => scenario(t, 'mem', { store: 'memory' }));

await t.test('single Redis', async (t) => {
  const redis = await startRedis({ t });
  await scenario(t, 'one', { store: 'redis', redis: redis.url });
});

await t.test('Redis Cluster, 3 masters + 3 replicas', async (t) => {
  const cluster = await startRedisCluster({ t, masters: 3, replicasPerMaster: 1 });
  await scenario(t, 'cl', { store: 'redis', 'redis-cluster': cluster.seeds }, cluster);
});

await t.test('POST /v1/report refuses bad input as /v1/check does, naming the field', async (t) => {
  const app = await startAppHarness(configPath, { store: 'memory' });
  t.teardown(() => app.close());
  const url = `http://127.0.0.1:${app.app.httpPort}/v1/report`;
  const send = async (body: string): Promise<{ status: number; field?: string }> => {
    const response = await fetch(url, { method: 'POST', body });
    const json = await response.json() as { error?: { field?: string } };
    return json.error?.field === undefined ? { status: response.status } : { status: response.status, field: json.error.field };
  };
  t.same(await send('{"domain":"llm","descriptors":[]}'), { status: 400, field: 'descriptors' });
  t.same(await send('{"domain":"llm","descriptors":[{"entries":[{"key":"tenant","value":"x"}],"hits_addend":-1}]}'),
    { status: 400, field: 'descriptors[0].hits_addend' });
  t.same(await send('{"domain":"nope","descriptors":[{"entries":[{"key":"tenant","value":"x"}]}]}'), { status: 400, field: 'domain' });
  const get = await fetch(url);
  t.equal(get.status, 405, 'GET is not allowed');
  t.equal(get.headers.get('allow'), 'POST');
});
