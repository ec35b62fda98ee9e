// Protobuf messages described once, as a table of their fields, and the one
// decode loop and the one encode loop that read such tables. A table says a
// field's number, its proto name (for error paths), its type (which fixes
// its wire type) and where its value goes or comes from in our own types: a
// codec decodes straight into the limiter's types, without a generic message
// object in between.
//
// Decoding follows protobuf: fields in any order, unknown fields of any wire
// type skipped, a sub-message that occurs twice merged (the same target is
// written again), the last occurrence of a scalar wins. A known field with
// the wrong wire type is an error, not an unknown field. Every decoding
// state lives in the call (the target a codec passes in, the loop's locals):
// nothing is shared between calls.
import { InternalError } from '../../errors.js';
import { WIRE_LEN, WIRE_VARINT, WireReader, WireValueError, within } from './wire-reader.js';
import type { WireWriter } from './wire-writer.js';

/** uint32 ceiling. */
export const MAX_UINT32 = 4_294_967_295;

/** Most occurrences of a repeated field accepted, from the call's context, and what they are per ("request"). */
interface Most<C> {
  of(context: C): number;
  readonly per: string;
}

/** One field of a message being decoded into a `T`; `C` is what the caller passes down (bounds). */
interface DecodedField<T, C> {
  readonly number: number;
  readonly name: string;
  readonly wireType: number;
  /** A repeated message field: error paths name each occurrence (`descriptors[1]`). */
  readonly repeated: boolean;
  readonly most: Most<C> | undefined;
  /** Reads the field's value (the tag was read and its wire type checked). */
  read(r: WireReader, end: number, target: T, context: C): void;
}

/** Every field is made here, so that the decode loop sees one object shape. */
function decodedField<T, C>(
  number: number, name: string, wireType: number, repeated: boolean, most: Most<C> | undefined,
  read: (r: WireReader, end: number, target: T, context: C) => void,
): DecodedField<T, C> {
  return { number, name, wireType, repeated, most, read };
}

/** A message as decoded into a `T`: its fields by number. */
export interface MessageReader<T, C> {
  /** The proto message name: the error path of a fault in a top-level message's own bytes. */
  readonly name: string;
  readonly byNumber: readonly (DecodedField<T, C> | undefined)[];
}

/**
 * A message's table. At most one of its fields may be a repeated message
 * field (each of ours has none or one), so that the decode loop counts its
 * occurrences in a local.
 */
export function messageReader<T, C = undefined>(name: string, fields: readonly DecodedField<T, C>[]): MessageReader<T, C> {
  const byNumber: (DecodedField<T, C> | undefined)[] = [];
  if (fields.filter((field) => field.repeated).length > 1) throw new InternalError(`${name}: more than one repeated message field`);
  for (const field of fields) {
    if (byNumber[field.number] !== undefined) throw new InternalError(`${name}: field ${field.number} described twice`);
    byNumber[field.number] = field;
  }
  for (let n = 0; n < byNumber.length; n++) byNumber[n] ??= undefined; // no holes: one array shape
  return { name, byNumber };
}

/**
 * The decode loop: reads `message` from `r.pos` to `end` into `target`. A
 * fault (WireFormatError, WireValueError) leaves with the name of the field
 * being read prefixed to its path: `descriptors[1]` for the second occurrence
 * of a repeated message field, the proto name otherwise, `(field N)` for an
 * unknown field, nothing when the tag itself could not be read.
 */
export function readMessage<T, C>(r: WireReader, end: number, message: MessageReader<T, C>, target: T, context: C): void {
  const byNumber = message.byNumber;
  /** Occurrences of the message's repeated field read so far. */
  let count = 0;
  let tag = 0;
  let field: DecodedField<T, C> | undefined;
  try {
    while (r.pos < end) {
      tag = 0;
      field = undefined;
      tag = r.tag(end);
      field = byNumber[tag >>> 3];
      if (field === undefined) {
        r.skip(tag, end);
      } else if ((tag & 7) !== field.wireType) {
        r.wrongWireType(tag);
      } else if (!field.repeated) {
        field.read(r, end, target, context);
      } else {
        if (field.most !== undefined && count === field.most.of(context)) {
          tag = 0; // the bound names the field itself, not an occurrence of it
          throw new WireValueError(field.name, `at most ${count} ${field.name} per ${field.most.per}`);
        }
        field.read(r, end, target, context);
        count++;
      }
    }
  } catch (error: unknown) {
    throw within(error, tag === 0 ? '' : field === undefined ? `(field ${tag >>> 3})` : field.repeated ? `${field.name}[${count}]` : field.name);
  }
}

/** Fields of a message decoded into a `T`, by type. */
export const decode = {
  /** A string field, decoded losslessly (see textOf). */
  string<T, C = undefined>(number: number, name: string, set: (target: T, text: string) => void): DecodedField<T, C> {
    return decodedField(number, name, WIRE_LEN, false, undefined, (r, end, target) => set(target, r.string(end)));
  },

  /** A string or bytes field left undecoded: where its bytes lie in the request's buffer. */
  span<T, C = undefined>(number: number, name: string, set: (target: T, start: number, end: number) => void): DecodedField<T, C> {
    return decodedField(number, name, WIRE_LEN, false, undefined, (r, end, target) => {
      const stop = r.lengthEnd(end);
      set(target, r.pos, stop);
      r.pos = stop;
    });
  },

  /**
   * A uint32 field, refused when its varint holds more: protobuf would keep
   * the low 32 bits (2^32 + 21 read as 21), a cost or a limit nobody sent.
   */
  uint32<T, C = undefined>(number: number, name: string, set: (target: T, value: number) => void): DecodedField<T, C> {
    return decodedField(number, name, WIRE_VARINT, false, undefined, (r, end, target) => {
      const value = r.uint64(end);
      if (value > MAX_UINT32) throw new WireValueError('', `must be at most ${MAX_UINT32} (a uint32), got ${value}`);
      set(target, value);
    });
  },

  /** A uint64 field: exact up to 2^53, above that approximate but above every bound we compare it with. */
  uint64<T, C = undefined>(number: number, name: string, set: (target: T, value: number) => void): DecodedField<T, C> {
    return decodedField(number, name, WIRE_VARINT, false, undefined, (r, end, target) => set(target, r.uint64(end)));
  },

  /** An enum field (an int32 on the wire). */
  enum<T, C = undefined>(number: number, name: string, set: (target: T, value: number) => void): DecodedField<T, C> {
    return decodedField(number, name, WIRE_VARINT, false, undefined, (r, end, target) => set(target, r.uint32(end) | 0));
  },

  /**
   * A sub-message: `open` gives what it is decoded into (a new object, or the
   * target itself: a message whose fields land in the parent's), `close` takes
   * it in once it is read and may refuse it (WireValueError, path relative to
   * the sub-message). With `repeated`, each occurrence is named with its index
   * in error paths, and `most` bounds how many may occur.
   */
  message<T, S, C = undefined>(
    number: number,
    name: string,
    message: MessageReader<S, C>,
    how: {
      readonly open: (target: T) => S;
      readonly close?: (target: T, sub: S) => void;
      readonly repeated?: boolean;
      readonly most?: Most<C>;
    },
  ): DecodedField<T, C> {
    const { open, close } = how;
    return decodedField(number, name, WIRE_LEN, how.repeated === true, how.most, (r, end, target, context) => {
      const stop = r.lengthEnd(end);
      const sub = open(target);
      readMessage(r, stop, message, sub, context);
      close?.(target, sub);
    });
  },
};

/** One field of a message encoded from an `S`. */
interface EncodedField<S> {
  write(w: WireWriter, source: S): void;
}

/** Every field is made here, so that the encode loop sees one object shape. */
function encodedField<S>(write: (w: WireWriter, source: S) => void): EncodedField<S> {
  return { write };
}

/** A message as encoded from an `S`: its fields in the order they are written. */
export interface MessageWriter<S> {
  readonly fields: readonly EncodedField<S>[];
}

export function messageWriter<S>(fields: readonly EncodedField<S>[]): MessageWriter<S> {
  return { fields };
}

/** The encode loop: every field of `message`, in order, from `source`. */
export function writeMessage<S>(w: WireWriter, message: MessageWriter<S>, source: S): void {
  const fields = message.fields;
  for (let i = 0; i < fields.length; i++) fields[i]!.write(w, source);
}

/**
 * Fields of a message encoded from an `S`, by type. `get` returning
 * undefined leaves the field out; any other value is written, 0 and '' too
 * (valid proto3, as protobufjs writes a set default).
 */
export const encode = {
  uint<S>(number: number, get: (source: S) => number | undefined): EncodedField<S> {
    return encodedField((w, source) => {
      const value = get(source);
      if (value !== undefined) w.uint(number, value);
    });
  },

  string<S>(number: number, get: (source: S) => string | undefined): EncodedField<S> {
    return encodedField((w, source) => {
      const text = get(source);
      if (text !== undefined) w.string(number, text);
    });
  },

  message<S, M>(number: number, message: MessageWriter<M>, get: (source: S) => M | undefined): EncodedField<S> {
    return encodedField((w, source) => {
      const value = get(source);
      if (value === undefined) return;
      const mark = w.begin(number);
      writeMessage(w, message, value);
      w.end(mark);
    });
  },

  repeated<S, M>(number: number, message: MessageWriter<M>, get: (source: S) => readonly M[]): EncodedField<S> {
    return encodedField((w, source) => {
      const values = get(source);
      for (let i = 0; i < values.length; i++) {
        const mark = w.begin(number);
        writeMessage(w, message, values[i]!);
        w.end(mark);
      }
    });
  },
};
