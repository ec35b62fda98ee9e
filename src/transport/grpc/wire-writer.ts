// Protobuf wire format, write side. One growable buffer per message written
// (a writer is used for one message, then dropped: nothing is shared between
// calls); a sub-message gets a one-byte length placeholder that is widened in
// place (copyWithin) only when the sub-message turns out to be 128 bytes or
// longer, so nothing is sized twice. Our responses' sub-messages are almost
// always shorter.
import { WIRE_LEN, WIRE_VARINT } from './wire-reader.js';

/** Most responses fit (an RLS answer for one descriptor with headers is ~150 bytes); Node serves this size from its buffer pool. */
const INITIAL_BYTES = 256;

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

export class WireWriter {
  private buf: Buffer = Buffer.allocUnsafe(INITIAL_BYTES);
  private pos = 0;

  private ensure(bytes: number): void {
    const needed = this.pos + bytes;
    if (needed <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < needed) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  /** A non-negative integer (up to 2^53) as a varint. */
  varint(value: number): void {
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    while (value >= 0x80) {
      buf[pos++] = (value % 128) | 0x80;
      value = Math.floor(value / 128);
    }
    buf[pos++] = value;
    this.pos = pos;
  }

  /** A field's tag. */
  tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  /** A varint field, written even when 0 (callers skip proto3 defaults where they want to). */
  uint(field: number, value: number): void {
    this.tag(field, WIRE_VARINT);
    this.varint(value);
  }

  /** A string field (UTF-8; a lone surrogate becomes U+FFFD's bytes). */
  string(field: number, text: string): void {
    const mark = this.begin(field);
    this.ensure(text.length * 3);
    const buf = this.buf;
    let pos = this.pos;
    let i = 0;
    for (; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x80) break;
      buf[pos++] = code;
    }
    if (i < text.length) pos += buf.write(text.slice(i), pos, 'utf8');
    this.pos = pos;
    this.end(mark);
  }

  /** A bytes field, as given. */
  bytes(field: number, value: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.varint(value.length);
    this.ensure(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }

  /** Starts a length-delimited sub-message; returns the mark to pass to end(). */
  begin(field: number): number {
    this.tag(field, WIRE_LEN);
    this.ensure(1);
    const mark = this.pos;
    this.pos = mark + 1;
    return mark;
  }

  /** Ends the sub-message begun at `mark`: writes its length, widening the placeholder if needed. */
  end(mark: number): void {
    const length = this.pos - mark - 1;
    if (length < 0x80) {
      this.buf[mark] = length;
      return;
    }
    const extra = varintSize(length) - 1;
    this.ensure(extra);
    this.buf.copyWithin(mark + 1 + extra, mark + 1, this.pos);
    const after = this.pos + extra;
    this.pos = mark;
    this.varint(length);
    this.pos = after;
  }

  /** The message written; the writer is done with (what it returns is a view of its buffer). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
