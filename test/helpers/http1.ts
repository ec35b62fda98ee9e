// A hand-written HTTP/1.1 client on one TCP socket: it sends exactly the bytes
// a test gives (partial requests, raw header bytes, CONNECT) and tells a
// response apart from a reset, which node:http and fetch hide behind retries
// and agents.
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  /** Lower-case names; repeats joined with ', '. */
  headers: Record<string, string>;
  body: string;
}

/** How the server ended the connection: what it sent, and the socket error if there was one (e.g. ECONNRESET). */
export interface RawClose {
  data: string;
  error: string | undefined;
}

export class RawHttpConnection {
  readonly socket: Socket;
  /** Settles when the socket is closed, whoever closed it. Never rejects. */
  readonly closed: Promise<RawClose>;
  private received = Buffer.alloc(0);
  private everything = '';
  private error: string | undefined;
  private isClosed = false;
  private waiter: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.everything += chunk.toString('latin1');
      this.waiter?.();
    });
    this.closed = new Promise((resolve) => {
      socket.on('error', (error: NodeJS.ErrnoException) => { this.error ??= error.code ?? error.message; });
      socket.on('close', () => {
        this.isClosed = true;
        this.waiter?.();
        resolve({ data: this.everything, error: this.error });
      });
    });
  }

  /** Connects to 127.0.0.1:port (rejects on ECONNREFUSED etc.). */
  static open(port: number, host = '127.0.0.1'): Promise<RawHttpConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host });
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        resolve(new RawHttpConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** Writes raw bytes (a string is sent as latin1: one char, one byte). */
  write(bytes: string | Buffer): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /**
   * Sends `bytes` and resolves with the next whole response (Content-Length
   * framed, or ended by the server's close). Rejects, naming the socket error,
   * when the connection ends before a whole response arrived.
   */
  async request(bytes: string | Buffer): Promise<RawResponse> {
    this.write(bytes);
    return this.nextResponse();
  }

  /** Waits for the next whole response (see request). */
  async nextResponse(): Promise<RawResponse> {
    for (;;) {
      const parsed = this.parse();
      if (parsed !== undefined) return parsed;
      if (this.isClosed) {
        throw new Error(`connection closed before a whole response (${this.error ?? 'clean close'}; received ${JSON.stringify(this.received.toString('latin1').slice(0, 200))})`);
      }
      await new Promise<void>((resolve) => { this.waiter = resolve; });
      this.waiter = undefined;
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private parse(): RawResponse | undefined {
    const end = this.received.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const head = this.received.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? Number.NaN);
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const length = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
    const bodyStart = end + 4;
    let bodyEnd: number;
    if (length !== undefined) {
      if (this.received.length < bodyStart + length) return undefined;
      bodyEnd = bodyStart + length;
    } else {
      if (!this.isClosed) return undefined; // read until the server closes
      bodyEnd = this.received.length;
    }
    const body = this.received.subarray(bodyStart, bodyEnd).toString('utf8');
    this.received = this.received.subarray(bodyEnd);
    return { status, headers, body };
  }
}
