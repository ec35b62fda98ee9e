// Issue 14: SIGTERM under keep-alive load. The real server process; clients
// on raw sockets, so a reset is seen as a reset (agents would retry it away).
import * as grpc from '@grpc/grpc-js';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { clientConstructor } from '../../helpers/grpc.js';
import { RawHttpConnection } from '../../helpers/http1.js';
import { spawnServer, waitFor } from '../../helpers/process.js';

const example = fileURLToPath(new URL('../../../examples/openclaw.yaml', import.meta.url));
const CONNECTIONS = 8;

t.test('regression: keep-alive requests are answered at shutdown, none is reset; HTTP and gRPC drain, exit 0', async (t) => {
  const server = await spawnServer(['--config', example, '--shutdown-timeout-ms', '8000']);
  t.teardown(() => server.stop('SIGKILL'));

  // An idle gRPC channel (Envoy keeps one open) and an idle HTTP keep-alive connection.
  const health = new (clientConstructor('grpc.health.v1.Health'))(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  t.teardown(() => health.close());
  await new Promise<void>((resolve, reject) => {
    (health as unknown as { Check(r: object, cb: (e: Error | null) => void): void }).Check({ service: '' }, (e) => (e ? reject(e) : resolve()));
  });
  const idle = await RawHttpConnection.open(server.httpPort);
  t.equal((await idle.request('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')).status, 200);

  let answered = 0;
  const statuses = new Set<number>();
  const failures: string[] = [];
  const toldToClose: boolean[] = [];
  const body = (i: number) => `{"descriptors":[{"entries":[{"key":"api_key","value":"drain-${i}"}]}]}`;
  const worker = async (i: number): Promise<void> => {
    const connection = await RawHttpConnection.open(server.httpPort);
    for (;;) {
      let response;
      try {
        response = await connection.request(`POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: ${body(i).length}\r\n\r\n${body(i)}`);
      } catch (error: unknown) {
        failures.push(`connection ${i}: ${error instanceof Error ? error.message : String(error)}`);
        return;
      }
      answered++;
      statuses.add(response.status);
      if (response.headers['connection'] === 'close') {
        toldToClose[i] = true;
        const closed = await connection.closed;
        if (closed.error !== undefined) failures.push(`connection ${i}: closed with ${closed.error}`);
        return;
      }
    }
  };
  const workers = Array.from({ length: CONNECTIONS }, (_, i) => worker(i));
  await waitFor('load running', () => answered >= 300, 20_000, 5);
  server.child.kill('SIGTERM');
  await Promise.all(workers);

  t.same(failures, [], 'no request met a reset or a closed connection');
  t.equal(toldToClose.filter(Boolean).length, CONNECTIONS, 'every connection was answered with Connection: close');
  t.ok([...statuses].every((s) => s === 200 || s === 429 || s === 503), `only decisions: ${[...statuses].join(', ')}`);
  const idleClosed = await idle.closed;
  t.equal(idleClosed.error, undefined, 'the idle keep-alive connection was closed cleanly after the grace');
  t.equal(await server.exited, 0, 'exit 0: both drains finished within --shutdown-timeout-ms');
  t.match(server.output(), /"stopped"/);
  t.notMatch(server.output(), /drain (timed out|time over)/);
});

t.test('a client stuck mid-request cannot hold the drain past --shutdown-timeout-ms: it is cut, exit 0', async (t) => {
  const server = await spawnServer(['--config', example, '--shutdown-timeout-ms', '3000', '--http-request-timeout-ms', '600000']);
  t.teardown(() => server.stop('SIGKILL'));
  const stuck = await RawHttpConnection.open(server.httpPort);
  stuck.write('POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789');
  await new Promise((resolve) => setTimeout(resolve, 200));
  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0, 'exit 0 within the shutdown timeout');
  await stuck.closed;
  t.pass('the stuck connection was closed');
  t.match(server.output(), /HTTP drain time over; cut the connections still open/);
});
