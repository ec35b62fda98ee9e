// Inspect and reset of a `scope: global` limit (two regions, each its own
// redis-server): both act on the key's home bucket (`<key>:g`) in its home
// region's Redis, whichever region's sidecar is asked.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { homeRegion, parseRegions } from '../../../src/core/regions.js';
import { startRedis } from '../../helpers/redis.js';
import { post, startServer, type InspectAnswer } from './scenario.js';

// A hang guard for the whole file (real servers, Redis and CLI processes on a shared machine), not a timing assertion.
t.setTimeout(600_000);

const CONFIG = 'domain: g\ndescriptors:\n  - key: g\n    rate_limit: { unit: hour, requests_per_unit: 10, scope: global }\n';

await t.test('a global limit is inspected and reset at its home bucket, in its home region', async (t) => {
  const [a, b] = await Promise.all([startRedis({ t }), startRedis({ t })]);
  const dir = mkdtempSync(join(tmpdir(), 'rl-admin-global-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'g.yaml');
  writeFileSync(config, CONFIG);
  const regionsText = `a=${a.url};b=${b.url}`;
  const regions = parseRegions(regionsText);
  const server = await startServer(t, config, ['--region', 'a', '--redis', a.url, '--regions', regionsText]);
  const descriptor = (value: string) => ({ descriptors: [{ entries: [{ key: 'g', value }] }] });
  const inspect = async (value: string): Promise<{ key: string; remaining: number }> => {
    const answer = await post(`${server.adminUrl}/v1/inspect`, descriptor(value));
    t.equal(answer.status, 200);
    const status = (answer.json as InspectAnswer).statuses[0]!;
    return { key: status.key!, remaining: status.limit_remaining };
  };
  // One value homed here (a), one homed in the other region (b).
  const homes = new Map<string, string>();
  for (let i = 0; homes.size < 2 && i < 64; i++) {
    const { key } = await inspect(`v${i}`);
    const home = homeRegion(regions, key);
    if (!homes.has(home)) homes.set(home, `v${i}`);
  }
  const here = homes.get('a')!;
  const there = homes.get('b')!;
  t.ok(here !== undefined && there !== undefined, 'a value homed in each region');

  // Homed here: decided on the home bucket itself, exactly.
  for (let i = 0; i < 3; i++) t.equal((await post(`${server.httpUrl}/v1/check`, descriptor(here))).status, 200);
  const homeKey = `${(await inspect(here)).key}:g`;
  t.same(await inspect(here), { key: homeKey.slice(0, -2), remaining: 7 }, 'inspect reads the home bucket');
  t.same(await inspect(here), { key: homeKey.slice(0, -2), remaining: 7 }, 'and takes nothing');
  t.equal(await a.cli('EXISTS', homeKey), '1', 'the home bucket is <key>:g in this region\'s Redis');
  t.same(await post(`${server.adminUrl}/v1/reset`, descriptor(here)), { status: 200, json: { reset: 1 } });
  t.equal(await a.cli('EXISTS', homeKey), '0', 'reset deleted it');
  t.equal((await inspect(here)).remaining, 10, 'full again');

  // Homed in b: this region spends a lease; inspect and reset reach b's Redis.
  let admitted = 0;
  for (let attempt = 0; attempt < 200 && admitted < 3; attempt++) {
    if ((await post(`${server.httpUrl}/v1/check`, descriptor(there))).status === 200) admitted++;
    else await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.equal(admitted, 3, '3 admitted from the region\'s lease');
  const remote = await inspect(there);
  t.ok(remote.remaining <= 7, `the home bucket holds at most what the lease left (${remote.remaining})`);
  t.equal(await b.cli('EXISTS', `${remote.key}:g`), '1', 'the home bucket lives in b\'s Redis');
  t.equal(await a.cli('EXISTS', `${remote.key}:g`), '0', 'not in a\'s');
  t.same(await post(`${server.adminUrl}/v1/reset`, descriptor(there)), { status: 200, json: { reset: 1 } }, 'reset reached b\'s Redis');
  t.match(await b.cli('HGETALL', `${remote.key}:g:l`), /^a\n\d+:\d+:\d+/, 'the lease granted to region a is kept (bucket plus leases stay within the burst)');
});
