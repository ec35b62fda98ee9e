/**
 * The lab's load generator against a plain HTTP server of ours (no product
 * needed): the offered rate and split hold whatever the answers' latency, the
 * concurrency bound shows up as skipped requests, and the summaries count right.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import tap, { type Test } from 'tap';
import {
  allowedBetween, allowedByRegion, allowedSeries, constantLoad, latencyByRegion, maxAllowedInWindow, tallyByRegion,
  type LoadRecord,
} from './load.js';

tap.setTimeout(60_000);

/** A /v1/check stand-in: answers 200 for the first `allow` requests, then 429, each after `answerDelayMs`. */
async function startFakeSidecar(t: Test, answerDelayMs: number, allow = Number.POSITIVE_INFINITY): Promise<{ url: string; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  let served = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString()));
      const status = served++ < allow ? 200 : 429;
      setTimeout(() => res.writeHead(status, { 'content-type': 'application/json' }).end('{"overall_code":"OK"}'), answerDelayMs);
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, bodies };
}

tap.test('open loop: 200-ms answers do not lower the offered rate, and the split follows the shares', async (t) => {
  const a = await startFakeSidecar(t, 200);
  const b1 = await startFakeSidecar(t, 200);
  const b2 = await startFakeSidecar(t, 200);
  const urls: Record<string, string[]> = { a: [a.url], b: [b1.url, b2.url] };
  const result = await constantLoad({
    lab: { urls: (region) => urls[region] ?? [] },
    perRegion: { a: 0.75, b: 0.25 },
    totalRps: 200,
    durationMs: 2_000,
    descriptors: (region, seq) => [{ entries: [{ key: 'k', value: `${region}-${seq}` }] }],
  });
  const tally = tallyByRegion(result.records);
  t.equal(tally['a']?.due, 300, '0.75 × 200 rps × 2 s');
  t.equal(tally['b']?.due, 100, '0.25 × 200 rps × 2 s');
  t.equal(tally['all']?.skipped, 0, 'nothing skipped: 40 in flight at most, bound 256');
  t.equal(tally['all']?.allowed, 400, 'every answer counted as allowed');
  t.equal(b1.bodies.length, 50, 'the region\'s sidecars take turns');
  t.equal(b2.bodies.length, 50, 'both of them');
  t.match(a.bodies[0], { domain: 'lab', descriptors: [{ entries: [{ key: 'k', value: 'a-0' }] }] }, 'descriptors built per request');
  // Open loop: the generator does not wait for answers (each takes >= 200 ms; 40 are due in the first 200 ms).
  const firstAnswer = Math.min(...result.records.map((r) => r.answeredAt));
  const sentBeforeFirstAnswer = result.records.filter((r) => r.sentAt < firstAnswer).length;
  t.ok(sentBeforeFirstAnswer >= 20, `${sentBeforeFirstAnswer} requests left before the first answer came, not one at a time`);
  // The generator's own lag depends on how busy the machine is (no timed assertion): shown, and the schedule checks below bound it.
  t.comment(`send lag at most ${result.maxSendLagMs.toFixed(1)} ms`);
  const latency = latencyByRegion(result.records);
  t.ok(latency['all']!.p50 >= 200, `latency p50 ${latency['all']!.p50.toFixed(1)} ms includes the server's 200 ms`);
  // Scheduled evenly: each 500 ms holds a quarter of the requests (when they left depends on the machine: printed).
  const scheduled = [0, 0, 0, 0];
  for (const r of result.records) if (r.region === 'a') scheduled[Math.floor(r.scheduledAt / 500)]!++;
  t.same(scheduled, [75, 75, 75, 75], 'region a is scheduled 75 per 500 ms');
  t.comment(`region a sent per 500 ms: ${(allowedSeries(result.records, 500, { by: 'send' })['a'] ?? []).join(',')}`);
});

tap.test('the concurrency bound skips requests instead of delaying them', async (t) => {
  const slow = await startFakeSidecar(t, 500);
  const result = await constantLoad({
    lab: { urls: () => [slow.url] },
    perRegion: { a: 1 },
    totalRps: 100,
    durationMs: 1_000,
    maxInFlight: 10,
    descriptors: [{ entries: [{ key: 'k', value: 'v' }] }],
  });
  const tally = tallyByRegion(result.records)['a']!;
  t.equal(tally.due, 100, 'every request was due');
  // 10 in flight, each answered after 500 ms or later, over 1 s: the first 10, and 20 at most.
  t.ok(tally.allowed >= 10 && tally.allowed <= 20, `${tally.allowed} sent: at most 10 per 500 ms answer`);
  t.equal(tally.skipped, 100 - tally.allowed, 'the rest were skipped, not queued');
  t.ok(result.records.filter((r) => r.status === -1).every((r) => r.error?.startsWith('skipped') === true), 'skipped ones say why');
});

tap.test('failures and timeouts are recorded as status 0', async (t) => {
  const hung = await startFakeSidecar(t, 5_000);
  const result = await constantLoad({
    lab: { urls: (region) => (region === 'gone' ? ['http://127.0.0.1:1'] : [hung.url]) },
    perRegion: { gone: 1, hung: 1 },
    totalRps: 20,
    durationMs: 500,
    timeoutMs: 300,
    descriptors: [{ entries: [{ key: 'k', value: 'v' }] }],
  });
  const tally = tallyByRegion(result.records);
  t.equal(tally['gone']?.failed, 5, 'connection refused: failed');
  t.equal(tally['hung']?.failed, 5, 'no answer in time: failed');
  const hungLatency = result.records.filter((r) => r.region === 'hung').map((r) => r.latencyMs);
  // A timer's 300 ms are counted on libuv's loop clock (whole ms, read at the turn's start): against
  // performance.now() it can fire up to 1 ms early (seen: 299.6 ms, printed "300"). How late it fires depends on the machine.
  t.ok(hungLatency.every((ms) => ms >= 299), `timed out no earlier than 300 ms: ${hungLatency.map((ms) => ms.toFixed(1)).join(',')}`);
  t.ok(result.records.filter((r) => r.region === 'hung').every((r) => r.error?.includes('no answer in 300 ms') === true), 'by the request timeout');
});

tap.test('summaries on known records', async (t) => {
  const record = (region: string, answeredAt: number, status = 200, latencyMs = 1): LoadRecord => ({
    region, sidecar: 0, scheduledAt: answeredAt - latencyMs, sentAt: answeredAt - latencyMs, answeredAt, latencyMs, status,
  });
  const records = [
    record('a', 0), record('a', 100), record('b', 150), record('a', 1_000), record('b', 1_050), record('a', 1_080),
    record('c', 1_090, 429), record('c', 1_095, 0), record('b', 1_099), record('a', 3_000),
  ];
  t.same(maxAllowedInWindow(records, 100), { count: 4, startMs: 1_000 }, '1000, 1050, 1080, 1099 (429 and failures not counted)');
  t.same(maxAllowedInWindow(records, 100, { regions: ['a'] }), { count: 2, startMs: 0 }, 'one region');
  t.same(maxAllowedInWindow(records, 5_000), { count: 8, startMs: 0 }, 'everything');
  t.same(maxAllowedInWindow([], 100), { count: 0, startMs: Number.NaN }, 'nothing allowed');
  t.equal(allowedBetween(records, 100, 1_050), 3, '[100, 1050)');
  t.same(allowedByRegion(records), { a: 5, b: 3, c: 0 }, 'allowed per region');
  t.same(allowedSeries(records, 1_000), { a: [2, 2, 0, 1], b: [1, 2] }, 'allowed per second per region');
  const latency = latencyByRegion([record('a', 10, 200, 1), record('a', 20, 429, 3), record('a', 30, 0, 100), record('a', 40, 200, 2)]);
  t.match(latency['a'], { count: 3, p50: 2, p99: 3, max: 3 }, 'failed requests carry no latency');
});
