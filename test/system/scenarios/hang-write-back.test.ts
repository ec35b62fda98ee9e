/**
 * Regression (issue 20, item 2): takes counted twice after a Redis hang.
 * Two sidecars share one Redis; a 3600/hour budget. Sidecar a takes 1000,
 * Redis is SIGSTOPped, a admits 10 × 100 by the `local` policy, Redis is
 * SIGCONTed. Sidecar b must then read 3600 − 2000 = 1600 left (plus what
 * refilled meanwhile, one token a second): the calls Redis applied late
 * must not also be written back as local admissions, and a write-back call
 * that missed its deadline must not be sent again after Redis applied it.
 * It read about 300 before the fix.
 */
import tap from 'tap';
import { startRedis } from '../../helpers/redis.js';
import { check, flat, hang, metric, sleep, startPair, statuses, until, writeConfig } from './lib.js';

tap.setTimeout(120_000);

const CONFIG = [
  'domain: scenario',
  'descriptors:',
  '  - key: budget',
  '    rate_limit: { unit: hour, requests_per_unit: 3600 }',
  '',
].join('\n');

await tap.test('a hang: what Redis applied late is not written back again, and the other sidecar reads it exactly', async (t) => {
  const redis = await startRedis({ t });
  const config = writeConfig(t, CONFIG);
  const { a, b } = await startPair(t, config, redis);

  const startedMs = performance.now();
  const first = await check(a, [flat('budget', 'tenant', 1000)]);
  t.equal(first.status, 200, 'the first 1000 are taken from Redis');

  const resume = await hang(t, redis);
  const during = [];
  for (let i = 0; i < 10; i++) during.push(await check(a, [flat('budget', 'tenant', 100)], 10_000));
  t.same(during.map((answer) => answer.status), new Array(10).fill(200), '10 × 100 admitted by the local policy while Redis hangs');
  await resume();

  // Everything a owes has reached Redis once b reads at most 1600 plus the refill; then nothing more may arrive.
  const left = async (): Promise<number> => statuses(await check(b, [flat('budget', 'tenant', 0)]))[0]!.limit_remaining;
  const refilled = (): number => Math.ceil((performance.now() - startedMs) / 1_000) + 1;
  await until('a\'s admissions written back', async () => (await left()) <= 1_600 + refilled(), 20_000, 200);
  await sleep(1_500); // several write-back rounds (200 ms each): a second copy would land now
  const remaining = await left();
  t.comment(`b reads ${remaining} left; 1600 expected, plus at most ${refilled()} refilled`);
  t.ok(remaining >= 1_600, `nothing counted twice: ${remaining} ≥ 1600`);
  t.ok(remaining <= 1_600 + refilled(), `nothing lost: ${remaining} ≤ 1600 + ${refilled()} refilled`);
  t.equal(await metric(a, 'ratelimit_redis_uncertain_calls_total'), 0, 'no call lost its connection in flight');
});
