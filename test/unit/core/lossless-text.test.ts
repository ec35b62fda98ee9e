import t from 'tap';
import { decodeUtf8Lossless, encodeUtf8Lossless, hasByteEscapes, latin1ToLossless } from '../../../src/core/lossless-text.js';

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

t.test('invalid bytes stay distinct: v\\xff, v\\xfe and v\\xef\\xbf\\xbd are three values', async (t) => {
  const values = [bytes(0x76, 0xff), bytes(0x76, 0xfe), bytes(0x76, 0xef, 0xbf, 0xbd)].map((b) => decodeUtf8Lossless(b));
  t.equal(new Set(values).size, 3);
  t.equal(values[0], 'v\udcff');
  t.equal(values[2], 'v\ufffd', 'a real U+FFFD is kept as itself');
  t.ok(hasByteEscapes(values[0]!));
  t.notOk(hasByteEscapes(values[2]!));
});

t.test('valid UTF-8 decodes as usual, a leading BOM included', async (t) => {
  t.equal(decodeUtf8Lossless(Buffer.from('é€😀', 'utf8')), 'é€😀');
  t.equal(decodeUtf8Lossless(bytes(0xef, 0xbb, 0xbf, 0x61)), '\ufeffa');
});

t.test('overlong forms, encoded surrogates and code points past U+10FFFF are bytes, not characters', async (t) => {
  t.equal(decodeUtf8Lossless(bytes(0xe0, 0x80, 0x80)), '\udce0\udc80\udc80');
  t.equal(decodeUtf8Lossless(bytes(0xed, 0xa0, 0x80)), '\udced\udca0\udc80');
  t.equal(decodeUtf8Lossless(bytes(0xf4, 0x90, 0x80, 0x80)), '\udcf4\udc90\udc80\udc80');
  t.equal(decodeUtf8Lossless(bytes(0xc3)), '\udcc3', 'a truncated sequence');
});

t.test('encode gives back exactly the decoded bytes (random byte strings)', async (t) => {
  let seed = 42;
  const random = (n: number): number => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed % n;
  };
  const pool = [0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0xed, 0xbf, 0xbd, 0xef, 0xbb, 0x41];
  let failures = 0;
  for (let n = 0; n < 20_000; n++) {
    const input = new Uint8Array(random(9));
    for (let i = 0; i < input.length; i++) input[i] = random(2) === 0 ? random(256) : pool[random(pool.length)]!;
    const text = decodeUtf8Lossless(input);
    if (!same(encodeUtf8Lossless(text), input)) failures++;
    if (!hasByteEscapes(text) && Buffer.from(input).toString('utf8') !== text) failures++;
  }
  t.equal(failures, 0);
});

t.test('an HTTP header value (latin1 chars = bytes) decodes to what gRPC sees for the same bytes', async (t) => {
  const raw = Buffer.from([0x6b, 0xc3, 0xa9, 0xff]);
  t.equal(latin1ToLossless(raw.toString('latin1')), decodeUtf8Lossless(raw));
  t.equal(latin1ToLossless('plain-ascii'), 'plain-ascii');
});
