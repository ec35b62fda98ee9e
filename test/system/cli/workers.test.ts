import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MAIN, spawnServer, waitFor } from '../../helpers/process.js';
import { startRedis } from '../../helpers/redis.js';

const HANG_GUARD_MS = 60_000;
const dir = mkdtempSync(join(tmpdir(), 'rl-workers-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const config = join(dir, 'w.yaml');
writeFileSync(config, 'domain: w\ndescriptors:\n  - key: api_key\n    rate_limit: { unit: hour, requests_per_unit: 30 }\n');

t.test('--workers with the memory store is refused (each worker would have its own limits)', async (t) => {
  const result = spawnSync(process.execPath, [MAIN, 'serve', '--config', config, '--workers', '2'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(result.status, 2);
  t.match(result.stderr, /--workers above 1 needs the Redis store/);
});

t.test('--workers 2 on Redis: one limit across workers, aggregated metrics, clean drain', async (t) => {
  const redis = await startRedis({ t });
  // Default settings: the 50 ms deadline measures Redis, not a cold worker's busy loop.
  // Hang guards only (60 s): two workers starting on a loaded 2-core machine took over 15 s.
  const server = await spawnServer(['--config', config, '--redis', redis.url, '--workers', '2'], {}, HANG_GUARD_MS);
  t.teardown(() => server.stop('SIGKILL'));
  await waitFor('both workers', () => (server.output().match(/openclaw-ratelimit listening/g) ?? []).length === 2, HANG_GUARD_MS);
  for (let i = 0; i < 10; i++) {
    const warm = JSON.stringify({ descriptors: [{ entries: [{ key: 'api_key', value: `warm-${i}` }] }] });
    await fetch(`${server.httpUrl}/v1/check`, { method: 'POST', body: warm, headers: { connection: 'close' } });
  }
  const body = JSON.stringify({ descriptors: [{ entries: [{ key: 'api_key', value: 'shared' }] }] });
  // New connection per request, so node:cluster spreads them over both workers.
  const statuses = await Promise.all(Array.from({ length: 50 }, () =>
    fetch(`${server.httpUrl}/v1/check`, { method: 'POST', body, headers: { connection: 'close' } }).then((r) => r.status)));
  t.equal(statuses.filter((s) => s === 200).length, 30, 'exactly the limit, whichever worker answered');
  t.equal(statuses.filter((s) => s === 429).length, 20);
  // SIGHUP reaches both workers through the primary: each counts one reload, so the
  // aggregate says 2 only if both workers' metrics are in it.
  server.child.kill('SIGHUP');
  await waitFor('both workers reloaded', () => (server.output().match(/"config reloaded"/g) ?? []).length === 2, HANG_GUARD_MS);
  // Each scrape on a new connection: whichever worker answers, the aggregate is the same.
  const scrape = (): Promise<string> => fetch(`${server.httpUrl}/metrics`, { headers: { connection: 'close' } }).then((r) => r.text());
  const metrics = await scrape();
  const total = (text: string, name: string): number => [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'gm'))]
    .reduce((sum, match) => sum + Number(match[1]), 0);
  t.equal(total(metrics, 'ratelimit_config_reloads_total\\{result="success"\\}'), 2, 'both workers\' metrics are in the aggregate');
  t.equal(total(metrics, 'ratelimit_decisions_total'), 60, 'every decision counted once across workers (10 warm-up + 50)');
  t.equal(total(metrics, 'ratelimit_decision_duration_seconds_count'), 60, 'the duration histogram counts each decision once across workers');
  t.match(metrics, /^ratelimit_decision_duration_seconds_bucket\{le="\+Inf",api="http_check"\} 60$/m);
  t.match(metrics, /^# TYPE ratelimit_decision_duration_seconds histogram$/m);
  const again = await scrape();
  for (const name of ['ratelimit_decisions_total', 'ratelimit_decision_duration_seconds_count', 'ratelimit_rule_decisions_total']) {
    t.equal(total(again, name), total(metrics, name), `${name}: a second scrape, maybe by the other worker, says the same`);
  }
  t.match(metrics, /^ratelimit_store_failure_decisions_total 0$/m, 'every decision came from Redis');
  t.match(metrics, /^ratelimit_store_errors_total 0$/m, 'no Redis call failed');
  // Over-limit answers come from Redis or, once Redis reported the key spent, from the local mirror.
  const summed = (outcome: string): number => [...metrics.matchAll(new RegExp(`^ratelimit_decisions_total\\{domain="w",api="http_check",outcome="${outcome}",decided_by="(store|mirror)"\\} (\\d+)$`, 'gm'))]
    .reduce((sum, match) => sum + Number(match[2]), 0);
  t.equal(summed('ok'), 40, 'counters summed over workers (10 warm-up + 30)');
  t.equal(summed('over_limit'), 20);
  t.notMatch(metrics, /decided_by="policy"/, 'no decision by the failure policy');
  t.match(metrics, /ratelimit_store_fallback_active 0/);
  t.equal(await server.stop('SIGTERM'), 0, 'the primary drains its workers and exits 0');
  t.equal((server.output().match(/"stopped"/g) ?? []).length, 2, 'both workers drained');
  const orphans = spawnSync('pgrep', ['-f', `--config ${config}`], { encoding: 'utf8' }).stdout.trim();
  t.equal(orphans, '', 'no worker left behind');
});
