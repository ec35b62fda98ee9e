// Issue 14: slow or idle clients must not hold connections (and file
// descriptors) forever. Real sockets against the real server, in-process.
// Deadlines are generous and not under test: a timeout that never fires
// makes the test fail at the deadline.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { connectionsCheckingIntervalMs } from '../../../src/transport/http/node-server.js';
import { RawHttpConnection, type RawClose, type RawResponse } from '../../helpers/http1.js';
import { startServer } from '../../helpers/server.js';

const config = fileURLToPath(new URL('../../fixtures/shop.yaml', import.meta.url));
const DEADLINE_MS = 15_000;

const server = await startServer({ config, 'http-request-timeout-ms': '1000', 'http-keep-alive-timeout-ms': '1000' });
t.teardown(() => server.stop());
const port = server.httpPort;

function closedWithin(connection: RawHttpConnection, ms = DEADLINE_MS): Promise<RawClose> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms);
    void connection.closed.then((closed) => {
      clearTimeout(timer);
      resolve(closed);
    });
  });
}

const checkBody = '{"descriptors":[{"entries":[{"key":"api_key","value":"limits"}],"hits_addend":0}]}';

t.test('regression: an unfinished request body is timed out (Content-Length 100, 10 bytes sent) with a 408 in our error shape', async (t) => {
  const connection = await RawHttpConnection.open(port);
  connection.write('POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n0123456789');
  const closed = await closedWithin(connection);
  t.match(closed.data, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  t.match(closed.data, /Connection: close/);
  t.match(closed.data, /\{"error":\{"code":"RL_ERR_REQUEST_TIMEOUT","message":"[^"]+"\}\}$/);
});

t.test('a body trickling one byte at a time is timed out too (the timeout is for the whole request)', async (t) => {
  const connection = await RawHttpConnection.open(port);
  connection.write('POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n');
  const trickle = setInterval(() => { if (connection.isOpen) connection.write('x'); }, 100);
  t.teardown(() => clearInterval(trickle));
  t.match((await closedWithin(connection)).data, /^HTTP\/1\.1 408 /);
});

t.test('unfinished headers and a connection that sends nothing are timed out', async (t) => {
  const partial = await RawHttpConnection.open(port);
  partial.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
  const silent = await RawHttpConnection.open(port);
  t.match((await closedWithin(partial)).data, /^HTTP\/1\.1 408 /);
  t.match((await closedWithin(silent)).data, /^HTTP\/1\.1 408 /);
});

t.test('an idle keep-alive connection is closed after --http-keep-alive-timeout-ms; a busy one is kept', async (t) => {
  const connection = await RawHttpConnection.open(port);
  const first = await connection.request('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  t.equal(first.status, 200);
  t.match(first.headers['keep-alive'] ?? '', /timeout=1/, 'the timeout is announced');
  const closed = await closedWithin(connection);
  t.equal(closed.error, undefined, 'closed cleanly, not reset');

  const busy = await RawHttpConnection.open(port);
  for (let i = 0; i < 6; i++) {
    const response = await busy.request(`POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: ${checkBody.length}\r\n\r\n${checkBody}`);
    t.equal(response.status, 200, `request ${i} on one connection`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.ok(busy.isOpen, 'a connection in use is never idle for long enough to be closed');
  busy.close();
});

t.test('--http-max-connections caps open connections; below the cap new ones are served again', async (t) => {
  // A long request timeout: the held connections must outlive the test.
  const capped = await startServer({ config, 'http-request-timeout-ms': '60000', 'http-max-connections': '20' });
  t.teardown(() => capped.stop());
  const held: RawHttpConnection[] = [];
  t.teardown(() => { for (const c of held) c.close(); });
  for (let i = 0; i < 20; i++) {
    const connection = await RawHttpConnection.open(capped.httpPort);
    connection.write('GET /healthz HTTP/1.1\r\n'); // busy: a request has begun
    held.push(connection);
  }
  const over = await RawHttpConnection.open(capped.httpPort); // the kernel accepts; Node closes it at once
  const refused = await closedWithin(over);
  t.equal(refused.data, '', 'the connection over the cap got no answer and was closed');
  for (const c of held) c.close();
  let again: RawResponse | undefined;
  for (let attempt = 0; attempt < 100 && again === undefined; attempt++) {
    const connection = await RawHttpConnection.open(capped.httpPort);
    try {
      again = await connection.request('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100)); // the closes above not yet seen by the server
    } finally {
      connection.close();
    }
  }
  t.equal(again?.status, 200, 'served again once connections were closed');
});

t.test('requests Node cannot take get our error shape: headers over 64 KiB are a 431, malformed ones a 400', async (t) => {
  const big = await RawHttpConnection.open(port);
  const huge = await big.request(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(70_000)}\r\n\r\n`);
  t.equal(huge.status, 431);
  t.match(JSON.parse(huge.body), { error: { code: 'RL_ERR_HEADERS_TOO_LARGE' } });
  const bad = await RawHttpConnection.open(port);
  const malformed = await bad.request('GET /healthz HTTP/1.1\r\nHost x\r\n\r\n');
  t.equal(malformed.status, 400);
  t.match(JSON.parse(malformed.body), { error: { code: 'RL_ERR_BAD_HTTP' } });
});

t.test('the request timeout is checked often enough to be honoured closely', async (t) => {
  t.equal(connectionsCheckingIntervalMs(10_000), 1_000, 'the default 10 s timeout is checked every second');
  t.equal(connectionsCheckingIntervalMs(1_000), 100);
  t.equal(connectionsCheckingIntervalMs(600_000), 1_000, 'never less often than once a second');
  t.equal(connectionsCheckingIntervalMs(100), 25, 'never more often than every 25 ms');
});
