// Issue 14 (deliver 4): hundreds of slow clients while normal traffic flows.
// The real server process on loopback; the slow connections are bounded in
// number. Asserted: normal requests keep being answered, slow connections
// are closed by the timeouts. Deadlines are generous and not under test.
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { RawHttpConnection, type RawClose } from '../../helpers/http1.js';
import { spawnServer } from '../../helpers/process.js';

const example = fileURLToPath(new URL('../../../examples/openclaw.yaml', import.meta.url));
const SLOW_HEADERS = 200;
const SLOW_BODIES = 200;
const REQUEST_TIMEOUT_MS = 2_000;
const DEADLINE_MS = 60_000;

t.test('slow-header and slow-body connections are closed by the timeouts while normal traffic is answered', async (t) => {
  const server = await spawnServer(['--config', example, '--http-request-timeout-ms', String(REQUEST_TIMEOUT_MS)]);
  t.teardown(() => server.stop('SIGKILL'));

  const slow: RawHttpConnection[] = [];
  t.teardown(() => { for (const c of slow) c.close(); });
  // Slow headers: a header line, then one byte now and then, never the blank line.
  // Slow bodies: Content-Length 100, 10 bytes sent, then one byte now and then.
  for (let i = 0; i < SLOW_HEADERS + SLOW_BODIES; i++) {
    const connection = await RawHttpConnection.open(server.httpPort);
    connection.write(i < SLOW_HEADERS
      ? 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: '
      : 'POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789');
    slow.push(connection);
  }
  const trickle = setInterval(() => { for (const c of slow) if (c.isOpen) c.write('x'); }, 250);
  t.teardown(() => clearInterval(trickle));
  const allSlowClosed = Promise.all(slow.map((c) => c.closed));

  // Normal traffic on keep-alive connections (fetch's pool) until every slow one is gone.
  let slowDone = false;
  void allSlowClosed.then(() => { slowDone = true; });
  const answered: number[] = [];
  const errors: string[] = [];
  const normal = async (i: number): Promise<void> => {
    while (!slowDone) {
      try {
        const response = i % 2 === 0
          ? await fetch(`${server.httpUrl}/healthz`, { signal: AbortSignal.timeout(10_000) })
          : await fetch(`${server.httpUrl}/v1/check`, {
            method: 'POST',
            body: `{"descriptors":[{"entries":[{"key":"api_key","value":"normal-${i}"}]}]}`,
            signal: AbortSignal.timeout(10_000),
          });
        await response.arrayBuffer();
        answered.push(response.status);
      } catch (error: unknown) {
        errors.push(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
      }
    }
  };
  const clients = Promise.all([0, 1, 2, 3].map(normal));

  let deadline: NodeJS.Timeout | undefined;
  const closes = await Promise.race([
    allSlowClosed,
    new Promise<never>((_, reject) => {
      deadline = setTimeout(() => reject(new Error(`slow connections still open after ${DEADLINE_MS} ms: ${slow.filter((c) => c.isOpen).length}`)), DEADLINE_MS);
    }),
  ]).finally(() => clearTimeout(deadline));
  slowDone = true;
  await clients;

  t.same(errors, [], 'no normal request failed');
  t.ok(answered.length >= 20, `normal requests were answered while the slow ones were open (${answered.length})`);
  t.ok(answered.every((s) => s === 200 || s === 429), 'each with a decision or health answer');
  const timedOut = (c: RawClose): boolean => /^HTTP\/1\.1 408 /.test(c.data);
  t.equal(closes.slice(0, SLOW_HEADERS).filter(timedOut).length, SLOW_HEADERS, 'every slow-header connection got a 408 and was closed');
  t.equal(closes.slice(SLOW_HEADERS).filter(timedOut).length, SLOW_BODIES, 'every slow-body connection got a 408 and was closed');
  const after = await fetch(`${server.httpUrl}/healthz`);
  t.equal(after.status, 200, '/healthz still answers');
  t.equal(await server.stop('SIGTERM'), 0);
});
