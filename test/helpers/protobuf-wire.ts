// A tiny hand-written protobuf wire codec for golden-bytes tests: independent
// of protobufjs, so a renumbered field in proto/ cannot hide behind it.

const VARINT = 0;
const LEN = 2;

export function varint(value: number | bigint): Buffer {
  // Negative int64 values are ten-byte two's complement varints.
  let v = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    bytes.push(byte);
  } while (v !== 0n);
  return Buffer.from(bytes);
}

export function tag(field: number, wireType: number): Buffer {
  return varint((field << 3) | wireType);
}

/** A varint field. */
export function num(field: number, value: number | bigint): Buffer {
  return Buffer.concat([tag(field, VARINT), varint(value)]);
}

/** A length-delimited field: a string, bytes, or an encoded sub-message (list of fields). */
export function len(field: number, content: string | Buffer | Buffer[]): Buffer {
  const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : Array.isArray(content) ? Buffer.concat(content) : content;
  return Buffer.concat([tag(field, LEN), varint(body.length), body]);
}

/** A map<string,string> entry: a message with key = 1, value = 2. */
export function mapEntry(field: number, key: string, value: string): Buffer {
  return len(field, [len(1, key), len(2, value)]);
}

export interface WireField {
  field: number;
  wireType: number;
  /** varint value, or the raw bytes of a length-delimited field. */
  value: bigint | Buffer;
}

function readVarint(buf: Buffer, offset: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const byte = buf[offset++];
    if (byte === undefined) throw new Error('truncated varint');
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result, offset];
    shift += 7n;
  }
}

/** Splits one message into its fields, in wire order. Only varint and length-delimited. */
function parse(buf: Buffer): WireField[] {
  const fields: WireField[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const [key, next] = readVarint(buf, offset);
    offset = next;
    const field = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (wireType === VARINT) {
      const [value, after] = readVarint(buf, offset);
      fields.push({ field, wireType, value });
      offset = after;
    } else if (wireType === LEN) {
      const [length, after] = readVarint(buf, offset);
      const end = after + Number(length);
      fields.push({ field, wireType, value: buf.subarray(after, end) });
      offset = end;
    } else {
      throw new Error(`unexpected wire type ${wireType} for field ${field}`);
    }
  }
  return fields;
}

/** Field numbers present, in order (to assert nothing unexpected is sent). */
export function fieldNumbers(buf: Buffer): number[] {
  return parse(buf).map((f) => f.field);
}

export function all(buf: Buffer, field: number): WireField[] {
  return parse(buf).filter((f) => f.field === field);
}

function one(buf: Buffer, field: number): WireField {
  const found = all(buf, field);
  if (found.length !== 1) throw new Error(`expected one field ${field}, found ${found.length}`);
  return found[0]!;
}

export function int(buf: Buffer, field: number): number {
  const f = one(buf, field);
  if (f.wireType !== VARINT) throw new Error(`field ${field} is not a varint`);
  return Number(f.value);
}

export function bytes(buf: Buffer, field: number): Buffer {
  const f = one(buf, field);
  if (f.wireType !== LEN) throw new Error(`field ${field} is not length-delimited`);
  return f.value as Buffer;
}

export function str(buf: Buffer, field: number): string {
  return bytes(buf, field).toString('utf8');
}
