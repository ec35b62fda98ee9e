import t from 'tap';
import { bucketKey, encodeEntries, slotTagFor } from '../../../src/core/keys.js';
import { decodeUtf8Lossless, hasByteEscapes } from '../../../src/core/lossless-text.js';
import type { Entry } from '../../../src/core/types.js';

const identity = (text: string): string => `digest(${text})`;

t.test('regression: values that differ only in invalid bytes get different keys, and keys are valid UTF-8', async (t) => {
  const values = [[0x76, 0xff], [0x76, 0xfe], [0x76, 0xef, 0xbf, 0xbd]].map((b) => decodeUtf8Lossless(Uint8Array.from(b)));
  const keys = values.map((value) => encodeEntries([{ key: 'api_key', value }], identity));
  t.equal(new Set(keys).size, 3, JSON.stringify(keys));
  t.ok(keys.every((key) => !hasByteEscapes(key)), 'no lone surrogate reaches a Redis key');
  t.equal(keys[2], '7:api_key2:v\ufffd', 'a real U+FFFD is plain text');
  t.equal(keys[0], '7:api_key4~76ff', 'bytes that are not UTF-8 are written as hex');
});

t.test('regression: lone surrogates from /v1/auth header bytes do not collide (\\udffa\\udf72 vs \\udc6c\\udd68)', async (t) => {
  // Such strings are refused on /v1/check; from bytes they only hold U+DC80..U+DCFF. Any lone surrogate still encodes injectively per form.
  const a = encodeEntries([{ key: 'k', value: decodeUtf8Lossless(Uint8Array.from([0xed, 0xbf, 0xba])) }], identity);
  const b = encodeEntries([{ key: 'k', value: decodeUtf8Lossless(Uint8Array.from([0xed, 0xb1, 0xac])) }], identity);
  t.not(a, b);
});

t.test('the entry encoding is injective (random entries with plain, escaped and tricky text)', async (t) => {
  let seed = 7;
  const random = (n: number): number => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed % n;
  };
  const pieces = ['', 'a', ':', '~', '1:', '2~ff', '\ufffd', '\udcff', '\udc80', 'é', '😀', '0'];
  const text = (): string => Array.from({ length: random(4) }, () => pieces[random(pieces.length)]!).join('');
  const seen = new Map<string, string>();
  let collisions = 0;
  for (let i = 0; i < 30_000; i++) {
    const entries: Entry[] = Array.from({ length: 1 + random(3) }, () => ({ key: text() || 'k', value: text() }));
    const id = JSON.stringify(entries);
    const encoded = encodeEntries(entries, identity);
    const before = seen.get(encoded);
    if (before !== undefined && before !== id) collisions++;
    seen.set(encoded, id);
  }
  t.equal(collisions, 0, `${seen.size} distinct encodings, no collision`);
});

t.test('a bucket key carries the hash tag of the last entry first', async (t) => {
  const entries = [{ key: 'path', value: '/a' }, { key: 'api_key', value: '{x}' }];
  const tag = slotTagFor(entries);
  t.equal(bucketKey('rl:', tag, '1:d:tb1sb1', encodeEntries(entries, identity)), `rl:{${tag}}1:d:tb1sb1:4:path2:/a7:api_key3:{x}`);
});
