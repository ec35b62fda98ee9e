/**
 * The lab's sidecar half with today's product (no --region/--regions yet):
 * real `serve` processes per region on their own Redis, lab.check, and the
 * open-loop load through them. Every limit is per region here, so each
 * region's allowed count is its own bucket's; the latency figures are the
 * baseline a `scope: global` limit is compared with (SPEC §11: p99 within 2 ms).
 * Also: a sidecar that fails to start fails startLab and leaves nothing behind.
 */
import { execFileSync } from 'node:child_process';
import tap from 'tap';
import { constantLoad, failureKinds, latencyByRegion, maxAllowedInWindow, tallyByRegion } from './load.js';
import { LAB_BASELINE_CONFIG_YAML, startLab, type Lab } from './regions.js';

tap.setTimeout(90_000);

tap.test('today\'s product in every region: checks and an open-loop load', async (t) => {
  const lab: Lab = await startLab({
    t, sidecarsPerRegion: 1, multiRegionFlags: false, configYaml: LAB_BASELINE_CONFIG_YAML,
    extraArgs: (region) => ['--redis-key-prefix', `rl:${region}:`],
  });
  t.same(lab.sidecars().map((s) => s.name), ['a0', 'b0', 'c0'], 'one sidecar per region');
  t.ok(lab.sidecar('c').args.includes('--redis-cluster'), 'c\'s sidecar is on c\'s cluster');
  t.throws(() => lab.sidecar('a', 1), /no sidecar 1 in region a/, 'a missing sidecar is an error');
  const first = await lab.check('a', [{ entries: [{ key: 'region_key', value: 'probe' }] }]);
  t.equal(first.status, 200, `a sidecar answers: ${JSON.stringify(first.body)}`);
  t.match(first.body, { overall_code: 'OK', statuses: [{ code: 'OK', limit_remaining: 99 }] }, 'from the 100/s rule');

  // 300 rps for 3 s on one key, 70/20/10: a's 210 rps exceed its own 100/s, b's 60 and c's 30 do not.
  const durationMs = 3_000;
  const result = await constantLoad({
    lab, perRegion: { a: 0.7, b: 0.2, c: 0.1 }, totalRps: 300, durationMs,
    descriptors: [{ entries: [{ key: 'region_key', value: 'load' }] }],
  });
  const tally = tallyByRegion(result.records);
  const latency = latencyByRegion(result.records);
  t.comment(`tally ${JSON.stringify(tally)}`);
  for (const region of lab.regions) {
    const l = latency[region]!;
    t.comment(`baseline latency ${region}: p50 ${l.p50.toFixed(2)} p99 ${l.p99.toFixed(2)} max ${l.max.toFixed(2)} ms (${l.count})`);
  }
  t.equal(tally['all']!.failed + tally['all']!.skipped, 0, `every request answered 200 or 429 (others: ${failureKinds(result.records)})`);
  t.equal(tally['a']!.due, 2_100 * durationMs / 10_000, 'a was offered 210 rps');
  t.equal(tally['b']!.allowed, tally['b']!.due, 'b under its own limit: all allowed');
  t.equal(tally['c']!.allowed, tally['c']!.due, 'c under its own limit: all allowed');
  // a: its bucket of 100 (burst 100) over 3 s: at most 100 + 100 × 3, give or take a token.
  t.ok(tally['a']!.allowed <= 100 + 100 * durationMs / 1000 + 1 && tally['a']!.allowed >= 300,
    `a allowed ${tally['a']!.allowed} of ${tally['a']!.due}`);
  // An answer's time only bounds its decision's: the window widens by the slowest answer (a busy machine, not a timed bound).
  const slackMs = Math.max(0, ...result.records.filter((r) => r.region === 'a' && r.status === 200).map((r) => r.latencyMs));
  const busiest = maxAllowedInWindow(result.records, 1_000, { regions: ['a'] });
  const bound = 100 + 100 * (1_000 + slackMs) / 1_000 + 2;
  t.ok(busiest.count <= bound, `a's busiest second: ${busiest.count} ≤ ${bound.toFixed(1)} (burst 100 + 100/s × (1 s + ${slackMs.toFixed(0)} ms))`);
  for (const region of lab.regions) {
    const sources = await lab.connectionsBySource(region);
    t.same(Object.keys(sources), ['direct'], `answers are local: only ${region}'s own sidecars reach its Redis (${JSON.stringify(sources)})`);
  }
});

tap.test('a sidecar that cannot start fails startLab, which stops everything it started', async (t) => {
  const ports: number[] = [];
  let message = '';
  try {
    await startLab({
      t, sidecarsPerRegion: 1, multiRegionFlags: false, configYaml: LAB_BASELINE_CONFIG_YAML, regions: ['a', 'b'], clusterRegion: null,
      extraArgs: (region) => (region === 'b' ? ['--no-such-flag'] : []),
    }).then((lab) => { ports.push(...lab.regions.flatMap((r) => lab.redis(r).nodes.map((n) => n.port))); });
  } catch (error: unknown) {
    message = error instanceof Error ? error.message : String(error);
  }
  t.match(message, /server exited .*before listening[\s\S]*no-such-flag/, `the error carries the sidecar's output: ${message.slice(0, 200)}`);
  t.same(ports, [], 'no lab was returned');
  // Nothing of it is left running: no redis-server of a tmp dir of ours, no serve child of this process.
  const children = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).trim();
  t.notMatch(children, /redis-server|dist\/main\.js/, `no child process left: ${children || '(none)'}`);
});
