/// <reference path="./hpack-js.d.ts" />
// A minimal HTTP/2 client over a net socket (prior knowledge, no TLS), for
// gRPC load that must cost the generator little: node:http2 spends ~120 µs
// of CPU per call made one at a time on the bench machine (a Duplex stream,
// listeners and header objects per call), as much as the server it measures.
// Here a call is one prebuilt HEADERS block and one DATA frame written at
// once, and an answer is the :status and grpc-status of its header blocks
// (HPACK decoded by hpack.js, which keeps the dynamic table). Not a general
// client: no server push, no priorities, request bodies under the server's
// initial stream window.
import type { Socket } from 'node:net';
import hpack from 'hpack.js';
import { connectSocket, watchSocket } from './loopback-socket.js';

interface H2Answer {
  /** :status of the response headers. */
  readonly status: number;
  /** grpc-status from the trailers (or a trailers-only answer's headers), if any. */
  readonly grpcStatus: string | undefined;
}

/** Called once per call: an error (stream reset, GOAWAY, connection lost) or the answer. */
export type OnAnswer = (error: Error | undefined, answer: H2Answer | undefined) => void;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER_BYTES = 9;
const enum Frame { Data = 0, Headers = 1, RstStream = 3, Settings = 4, Ping = 6, GoAway = 7, WindowUpdate = 8, Continuation = 9 }
const enum Flag { EndStream = 0x1, Ack = 0x1, EndHeaders = 0x4, Padded = 0x8, Priority = 0x20 }
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const MAX_WINDOW = 2 ** 31 - 1;
const DEFAULT_WINDOW = 65535;
const RST_CANCEL = 0x8;
/** HTTP/2's default SETTINGS_HEADER_TABLE_SIZE, which we keep. */
const HEADER_TABLE_BYTES = 4096;

function frame(type: Frame, flags: number, streamId: number, payload: Buffer): Buffer {
  const bytes = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  bytes.writeUIntBE(payload.length, 0, 3);
  bytes.writeUInt8(type, 3);
  bytes.writeUInt8(flags, 4);
  bytes.writeUInt32BE(streamId, 5);
  payload.copy(bytes, FRAME_HEADER_BYTES);
  return bytes;
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByte: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByte | value];
  const bytes = [firstByte | max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  bytes.push(rest);
  return bytes;
}

function hpackString(text: string): number[] {
  const bytes = [...Buffer.from(text, 'latin1')];
  return [...hpackInt(bytes.length, 7, 0), ...bytes];
}

/**
 * The HPACK block of a gRPC call's request headers. Static-table indexes and
 * literals without indexing only: the block changes no table, so one block
 * serves every call on every connection.
 */
export function grpcRequestHeaders(path: string, authority: string): Buffer {
  return Buffer.from([
    0x83, // :method POST (static 3)
    0x86, // :scheme http (static 6)
    ...hpackInt(4, 4, 0x00), ...hpackString(path), // :path (static name 4)
    ...hpackInt(1, 4, 0x00), ...hpackString(authority), // :authority (static name 1)
    ...hpackInt(31, 4, 0x00), ...hpackString('application/grpc'), // content-type (static name 31)
    0x00, ...hpackString('te'), ...hpackString('trailers'),
  ]);
}

interface Call {
  status: number;
  grpcStatus: string | undefined;
  readonly onAnswer: OnAnswer;
}

/** One HTTP/2 connection; calls may be in flight at once (one stream each). */
export class RawH2Session {
  private readonly socket: Socket;
  private readonly decoder = hpack.decompressor.create({ table: { size: HEADER_TABLE_BYTES } });
  private readonly calls = new Map<number, Call>();
  private buffer: Buffer = Buffer.alloc(0);
  private nextStreamId = 1;
  /** What the server lets us send on the connection (DATA bytes). */
  private sendWindow = DEFAULT_WINDOW;
  private streamWindow = DEFAULT_WINDOW;
  private received = 0;
  /** A header block split over CONTINUATION frames. */
  private block: { streamId: number; parts: Buffer[]; endStream: boolean } | undefined;
  private waiting: { streamId: number; bytes: Buffer; dataBytes: number }[] = [];
  private closedError: Error | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    watchSocket(socket, (chunk) => this.onData(chunk), (error) => {
      this.closedError ??= error;
      for (const [, call] of this.calls) call.onAnswer(this.closedError, undefined);
      this.calls.clear();
      this.waiting = [];
    });
    // A block we cannot decode leaves the connection's HPACK table unknown: give the connection up.
    this.decoder.on('error', (error) => socket.destroy(error));
  }

  /** Connects and exchanges SETTINGS; resolves once the server's SETTINGS arrived. */
  static async open(port: number, host = '127.0.0.1'): Promise<RawH2Session> {
    const socket = await connectSocket(port, host);
    const session = new RawH2Session(socket);
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(SETTINGS_ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(MAX_WINDOW, 8);
    const increment = Buffer.alloc(4);
    increment.writeUInt32BE(MAX_WINDOW - DEFAULT_WINDOW, 0);
    // Windows at their maximum: answers are never held back by flow control.
    socket.write(Buffer.concat([PREFACE, frame(Frame.Settings, 0, 0, settings), frame(Frame.WindowUpdate, 0, 0, increment)]));
    return new Promise((resolve) => {
      session.onSettings = () => resolve(session);
    });
  }

  private onSettings: (() => void) | undefined;

  /**
   * Starts a call: `headers` from grpcRequestHeaders, `body` the framed gRPC
   * message. Returns its stream id, or undefined (and calls nothing) if the
   * session is closed.
   */
  call(headers: Buffer, body: Buffer, onAnswer: OnAnswer): number | undefined {
    if (this.closedError !== undefined) return undefined;
    if (body.length > this.streamWindow) throw new Error(`request body of ${body.length} bytes exceeds the server's stream window`);
    const streamId = this.nextStreamId;
    this.nextStreamId += 2;
    const bytes = Buffer.allocUnsafe(2 * FRAME_HEADER_BYTES + headers.length + body.length);
    bytes.writeUIntBE(headers.length, 0, 3);
    bytes.writeUInt8(Frame.Headers, 3);
    bytes.writeUInt8(Flag.EndHeaders, 4);
    bytes.writeUInt32BE(streamId, 5);
    headers.copy(bytes, FRAME_HEADER_BYTES);
    const data = FRAME_HEADER_BYTES + headers.length;
    bytes.writeUIntBE(body.length, data, 3);
    bytes.writeUInt8(Frame.Data, data + 3);
    bytes.writeUInt8(Flag.EndStream, data + 4);
    bytes.writeUInt32BE(streamId, data + 5);
    body.copy(bytes, data + FRAME_HEADER_BYTES);
    this.calls.set(streamId, { status: 0, grpcStatus: undefined, onAnswer });
    if (this.waiting.length === 0 && body.length <= this.sendWindow) {
      this.sendWindow -= body.length;
      this.socket.write(bytes);
    } else {
      this.waiting.push({ streamId, bytes, dataBytes: body.length });
    }
    return streamId;
  }

  /** Resets the call on `streamId` (RST_STREAM CANCEL); its onAnswer is not called. */
  cancel(streamId: number): void {
    if (!this.calls.delete(streamId)) return;
    const code = Buffer.alloc(4);
    code.writeUInt32BE(RST_CANCEL, 0);
    this.socket.write(frame(Frame.RstStream, 0, streamId, code));
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    let at = 0;
    while (this.buffer.length - at >= FRAME_HEADER_BYTES) {
      const length = this.buffer.readUIntBE(at, 3);
      if (this.buffer.length - at < FRAME_HEADER_BYTES + length) break;
      const type = this.buffer.readUInt8(at + 3);
      const flags = this.buffer.readUInt8(at + 4);
      const streamId = this.buffer.readUInt32BE(at + 5) & 0x7fffffff;
      const payload = this.buffer.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length);
      at += FRAME_HEADER_BYTES + length;
      this.onFrame(type, flags, streamId, payload);
    }
    this.buffer = this.buffer.subarray(at);
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    switch (type) {
      case Frame.Data:
        this.received += payload.length;
        // Our windows started at the maximum; top the connection's up long before it could run out.
        if (this.received > MAX_WINDOW / 2) {
          const increment = Buffer.alloc(4);
          increment.writeUInt32BE(this.received, 0);
          this.socket.write(frame(Frame.WindowUpdate, 0, 0, increment));
          this.received = 0;
        }
        if ((flags & Flag.EndStream) !== 0) this.finish(streamId);
        return;
      case Frame.Headers: {
        let start = 0;
        let end = payload.length;
        if ((flags & Flag.Padded) !== 0) {
          end -= payload.readUInt8(0);
          start = 1;
        }
        if ((flags & Flag.Priority) !== 0) start += 5;
        this.block = { streamId, parts: [payload.subarray(start, end)], endStream: (flags & Flag.EndStream) !== 0 };
        if ((flags & Flag.EndHeaders) !== 0) this.endBlock();
        return;
      }
      case Frame.Continuation:
        this.block?.parts.push(payload);
        if ((flags & Flag.EndHeaders) !== 0) this.endBlock();
        return;
      case Frame.RstStream:
        this.fail(streamId, new Error(`stream reset by the server (code ${payload.readUInt32BE(0)})`));
        return;
      case Frame.Settings:
        if ((flags & Flag.Ack) !== 0) return;
        for (let i = 0; i + 6 <= payload.length; i += 6) {
          if (payload.readUInt16BE(i) === SETTINGS_INITIAL_WINDOW_SIZE) this.streamWindow = payload.readUInt32BE(i + 2);
        }
        this.socket.write(frame(Frame.Settings, Flag.Ack, 0, Buffer.alloc(0)));
        this.onSettings?.();
        this.onSettings = undefined;
        return;
      case Frame.Ping:
        if ((flags & Flag.Ack) === 0) this.socket.write(frame(Frame.Ping, Flag.Ack, 0, payload));
        return;
      case Frame.GoAway: {
        const last = payload.readUInt32BE(0) & 0x7fffffff;
        this.closedError = new Error(`GOAWAY from the server (code ${payload.readUInt32BE(4)})`);
        for (const [id] of this.calls) if (id > last) this.fail(id, this.closedError);
        return;
      }
      case Frame.WindowUpdate:
        if (streamId === 0) {
          this.sendWindow += payload.readUInt32BE(0) & 0x7fffffff;
          this.flushWaiting();
        }
        return;
      default:
        // Unknown frame types must be ignored (RFC 9113 §4.1).
    }
  }

  private flushWaiting(): void {
    while (this.waiting.length > 0) {
      const next = this.waiting[0];
      if (next === undefined || next.dataBytes > this.sendWindow) return;
      this.waiting.shift();
      if (!this.calls.has(next.streamId)) continue;
      this.sendWindow -= next.dataBytes;
      this.socket.write(next.bytes);
    }
  }

  /** Decodes a whole header block (every block must be, in order: HPACK's table is per connection). */
  private endBlock(): void {
    const block = this.block;
    this.block = undefined;
    if (block === undefined) return;
    this.decoder.write(block.parts.length === 1 && block.parts[0] !== undefined ? block.parts[0] : Buffer.concat(block.parts));
    this.decoder.execute();
    const call = this.calls.get(block.streamId);
    for (let field = this.decoder.read(); field !== null; field = this.decoder.read()) {
      if (call === undefined) continue;
      if (field.name === ':status') call.status = Number(field.value);
      else if (field.name === 'grpc-status') call.grpcStatus = field.value;
    }
    if (block.endStream) this.finish(block.streamId);
  }

  private finish(streamId: number): void {
    const call = this.calls.get(streamId);
    if (call === undefined) return;
    this.calls.delete(streamId);
    call.onAnswer(undefined, { status: call.status, grpcStatus: call.grpcStatus });
  }

  private fail(streamId: number, error: Error): void {
    const call = this.calls.get(streamId);
    if (call === undefined) return;
    this.calls.delete(streamId);
    call.onAnswer(error, undefined);
  }
}
