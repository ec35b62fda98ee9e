// Protobuf wire format, read side: varints, length-delimited fields and
// skipping of unknown fields, over one request's bytes. Every read is checked
// against the end of the (sub-)message being read; what does not fit throws
// WireFormatError, which the decode loop (message-table.ts) names the field
// of and the codecs answer INVALID_ARGUMENT with.
import { decodeUtf8Lossless } from '../../core/lossless-text.js';
import { InternalError, InvalidRequestError, MalformedMessageError, RateLimitError } from '../../errors.js';

export const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

const WIRE_TYPE_NAMES = ['varint', 'fixed64', 'length-delimited', 'start-group', 'end-group', 'fixed32', '6', '7'] as const;


/**
 * A fault found while decoding, with the path to where it is, from the
 * top-level message down ("descriptors[1].entries[0].key"): the decode loop
 * (message-table.ts) builds it while the error unwinds through it (see within).
 */
abstract class DecodeFault extends RateLimitError {
  readonly problem: string;
  path: string;
  constructor(code: 'RL_ERR_MALFORMED_MESSAGE' | 'RL_ERR_INVALID_REQUEST', path: string, problem: string) {
    super(code, problem);
    this.problem = problem;
    this.path = path;
  }
}

/** Bytes that are not the message being decoded. */
class WireFormatError extends DecodeFault {
  constructor(problem: string) {
    super('RL_ERR_MALFORMED_MESSAGE', '', problem);
  }
}

/**
 * A well-formed value refused (a uint32 holding more, too many descriptors, a
 * unit we do not know); `path` is relative to the message that refused it.
 */
export class WireValueError extends DecodeFault {
  constructor(path: string, problem: string) {
    super('RL_ERR_INVALID_REQUEST', path, problem);
  }
}

/**
 * For a decode loop's catch block: prefixes a DecodeFault's path with the
 * name of the field being read when it was thrown, and returns the error to
 * rethrow. Any other error passes unchanged.
 */
export function within(error: unknown, fieldName: string): unknown {
  if (error instanceof DecodeFault && fieldName !== '') {
    error.path = error.path === '' ? fieldName : `${fieldName}.${error.path}`;
  }
  return error;
}

/**
 * What a codec's decode function returns instead of throwing (a throwing
 * grpc-js deserializer makes the call INTERNAL): a WireFormatError becomes a
 * MalformedMessageError naming the field, or `messageName` when the fault is
 * in the top-level message itself; a WireValueError an InvalidRequestError
 * naming the field; any other Error (a bug) is returned as it is.
 */
export function decodeFailure(error: unknown, messageName: string): Error {
  if (error instanceof WireFormatError) return new MalformedMessageError(error.path === '' ? messageName : error.path, error.problem);
  if (error instanceof WireValueError) return new InvalidRequestError(error.path, error.problem);
  return error instanceof Error ? error : new InternalError(`decoding ${messageName} threw ${String(error)}`);
}

/** How a known field of the wrong wire type is reported. */
function wireTypeName(wireType: number): string {
  return WIRE_TYPE_NAMES[wireType & 7]!;
}

/**
 * Characters of `bytes[start, end)`: ASCII directly (the common case: keys,
 * addresses, header names), anything else through the lossless UTF-8 decoder,
 * so invalid bytes stay distinct (U+DC80..U+DCFF) instead of collapsing onto U+FFFD.
 */
export function textOf(bytes: Buffer, start: number, end: number): string {
  for (let i = start; i < end; i++) {
    if (bytes[i]! >= 0x80) return decodeUtf8Lossless(bytes, start, end);
  }
  return start === end ? '' : bytes.toString('latin1', start, end);
}

/**
 * A cursor over one message's bytes. Methods take `end`, the offset where the
 * enclosing (sub-)message ends, and throw WireFormatError rather than read past it.
 */
export class WireReader {
  readonly bytes: Buffer;
  pos = 0;
  /** Where the last tag read began (for messages). */
  private tagAt = 0;

  constructor(bytes: Buffer) {
    this.bytes = bytes;
  }

  /** A varint as uint32: bits above 32 are dropped, as protobuf does for 32-bit fields. */
  uint32(end: number): number {
    const pos = this.pos;
    if (pos < end) {
      const b0 = this.bytes[pos]!;
      if (b0 < 0x80) {
        this.pos = pos + 1;
        return b0;
      }
    }
    return this.uint32Slow(end);
  }

  private uint32Slow(end: number): number {
    const bytes = this.bytes;
    const start = this.pos;
    let value = 0;
    for (let i = 0; i < 10; i++) {
      const at = start + i;
      if (at >= end) throw new WireFormatError(`truncated varint at byte ${start}`);
      const byte = bytes[at]!;
      if (i < 5) value |= (byte & 0x7f) << (7 * i);
      if (byte < 0x80) {
        this.pos = at + 1;
        return value >>> 0;
      }
    }
    throw new WireFormatError(`varint longer than 10 bytes at byte ${start}`);
  }

  /**
   * A varint as a non-negative number: exact up to 2^53; above that the value
   * is approximate but still above every 32-bit bound we compare it with.
   */
  uint64(end: number): number {
    const bytes = this.bytes;
    const start = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const at = start + i;
      if (at >= end) throw new WireFormatError(`truncated varint at byte ${start}`);
      const byte = bytes[at]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        this.pos = at + 1;
        return value;
      }
      scale *= 128;
    }
    throw new WireFormatError(`varint longer than 10 bytes at byte ${start}`);
  }

  /** A field's tag (field number << 3 | wire type); field 0 and numbers past 2^29 - 1 are invalid. */
  tag(end: number): number {
    const start = this.pos;
    this.tagAt = start;
    if (start < end) {
      const b0 = this.bytes[start]!;
      if (b0 < 0x80 && b0 >= 8) {
        this.pos = start + 1;
        return b0;
      }
    }
    const tag = this.uint64(end);
    if (tag < 8 || tag > 0xffff_ffff) throw new WireFormatError(`invalid tag ${tag} at byte ${start} (field number ${Math.floor(tag / 8)})`);
    return tag;
  }

  /** Reads a length prefix and returns where the field's bytes end; they must lie within `end`. */
  lengthEnd(end: number): number {
    const start = this.pos;
    const length = this.uint64(end);
    if (length > end - this.pos) {
      throw new WireFormatError(`length ${length} at byte ${start} runs past the end of the message (${end - this.pos} bytes left)`);
    }
    return this.pos + length;
  }

  /** A length-delimited string, decoded losslessly (see textOf). */
  string(end: number): string {
    const stop = this.lengthEnd(end);
    const text = textOf(this.bytes, this.pos, stop);
    this.pos = stop;
    return text;
  }

  /** Refuses the field whose tag (`tag`) was just read: a known field number with another wire type. */
  wrongWireType(tag: number): never {
    const wireType = tag & 7;
    throw new WireFormatError(`unexpected wire type ${wireType} (${wireTypeName(wireType)}) in the tag at byte ${this.tagAt}`);
  }

  /**
   * Skips the unknown field whose tag (`tag`) was just read. Groups (wire
   * types 3 and 4, unused by every message we read) are refused.
   */
  skip(tag: number, end: number): void {
    const wireType = tag & 7;
    const start = this.tagAt;
    switch (wireType) {
      case WIRE_VARINT:
        this.uint64(end);
        return;
      case WIRE_FIXED64:
        this.advance(8, end, start);
        return;
      case WIRE_LEN:
        this.pos = this.lengthEnd(end);
        return;
      case WIRE_FIXED32:
        this.advance(4, end, start);
        return;
      default:
        throw new WireFormatError(`unsupported wire type ${wireType} (${wireTypeName(wireType)}) in the tag at byte ${start}`);
    }
  }

  private advance(bytes: number, end: number, start: number): void {
    if (end - this.pos < bytes) throw new WireFormatError(`truncated ${bytes}-byte field (tag at byte ${start})`);
    this.pos += bytes;
  }
}
