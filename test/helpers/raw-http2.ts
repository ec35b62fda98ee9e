// gRPC over a plain node:http2 client session: any headers, any body bytes
// (framed or not, compressed or not), so tests can send what grpc-js clients
// never would. Every call is bounded by a deadline of its own.
import * as http2 from 'node:http2';

export interface RawAnswer {
  /** :status of the response headers; undefined when none arrived. */
  httpStatus: number | undefined;
  /** grpc-status from a trailers-only response or the trailers; undefined when none. */
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
  /** The response body (gRPC frames), as received. */
  body: Buffer;
  /** RST_STREAM code when the stream was reset (NO_ERROR only when no status came); undefined otherwise. */
  resetCode: number | undefined;
  /** The stream or session error, if any (a reset, a GOAWAY, a closed socket). */
  error: string | undefined;
  /** True when the deadline passed before the stream closed. */
  timedOut: boolean;
}

/** A gRPC length-prefixed message: flag byte (1 = compressed), 4-byte big-endian length, bytes. */
export function grpcFrame(message: Buffer, compressed = false, declaredLength = message.length): Buffer {
  const header = Buffer.alloc(5);
  header[0] = compressed ? 1 : 0;
  header.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([header, message]);
}

/** The first gRPC message of a response body, or undefined. */
export function firstMessage(body: Buffer): Buffer | undefined {
  if (body.length < 5) return undefined;
  const length = body.readUInt32BE(1);
  return body.length >= 5 + length ? body.subarray(5, 5 + length) : undefined;
}

export function connect(port: number, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`, { settings });
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

/**
 * POSTs `body` (already framed, or deliberately not) to `path` with gRPC's
 * headers plus `headers`, and collects the answer. Never rejects: a reset, a
 * session error or the deadline is reported in the answer.
 */
export function rawGrpcCall(
  session: http2.ClientHttp2Session,
  path: string,
  body: Buffer,
  options: { headers?: http2.OutgoingHttpHeaders; deadlineMs?: number; endStream?: boolean } = {},
): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const answer: RawAnswer = {
      httpStatus: undefined, grpcStatus: undefined, grpcMessage: undefined, body: Buffer.alloc(0),
      resetCode: undefined, error: undefined, timedOut: false,
    };
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      answer.body = Buffer.concat(chunks);
      resolve(answer);
    };
    const readStatus = (headers: http2.IncomingHttpHeaders): void => {
      const status = headers['grpc-status'];
      if (status !== undefined) answer.grpcStatus = Number(status);
      const message = headers['grpc-message'];
      if (typeof message === 'string') answer.grpcMessage = decodeURIComponent(message);
    };
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request({
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...options.headers,
      }, { endStream: false });
    } catch (error: unknown) {
      answer.error = error instanceof Error ? error.message : String(error);
      resolve(answer);
      return;
    }
    const timer = setTimeout(() => {
      answer.timedOut = true;
      stream.close(http2.constants.NGHTTP2_CANCEL);
      finish();
    }, options.deadlineMs ?? 5000);
    stream.on('response', (headers) => {
      answer.httpStatus = Number(headers[':status']);
      readStatus(headers);
    });
    stream.on('trailers', readStatus);
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    // The server has said all it will (a stream we left open does not close by itself).
    stream.on('end', () => {
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    });
    stream.on('error', (error) => {
      answer.error = error.message;
    });
    stream.on('close', () => {
      // A reset with NO_ERROR counts too: "stop sending, the answer is complete" (RFC 9113 §8.1).
      if (stream.rstCode !== undefined && (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR || answer.grpcStatus === undefined)) {
        answer.resetCode = stream.rstCode;
      }
      finish();
    });
    stream.resume();
    if (options.endStream === false) stream.write(body);
    else stream.end(body);
  });
}
