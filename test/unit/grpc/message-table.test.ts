// The field tables and their decode/encode loops (message-table.ts), apart
// from the codecs that use them.
import t from 'tap';
import { DEFAULT_REQUEST_BOUNDS } from '../../../src/core/request-bounds.js';
import { decodeCheckRequest, encodeCheckResponse } from '../../../src/transport/grpc/authz-codec.js';
import { decode, encode, messageReader, messageWriter, readMessage, writeMessage } from '../../../src/transport/grpc/message-table.js';
import { decodeRateLimitRequest, encodeRateLimitResponse } from '../../../src/transport/grpc/rls-codec.js';
import { WireReader, decodeFailure } from '../../../src/transport/grpc/wire-reader.js';
import { WireWriter } from '../../../src/transport/grpc/wire-writer.js';
import { decision, limitedStatus } from '../../helpers/grpc.js';
import { len, mapEntry, num } from '../../helpers/protobuf-wire.js';

interface Pair { a: string; items: string[] }

t.test('a table that says a field twice, or two repeated message fields, is refused when it is built', async (t) => {
  const item = messageReader<{ v: string }>('Item', [decode.string(1, 'v', (x, text) => { x.v = text; })]);
  t.throws(() => messageReader<Pair>('Pair', [
    decode.string(1, 'a', (p, text) => { p.a = text; }),
    decode.string(1, 'b', (p, text) => { p.a = text; }),
  ]), { message: 'Pair: field 1 described twice' });
  const repeated = (number: number) => decode.message<Pair, { v: string }>(number, 'items', item, {
    open: () => ({ v: '' }), close: (p, x) => { p.items.push(x.v); }, repeated: true,
  });
  t.throws(() => messageReader<Pair>('Pair', [repeated(1), repeated(2)]), { message: 'Pair: more than one repeated message field' });
});

t.test('the decode loop names a fault by the field it was reading, an occurrence of a repeated one by its index', async (t) => {
  const item = messageReader<{ v: number }>('Item', [decode.uint32(1, 'v', (x, value) => { x.v = value; })]);
  const pair = messageReader<Pair>('Pair', [
    decode.string(1, 'a', (p, text) => { p.a = text; }),
    decode.message<Pair, { v: number }>(2, 'items', item, { open: () => ({ v: 0 }), close: (p, x) => { p.items.push(String(x.v)); }, repeated: true }),
  ]);
  const read = (bytes: Buffer): Pair | Error => {
    const p: Pair = { a: '', items: [] };
    try {
      readMessage(new WireReader(bytes), bytes.length, pair, p, undefined);
      return p;
    } catch (error: unknown) {
      return decodeFailure(error, pair.name);
    }
  };
  t.same(read(Buffer.concat([len(2, [num(1, 7)]), len(1, 'x'), len(2, [])])), { a: 'x', items: ['7', '0'] });
  t.equal((read(Buffer.concat([len(2, [num(1, 7)]), len(2, [num(1, 2n ** 32n)])])) as Error).message,
    'items[1].v: must be at most 4294967295 (a uint32), got 4294967296');
  t.equal((read(Buffer.concat([len(1, 'x'), num(2, 1)])) as Error).message, 'items[0]: unexpected wire type 0 (varint) in the tag at byte 3');
  t.equal((read(Buffer.from('3a05', 'hex')) as Error).message, '(field 7): length 5 at byte 1 runs past the end of the message (0 bytes left)');
  t.equal((read(Buffer.from('ff', 'hex')) as Error).message, 'Pair: truncated varint at byte 0');
});

t.test('the encode loop writes fields in table order and leaves out what a getter does not give', async (t) => {
  const table = messageWriter<{ n: number; s?: string }>([
    encode.string(2, (x) => x.s),
    encode.uint(1, (x) => (x.n === 0 ? undefined : x.n)),
  ]);
  const bytes = (x: { n: number; s?: string }): string => {
    const w = new WireWriter();
    writeMessage(w, table, x);
    return w.finish().toString('hex');
  };
  t.equal(bytes({ n: 0 }), '');
  t.equal(bytes({ n: 3, s: '' }), Buffer.concat([len(2, ''), num(1, 3)]).toString('hex'));
});

t.test('no state is shared between calls: a response keeps its bytes after the next one is encoded, a request its fields after the next is decoded', async (t) => {
  const first = encodeRateLimitResponse(decision([limitedStatus({ limitRemaining: 1 })]), true);
  const firstHex = first.toString('hex');
  encodeRateLimitResponse(decision([limitedStatus({ code: 'OVER_LIMIT', limitRemaining: 0, retryAfterS: 9 })]), true);
  t.equal(first.toString('hex'), firstHex, 'RateLimitResponse');
  const check = encodeCheckResponse(decision([limitedStatus({ limitRemaining: 1 })]));
  const checkHex = check.toString('hex');
  encodeCheckResponse(decision([limitedStatus({ code: 'OVER_LIMIT', limitRemaining: 0, retryAfterS: 9 })]));
  t.equal(check.toString('hex'), checkHex, 'CheckResponse');

  const request = (key: string, domain: string): Buffer => len(1, [len(4, [len(2, [mapEntry(3, 'x-api-key', key)])]), mapEntry(10, 'domain', domain)]);
  const a = decodeCheckRequest(request('key-a', 'da'));
  const b = decodeCheckRequest(request('key-b', 'db'));
  if (a instanceof Error || b instanceof Error) throw a instanceof Error ? a : b;
  t.same([a.header('x-api-key'), a.requestedDomain, b.header('x-api-key'), b.requestedDomain], ['key-a', 'da', 'key-b', 'db']);
  const r1 = decodeRateLimitRequest(Buffer.concat([len(1, 'd1'), len(2, [len(1, [len(1, 'k'), len(2, 'v1')])])]), DEFAULT_REQUEST_BOUNDS);
  decodeRateLimitRequest(Buffer.concat([len(1, 'd2'), len(2, [len(1, [len(1, 'k'), len(2, 'v2')])])]), DEFAULT_REQUEST_BOUNDS);
  t.same(r1, { domain: 'd1', hitsAddend: 0, descriptors: [{ entries: [{ key: 'k', value: 'v1' }] }] });
});

t.test('regression: a broken field 3 in a headers map entry was named raw_value, a field only HeaderValue has', async (t) => {
  const entry = Buffer.concat([len(1, 'x-api-key'), Buffer.from('1a05', 'hex')]);
  const m = decodeCheckRequest(len(1, [len(4, [len(2, [len(3, entry)])])]));
  t.equal((m as Error).message, 'attributes.request.http.headers.(field 3): length 5 at byte 20 runs past the end of the message (0 bytes left)');
  const raw = decodeCheckRequest(len(1, [len(4, [len(2, [len(13, [len(1, entry)])])])]));
  t.equal((raw as Error).message, 'attributes.request.http.header_map.headers[0].raw_value: length 5 at byte 22 runs past the end of the message (0 bytes left)');
});
