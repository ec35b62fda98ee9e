// Protobuf inputs for the fuzz suite: valid RateLimitRequest and CheckRequest
// messages encoded by our own WireWriter, and ways to break them.
import { limitSpecProblem } from '../../src/core/limit.js';
import type { Unit } from '../../src/core/types.js';
import { WireWriter } from '../../src/transport/grpc/wire-writer.js';
import { randomAscii, randomText, type Random } from './fuzz-kit.js';

const UNITS: readonly (Unit | undefined)[] = [undefined, 'second', 'minute', 'hour', 'day', 'month', 'year', 'week'];
const KEYS = ['api_key', 'remote_address', 'masked_remote_address', 'path', 'method', 'generic_key', 'sku', 'health', 'key1', 'key2', 'k'];
const DOMAINS = ['fuzz', 'fuzz_window', 'no-such-domain'];

function nonEmptyText(random: Random, pieces: number): Buffer {
  const text = randomText(random, Math.max(1, pieces));
  return text.length === 0 ? Buffer.from('x') : text;
}

/** A value: usually short, sometimes empty, sometimes over the 4 KiB bound (the service digests those). */
function valueText(random: Random): Buffer {
  if (random.chance(0.05)) return Buffer.alloc(random.range(4097, 6000), 0x76);
  if (random.chance(0.1)) return Buffer.alloc(0);
  return randomText(random, random.range(1, 12));
}

export interface RateLimitCase {
  bytes: Buffer;
  /** Descriptors in the message: the answer must carry one status each. */
  descriptors: number;
}

/**
 * A RateLimitRequest the service must decide (gRPC OK): non-empty domain, 1 to
 * 64 descriptors of 1 to 16 entries with non-empty keys, overrides with a
 * known unit and a rate that can be counted exactly, hits_addend <= 2^32 - 1.
 */
export function validRateLimitRequest(random: Random): RateLimitCase {
  const w = new WireWriter();
  if (random.chance(0.8)) w.string(1, random.pick(DOMAINS));
  else w.bytes(1, nonEmptyText(random, random.range(1, 10)));
  const descriptors = random.chance(0.03) ? 64 : random.range(1, 5);
  for (let i = 0; i < descriptors; i++) {
    const descriptor = w.begin(2);
    const entries = random.chance(0.03) ? 16 : random.range(1, 3);
    for (let j = 0; j < entries; j++) {
      const entry = w.begin(1);
      if (random.chance(0.8)) w.string(1, random.pick(KEYS));
      else w.bytes(1, nonEmptyText(random, random.range(1, 8)));
      const value = valueText(random);
      if (value.length > 0 || random.chance(0.5)) w.bytes(2, value);
      w.end(entry);
    }
    if (random.chance(0.15)) {
      const unitNumber = random.range(1, 7);
      let requestsPerUnit = random.uint32();
      if (limitSpecProblem({ requestsPerUnit, unit: UNITS[unitNumber]! }) !== undefined) requestsPerUnit = random.int(1000);
      const limit = w.begin(2);
      if (requestsPerUnit !== 0 || random.chance(0.5)) w.uint(1, requestsPerUnit);
      w.uint(2, unitNumber);
      w.end(limit);
    }
    if (random.chance(0.2)) {
      const hits = w.begin(3);
      if (random.chance(0.8)) w.uint(1, random.chance(0.5) ? random.int(4) : random.uint32());
      w.end(hits);
    }
    w.end(descriptor);
  }
  if (random.chance(0.3)) w.uint(3, random.chance(0.7) ? random.int(5) : random.uint32());
  return { bytes: w.finish(), descriptors };
}

function address(random: Random): string {
  switch (random.int(5)) {
    case 0: return `${random.int(256)}.${random.int(256)}.${random.int(256)}.${random.int(256)}`;
    case 1: return `2001:db8::${random.int(65536).toString(16)}`;
    case 2: return random.pick(['::1', '127.0.0.1', '::ffff:10.0.0.1', 'fe80::1%eth0', '0.0.0.0', '']);
    case 3: return randomAscii(random, random.range(1, 20), '0123456789abcdef.:[]%');
    default: return `10.0.${random.int(4)}.${random.int(256)}`;
  }
}

function headerName(random: Random): string {
  return random.pick(['x-api-key', 'host', ':path', ':method', ':authority', 'x-forwarded-for', 'user-agent', 'x-multi']) + (random.chance(0.1) ? randomAscii(random, 3) : '');
}

function path(random: Random): Buffer {
  const base = Buffer.from(random.pick(['/', '/rating', '/rating/', '/a/b', '']));
  const query = random.chance(0.5) ? Buffer.concat([Buffer.from('?sku='), randomText(random, random.range(0, 5)), Buffer.from(random.chance(0.3) ? '&x=1&sku=2' : '')]) : Buffer.alloc(0);
  return Buffer.concat([base, random.chance(0.2) ? randomText(random, 4) : Buffer.alloc(0), query]);
}

function socketPeer(w: WireWriter, field: number, random: Random): void {
  const peer = w.begin(field);
  const addressMark = w.begin(1);
  const socket = w.begin(1);
  if (random.chance(0.3)) w.uint(1, random.int(2)); // protocol
  w.string(2, address(random));
  w.uint(3, random.int(65536)); // port_value
  w.end(socket);
  w.end(addressMark);
  if (random.chance(0.2)) w.string(2, 'service');
  if (random.chance(0.1)) {
    const label = w.begin(3);
    w.string(1, 'l');
    w.string(2, 'v');
    w.end(label);
  }
  if (random.chance(0.2)) w.string(4, 'spiffe://cluster/ns/default/sa/x');
  w.end(peer);
}

/**
 * A CheckRequest shaped as Envoy's ext_authz filter sends it (sometimes with
 * `encode_raw_headers`), with random header values, paths and addresses. With
 * a default domain set the service must decide it (gRPC OK).
 */
export function validCheckRequest(random: Random): Buffer {
  const w = new WireWriter();
  const attributes = w.begin(1);
  if (random.chance(0.9)) socketPeer(w, 1, random);
  if (random.chance(0.5)) socketPeer(w, 2, random);
  const request = w.begin(4);
  if (random.chance(0.5)) {
    const time = w.begin(1);
    w.uint(1, 1_767_225_600 + random.int(1000));
    w.uint(2, random.int(1_000_000_000));
    w.end(time);
  }
  const http = w.begin(2);
  w.string(1, randomAscii(random, 10));
  if (random.chance(0.9)) w.string(2, random.pick(['GET', 'POST', 'DELETE', 'PUT', 'get', '']));
  const raw = random.chance(0.3);
  const headers = random.range(0, 8);
  if (!raw) {
    for (let i = 0; i < headers; i++) {
      const entry = w.begin(3);
      w.string(1, headerName(random));
      w.bytes(2, valueText(random));
      w.end(entry);
    }
  }
  if (random.chance(0.9)) w.bytes(4, path(random));
  if (random.chance(0.7)) w.bytes(5, randomText(random, random.range(0, 6)));
  w.string(6, random.pick(['http', 'https']));
  if (random.chance(0.2)) w.bytes(7, randomText(random, 3));
  w.tag(9, 0);
  w.varint(2 ** 53 - 1); // size; Envoy sends -1 (a ten-byte varint), which this writer does not make
  w.string(10, random.pick(['HTTP/1.1', 'HTTP/2']));
  if (random.chance(0.1)) w.bytes(11, randomText(random, 10));
  if (random.chance(0.1)) w.bytes(12, random.bytes(random.int(20)));
  if (raw) {
    const map = w.begin(13);
    for (let i = 0; i < headers; i++) {
      const header = w.begin(1);
      w.string(1, random.chance(0.2) ? headerName(random).toUpperCase() : headerName(random));
      if (random.chance(0.3)) w.bytes(2, valueText(random));
      if (random.chance(0.8)) w.bytes(3, valueText(random));
      w.end(header);
    }
    w.end(map);
  }
  w.end(http);
  w.end(request);
  if (random.chance(0.7)) {
    const entry = w.begin(10);
    w.string(1, 'domain');
    w.bytes(2, random.chance(0.7) ? Buffer.from(random.pick(['fuzz', 'fuzz_window', '', 'no-such-domain'])) : randomText(random, 4));
    w.end(entry);
  }
  if (random.chance(0.3)) {
    const entry = w.begin(10);
    w.string(1, 'other');
    w.string(2, 'x');
    w.end(entry);
  }
  if (random.chance(0.2)) {
    const metadata = w.begin(11);
    const filter = w.begin(1);
    w.string(1, 'envoy.filters.http.ext_authz');
    w.end(w.begin(2));
    w.end(filter);
    w.end(metadata);
  }
  if (random.chance(0.1)) {
    const tls = w.begin(12);
    w.string(1, 'sni.example');
    w.end(tls);
  }
  w.end(attributes);
  return w.finish();
}

// A generic view of protobuf bytes, to re-encode a message field by field:
// varints non-minimally, unknown fields inserted (still a valid message), or
// with lying lengths and wrong wire types (not one).

type WireNode =
  | { field: number; wireType: 0; value: bigint }
  | { field: number; wireType: 1 | 5; raw: Buffer }
  | { field: number; wireType: 2; raw: Buffer; children: WireNode[] | undefined };

function readVarint(b: Buffer, at: number): [bigint, number] | undefined {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    const byte = b[at + i];
    if (byte === undefined) return undefined;
    value |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if (byte < 0x80) return [BigInt.asUintN(64, value), at + i + 1];
  }
  return undefined;
}

/** Parses bytes as a message; a length-delimited field whose bytes parse as one too gets children. */
export function parseWire(b: Buffer, depth = 0): WireNode[] | undefined {
  const nodes: WireNode[] = [];
  let at = 0;
  while (at < b.length) {
    const tag = readVarint(b, at);
    if (tag === undefined || tag[0] < 8n || tag[0] > 0xffff_ffffn) return undefined;
    const field = Number(tag[0] >> 3n);
    const wireType = Number(tag[0] & 7n);
    at = tag[1];
    if (wireType === 0) {
      const v = readVarint(b, at);
      if (v === undefined) return undefined;
      nodes.push({ field, wireType, value: v[0] });
      at = v[1];
    } else if (wireType === 1 || wireType === 5) {
      const size = wireType === 1 ? 8 : 4;
      if (at + size > b.length) return undefined;
      nodes.push({ field, wireType, raw: b.subarray(at, at + size) });
      at += size;
    } else if (wireType === 2) {
      const length = readVarint(b, at);
      if (length === undefined || Number(length[0]) > b.length - length[1]) return undefined;
      const raw = b.subarray(length[1], length[1] + Number(length[0]));
      nodes.push({ field, wireType, raw, children: depth < 8 && raw.length > 0 ? parseWire(raw, depth + 1) : undefined });
      at = length[1] + raw.length;
    } else {
      return undefined;
    }
  }
  return nodes;
}

/** A varint, padded with `extra` continuation bytes (valid protobuf; at most 10 bytes in all). */
function varintBytes(value: bigint, extra = 0): Buffer {
  const bytes: number[] = [];
  let v = value;
  do {
    bytes.push(Number(v & 0x7fn));
    v >>= 7n;
  } while (v !== 0n);
  const pad = Math.min(extra, 10 - bytes.length);
  for (let i = 0; i < pad; i++) bytes.push(0);
  for (let i = 0; i < bytes.length - 1; i++) bytes[i]! |= 0x80;
  return Buffer.from(bytes);
}

export interface Reencoding {
  /** Chance that a varint (tag, value or length) is written non-minimally. */
  padVarints: number;
  /** Chance of an unknown field (number >= 100) before each field. */
  insertUnknown: number;
  /** Chance that a length is off (invalid). */
  lieAboutLength: number;
  /** Chance that a tag's wire type is changed (invalid). */
  wrongWireType: number;
}

function unknownField(random: Random): Buffer {
  const field = BigInt(random.pick([100, 1000, 2 ** 20, 2 ** 29 - 1]));
  switch (random.int(4)) {
    case 0: return Buffer.concat([varintBytes(field << 3n), varintBytes(BigInt(random.uint32()))]);
    case 1: return Buffer.concat([varintBytes((field << 3n) | 1n), random.bytes(8)]);
    case 2: return Buffer.concat([varintBytes((field << 3n) | 5n), random.bytes(4)]);
    default: {
      const body = random.bytes(random.int(12));
      return Buffer.concat([varintBytes((field << 3n) | 2n), varintBytes(BigInt(body.length)), body]);
    }
  }
}

/** Writes `nodes` back, changed as `how` says. */
export function reencode(nodes: readonly WireNode[], random: Random, how: Reencoding): Buffer {
  const parts: Buffer[] = [];
  const pad = (): number => (random.chance(how.padVarints) ? random.range(1, 4) : 0);
  for (const node of nodes) {
    if (random.chance(how.insertUnknown)) parts.push(unknownField(random));
    let wireType: number = node.wireType;
    if (random.chance(how.wrongWireType)) wireType = random.pick([0, 1, 2, 3, 4, 5, 6, 7].filter((n) => n !== node.wireType));
    parts.push(varintBytes((BigInt(node.field) << 3n) | BigInt(wireType), pad()));
    if (node.wireType === 0) {
      parts.push(varintBytes(node.value, pad()));
    } else if (node.wireType === 2) {
      const body = node.children !== undefined ? reencode(node.children, random, how) : node.raw;
      let length = BigInt(body.length);
      if (random.chance(how.lieAboutLength)) {
        length = random.pick([length + 1n, length - 1n, length * 2n + 1n, 0n, 2n ** 31n, 2n ** 63n, BigInt(random.int(300))]);
        if (length < 0n) length = 0n;
      }
      parts.push(varintBytes(length, pad()), body);
    } else {
      parts.push(node.raw);
    }
  }
  if (random.chance(how.insertUnknown)) parts.push(unknownField(random));
  return Buffer.concat(parts);
}
