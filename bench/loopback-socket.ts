// The socket set-up the raw load clients share (raw-http.ts, raw-h2.ts).
import { connect, type Socket } from 'node:net';

/** A socket connected to host:port; rejects if the connect fails. */
export function connectSocket(port: number, host: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host }, () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Small writes go out at once; `onData` gets every chunk; `fail` hears of an error and of the close. */
export function watchSocket(socket: Socket, onData: (chunk: Buffer) => void, fail: (error: Error) => void): void {
  socket.setNoDelay(true);
  socket.on('data', onData);
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('connection closed')));
}
