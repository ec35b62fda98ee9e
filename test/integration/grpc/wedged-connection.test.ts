// node:http2 (Node 20) wedges a server session after some connection errors:
// it answers GOAWAY, then neither reads nor closes the socket, even once the
// client is gone. Found by the fuzz suite (raw HTTP/2 frames): one leaked
// socket per such connection. The server's keepalive pings now close them.
import * as net from 'node:net';
import t from 'tap';
import { FakeDecisionService, startHarness } from '../../helpers/grpc.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const EMPTY_SETTINGS = Buffer.from('000000040000000000', 'hex');
// PING must carry 8 bytes; 3 is a connection error (FRAME_SIZE_ERROR). DATA on stream 0 is a PROTOCOL_ERROR.
const BAD_PING = Buffer.from('000003060000000000010203', 'hex');
const DATA_ON_STREAM_0 = Buffer.from('000003000000000000010203', 'hex');

/** Sends the bytes and keeps the socket open: resolves with whether the server closed it within `withinMs`. */
function serverCloses(port: number, bytes: Buffer, withinMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, withinMs);
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

t.test('regression: a connection wedged by a malformed frame was never closed; keepalive pings close it', async (t) => {
  const h = await startHarness(new FakeDecisionService(), { keepaliveTimeMs: 200, keepaliveTimeoutMs: 200 });
  t.teardown(() => h.close());
  for (const [name, frame] of [['a PING of 3 bytes', BAD_PING], ['DATA on stream 0', DATA_ON_STREAM_0]] as const) {
    t.ok(await serverCloses(h.port, Buffer.concat([PREFACE, EMPTY_SETTINGS, frame]), 5000), `${name}: closed by the server`);
  }
});
