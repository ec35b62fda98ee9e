/**
 * Scenarios 2–4 and 7 of the issue: several real `serve` processes share one
 * real Redis Cluster (3 masters + 3 replicas) and enforce one global limit.
 * (Scenario 1, the concurrent burst, is exact-under-load.test.ts: at default
 * settings, also under CPU load.)
 *
 *  2. Nested + flat descriptors across sidecars: a nested denial takes nothing from the flat bucket.
 *  3. A sidecar restart keeps state.
 *  4. Keys disappear from Redis once their bucket is full again.
 *  7. NOSCRIPT after SCRIPT FLUSH on every master: no failed decision, exact enforcement after.
 */
import tap from 'tap';
import { startRedisCluster, type RedisNode } from '../../helpers/redis.js';
import {
  burst, check, findKeys, flat, metric, sleep, startSidecar, statuses, tally, until, warmUp, writeConfig,
  type Answer, type Descriptor, type Sidecar,
} from './lib.js';

tap.setTimeout(170_000);

const config = writeConfig(tap);
const cluster = await startRedisCluster({ t: tap, masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });
// Sidecars shared by scenarios 2, 3, 4 and 7: default flags (50 ms Redis deadline, local fallback).
const sidecars: Sidecar[] = [];
for (const name of ['a', 'b', 'c']) sidecars.push(await startSidecar(tap, { name, config, cluster, policy: 'local' }));
await warmUp(sidecars);

await tap.test('2. nested + flat descriptors across sidecars: a nested denial takes nothing from the flat bucket', async (t) => {
  t.setTimeout(30_000);
  const key = 's2-client';
  const both: Descriptor[] = [flat('api_key', key), { entries: [{ key: 'path', value: '/rating' }, { key: 'api_key', value: key }] }];
  // 6 requests at once through sidecars a and b: the nested 3/hour allows 3, denies 3.
  const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => check(sidecars[i % 2]!, both)));
  t.same(Object.keys(tally(answers)).filter((s) => s !== '200' && s !== '429'), [], `every answer is 200 or 429: ${JSON.stringify(tally(answers))}`);
  const allowed = answers.filter((a) => a.status === 200).length;
  t.equal(allowed, 3, 'the nested 3/hour limit allows exactly 3');
  for (const denied of answers.filter((a) => a.status === 429)) {
    const [flatStatus, nestedStatus] = statuses(denied);
    t.equal(nestedStatus?.code, 'OVER_LIMIT', 'the nested limit is the one that denied');
    t.equal(flatStatus?.code, 'OK', 'the flat limit alone would have allowed');
  }
  // Two more sequential requests through the forward-auth endpoint of sidecar b (both descriptors from http.descriptors).
  for (let i = 0; i < 2; i++) {
    const response = await fetch(`${sidecars[1]!.url}/v1/auth/rating`, {
      headers: { 'x-api-key': key, 'x-ratelimit-domain': 'scenario' }, signal: AbortSignal.timeout(5_000),
    });
    await response.arrayBuffer();
    t.equal(response.status, 429, '/v1/auth with both descriptors is denied by the nested limit');
  }
  // Check only, from yet another sidecar: the flat bucket lost exactly the allowed requests' tokens.
  const probe = await check(sidecars[2]!, [flat('api_key', key, 0)]);
  t.equal(probe.status, 200, 'a check-only request is allowed');
  t.equal(statuses(probe)[0]?.limit_remaining, 10 - allowed, `flat remaining is 10 − ${allowed}: ${JSON.stringify(probe.body)}`);
  // And the nested bucket is empty, seen from the third sidecar too.
  const nested = await check(sidecars[2]!, [{ entries: [{ key: 'path', value: '/rating' }, { key: 'api_key', value: key }], hits_addend: 0 }]);
  t.equal(statuses(nested)[0]?.limit_remaining, 0, 'nested remaining is 0');
});

await tap.test('3. a sidecar restart keeps state: 6 used via A, A stopped, a new sidecar allows exactly 4 more', async (t) => {
  t.setTimeout(40_000);
  const key = 's3-client';
  for (let i = 0; i < 6; i++) t.equal((await check(sidecars[0]!, [flat('api_key', key)])).status, 200, `request ${i + 1} via A allowed`);
  const code = await sidecars[0]!.proc.stop('SIGTERM');
  t.equal(code, 0, 'A exits 0 on SIGTERM');
  const fresh = await startSidecar(tap, { name: 'a2', config, cluster, policy: 'local' });
  sidecars[0] = fresh;
  // /readyz is 200 as soon as the process listens, also while its cluster client is still
  // connecting (with --on-store-failure local the fallback counts as ready), and meanwhile it
  // decides from its own empty in-process buckets: a request sent then would be allowed although
  // Redis says 6 are used (seen in about 1 start in 4 on this machine; reported to the lead).
  // So wait until the sidecar says it decides with the store, then warm it up on other keys.
  await until('the new sidecar decides with Redis', async () => {
    const response = await fetch(`${fresh.url}/readyz`, { signal: AbortSignal.timeout(1_000) });
    return response.status === 200 && (await response.text()).includes('deciding with: store"');
  }, 15_000, 20);
  await warmUp([fresh], 's3-warm');
  const errorsBefore = await metric(fresh, 'ratelimit_store_failure_decisions_total');
  const answers: Answer[] = [];
  for (let i = 0; i < 6; i++) answers.push(await check(fresh, [flat('api_key', key)]));
  t.same(answers.map((a) => a.status), [200, 200, 200, 200, 429, 429],
    `exactly 4 more allowed, then 429: ${JSON.stringify(answers.map((a) => [a.status, Math.round(a.ms), statuses(a)[0]?.limit_remaining]))}`);
  t.equal(statuses(answers[3]!)[0]?.limit_remaining, 0, 'the 10th request leaves 0');
  t.equal(await metric(fresh, 'ratelimit_store_failure_decisions_total'), errorsBefore, 'every one of those decisions came from Redis');
});

await tap.test('4. keys disappear once buckets are full again', async (t) => {
  t.setTimeout(30_000);
  const value = 's4-short-client';
  const answers = await burst(sidecars, [flat('short', value)], 5);
  t.same(tally(answers), { 200: 5 }, 'burst 5 allowed');
  const keys = await findKeys(cluster, value);
  t.equal(keys.length, 1, `one key in Redis: ${JSON.stringify(keys)}`);
  const { key, port } = keys[0]!;
  t.ok(key.startsWith('rl:'), `key ${key} has the rl: prefix`);
  const master = cluster.nodes.find((n) => n.port === port)!;
  const pttl = Number(await master.cli('PTTL', key));
  t.ok(pttl > 0 && pttl <= 1_000, `PTTL ${pttl} ms is > 0 and at most the time to refill 5 tokens at 5/s`);
  // The bucket is full again ~1 s after the last take; the key must be gone on every master.
  const goneAfterMs = await until('the key gone on every master', async () => (await findKeys(cluster, value)).length === 0, 5_000, 100);
  t.pass(`key gone ${goneAfterMs.toFixed(0)} ms after the check`);
  // And a full bucket again: 5 allowed.
  t.same(tally(await burst(sidecars, [flat('short', value)], 6)), { 200: 5, 429: 1 }, 'full bucket again');
});

await tap.test('7. NOSCRIPT after SCRIPT FLUSH on every master while a sidecar serves', async (t) => {
  t.setTimeout(40_000);
  // A deny-policy sidecar: a failed store call would show as 503 instead of a silent local decision.
  const strict = await startSidecar(t, { name: 'strict', config, cluster, policy: 'deny' });
  await warmUp([strict], 's7-warm');
  const errorsBefore = await metric(strict, 'ratelimit_store_failure_decisions_total');
  const answers: Answer[] = [];
  let stop = false;
  const loops = [0, 1].map(async (loop) => {
    let i = 0;
    while (!stop) {
      answers.push(await check(loop === 0 ? strict : sidecars[1]!, [flat('busy', `s7-load-${i++ % 20}`)]));
      await sleep(5);
    }
  });
  await sleep(500);
  const masters = (await cluster.topology()).filter((n) => n.role === 'master' && n.node.running);
  t.equal(masters.length, 3, 'three masters');
  for (const { node } of masters) await node.cli('CONFIG', 'RESETSTAT');
  for (const { node } of masters) t.equal(await node.cli('SCRIPT', 'FLUSH'), 'OK', `SCRIPT FLUSH on :${node.port}`);
  await sleep(1_000);
  stop = true;
  await Promise.all(loops);
  t.ok(answers.length > 20, `${answers.length} decisions during the flush`);
  const noscript = await noscriptErrors(masters.map((m) => m.node));
  t.ok(noscript > 0, `the flush was noticed: Redis answered NOSCRIPT ${noscript} times (INFO errorstats)`);
  const counts = tally(answers);
  t.same(Object.keys(counts).filter((s) => s !== '200' && s !== '429'), [],
    `no failed decision: ${JSON.stringify(counts)} ${JSON.stringify(answers.filter((a) => a.status !== 200 && a.status !== 429))}`);
  t.equal(await metric(strict, 'ratelimit_store_failure_decisions_total'), errorsBefore, 'no decision by the failure policy on the deny sidecar');
  // Flush again, then a fresh key: exact enforcement across two sidecars.
  for (const { node } of masters) await node.cli('SCRIPT', 'FLUSH');
  const fresh = await burst([strict, sidecars[2]!], [flat('api_key', 's7-fresh')], 14);
  t.same(tally(fresh), { 200: 10, 429: 4 }, 'a fresh 10/hour key allows exactly 10 across two sidecars');
  // Nested + flat (the refund path needs no script cache either).
  const both: Descriptor[] = [flat('small', 's7-pair'), { entries: [{ key: 'path', value: '/rating' }, { key: 'api_key', value: 's7-pair' }] }];
  for (const { node } of masters) await node.cli('SCRIPT', 'FLUSH');
  t.same(tally(await burst([strict, sidecars[2]!], both, 5)), { 200: 3, 429: 2 }, 'nested 3/hour still exact after a flush');
  const left = await check(strict, [flat('small', 's7-pair', 0)]);
  t.equal(statuses(left)[0]?.limit_remaining, 2, `the 5/hour bucket of the other slot lost exactly 3: ${JSON.stringify(left.body)}`);
});

/** Sum of `errorstat_NOSCRIPT:count=N` over the nodes (Redis ≥ 6.2). */
async function noscriptErrors(nodes: RedisNode[]): Promise<number> {
  let total = 0;
  for (const node of nodes) {
    const match = /errorstat_NOSCRIPT:count=(\d+)/.exec(await node.cli('INFO', 'errorstats'));
    total += match === null ? 0 : Number(match[1]);
  }
  return total;
}
