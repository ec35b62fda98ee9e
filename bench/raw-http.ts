// A minimal HTTP/1.1 keep-alive client over net sockets, for load that must
// cost the load generator little: prebuilt request bytes, a response parser
// that only finds the status and Content-Length. Used by the constant-rate
// latency runs (latency.ts) and the instruction counts (instructions.ts).
// Not a general client: answers must carry Content-Length (fastify's do).
import type { Socket } from 'node:net';
import { connectSocket, watchSocket } from './loopback-socket.js';

export interface RawResponse {
  readonly status: number;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:\s*(\d+)/i;

/** One keep-alive connection; one request in flight at a time. */
export class RawConnection {
  private readonly socket: Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private pending: ((response: RawResponse) => void) | undefined;
  private failed: ((error: Error) => void) | undefined;
  private closedError: Error | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    watchSocket(socket, (chunk) => this.onData(chunk), (error) => {
      this.closedError = error;
      const reject = this.failed;
      this.pending = undefined;
      this.failed = undefined;
      reject?.(error);
    });
  }

  static async open(port: number, host = '127.0.0.1'): Promise<RawConnection> {
    return new RawConnection(await connectSocket(port, host));
  }

  get busy(): boolean {
    return this.pending !== undefined;
  }

  /** Writes one prebuilt request; resolves with its response's status. */
  send(request: Buffer): Promise<RawResponse> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    if (this.pending !== undefined) return Promise.reject(new Error('a request is already in flight on this connection'));
    return new Promise((resolve, reject) => {
      this.pending = resolve;
      this.failed = reject;
      this.socket.write(request);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const headEnd = this.buffer.indexOf(CRLFCRLF);
      if (headEnd < 0) return;
      const head = this.buffer.toString('latin1', 0, headEnd);
      const length = Number(CONTENT_LENGTH.exec(head)?.[1] ?? '0');
      const total = headEnd + 4 + length;
      if (this.buffer.length < total) return;
      const status = Number(head.slice(9, 12));
      this.buffer = this.buffer.subarray(total);
      const resolve = this.pending;
      this.pending = undefined;
      this.failed = undefined;
      resolve?.({ status });
    }
  }
}

/** The bytes of one POST with a JSON body. */
export function postRequest(path: string, body: string, host = '127.0.0.1'): Buffer {
  const bytes = Buffer.from(body);
  return Buffer.concat([
    Buffer.from(`POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: ${bytes.length}\r\n\r\n`, 'latin1'),
    bytes,
  ]);
}

/** The bytes of one GET with extra header lines (`Name: value`). */
export function getRequest(path: string, headers: readonly string[], host = '127.0.0.1'): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${headers.map((line) => `${line}\r\n`).join('')}\r\n`, 'latin1');
}

/**
 * Closed loop: `connections` connections each send the next request as soon
 * as the previous answer arrived, until `count` requests were answered.
 * Resolves with the statuses seen.
 */
export async function sendCount(connectionsList: readonly RawConnection[], requests: readonly Buffer[], count: number): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  let next = 0;
  let answered = 0;
  await Promise.all(connectionsList.map(async (connection) => {
    while (next < count) {
      const request = requests[next % requests.length]!;
      next++;
      const { status } = await connection.send(request);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      answered++;
    }
  }));
  if (answered !== count) throw new Error(`${answered} of ${count} requests answered`);
  return statuses;
}
