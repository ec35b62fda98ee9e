/**
 * Text from bytes without losing bytes.
 *
 * Descriptor values reach us as bytes (protobuf strings, HTTP header values)
 * that a client chose. Decoding invalid UTF-8 with U+FFFD replacement would
 * make different values (`v\xff`, `v\xfe`, `v\xef\xbf\xbd`) one bucket. So
 * every byte that is not part of a well-formed UTF-8 sequence becomes the lone
 * surrogate U+DC00 + byte (U+DC80..U+DCFF), as Python's "surrogateescape":
 * well-formed UTF-8 never decodes to a lone surrogate, so the mapping is
 * injective, and `encodeUtf8Lossless` gives the original bytes back.
 *
 * Pure (no node:*): TextDecoder/TextEncoder are globals.
 */

// ignoreBOM: a leading U+FEFF is part of the value, not a byte-order mark to drop.
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
const encoder = new TextEncoder();
const ESCAPE_BASE = 0xdc00;
const REPLACEMENT = '\ufffd';
/** In unicode mode a surrogate pair is one code point: this matches lone surrogates only. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Length of the well-formed UTF-8 sequence at `i` (Unicode Table 3-7), or 0 if none starts there. */
function sequenceLength(bytes: Uint8Array, i: number, end: number): number {
  const b0 = bytes[i]!;
  if (b0 < 0x80) return 1;
  const in80BF = (k: number): boolean => k < end && bytes[k]! >= 0x80 && bytes[k]! <= 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) return in80BF(i + 1) ? 2 : 0;
  if (b0 >= 0xe0 && b0 <= 0xef) {
    if (i + 1 >= end) return 0;
    const b1 = bytes[i + 1]!;
    const lo = b0 === 0xe0 ? 0xa0 : 0x80;
    const hi = b0 === 0xed ? 0x9f : 0xbf; // ED A0..BF would encode a surrogate
    return b1 >= lo && b1 <= hi && in80BF(i + 2) ? 3 : 0;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    if (i + 1 >= end) return 0;
    const b1 = bytes[i + 1]!;
    const lo = b0 === 0xf0 ? 0x90 : 0x80;
    const hi = b0 === 0xf4 ? 0x8f : 0xbf;
    return b1 >= lo && b1 <= hi && in80BF(i + 2) && in80BF(i + 3) ? 4 : 0;
  }
  return 0;
}

function decodeSlow(bytes: Uint8Array, start: number, end: number): string {
  let text = '';
  let runStart = start;
  let i = start;
  while (i < end) {
    const length = sequenceLength(bytes, i, end);
    if (length > 0) {
      i += length;
      continue;
    }
    if (runStart < i) text += decoder.decode(bytes.subarray(runStart, i));
    text += String.fromCharCode(ESCAPE_BASE + bytes[i]!);
    i++;
    runStart = i;
  }
  if (runStart < end) text += decoder.decode(bytes.subarray(runStart, end));
  return text;
}

/**
 * Decodes `bytes[start, end)` as UTF-8; each byte outside a well-formed
 * sequence becomes U+DC80..U+DCFF. Equal to ordinary decoding for valid UTF-8.
 */
export function decodeUtf8Lossless(bytes: Uint8Array, start = 0, end = bytes.length): string {
  const view = start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end);
  const fast = decoder.decode(view);
  // U+FFFD in the output: either an invalid byte was replaced, or the input
  // really held EF BF BD. Only then look byte by byte.
  return fast.includes(REPLACEMENT) ? decodeSlow(bytes, start, end) : fast;
}

/** True when `text` holds a byte escape (or any lone surrogate): it did not come from valid UTF-8. */
export function hasByteEscapes(text: string): boolean {
  return LONE_SURROGATE.test(text);
}

/**
 * The bytes `decodeUtf8Lossless` decoded `text` from. Defined for strings
 * whose only lone surrogates are byte escapes U+DC80..U+DCFF (what the
 * decoder produces); any other lone surrogate is encoded as U+FFFD's bytes.
 */
export function encodeUtf8Lossless(text: string): Uint8Array {
  if (!LONE_SURROGATE.test(text)) return encoder.encode(text);
  const out: number[] = [];
  let runStart = 0;
  const flush = (to: number): void => {
    if (runStart < to) for (const byte of encoder.encode(text.slice(runStart, to))) out.push(byte);
  };
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++; // a pair: part of the well-formed run
        continue;
      }
    } else if (code < 0xdc00 || code > 0xdfff) {
      continue;
    }
    // A lone surrogate at i.
    flush(i);
    if (code >= 0xdc80 && code <= 0xdcff) out.push(code - ESCAPE_BASE);
    else out.push(0xef, 0xbf, 0xbd);
    runStart = i + 1;
  }
  flush(text.length);
  return Uint8Array.from(out);
}

/**
 * A string from latin1 text whose chars are bytes (Node's HTTP header values),
 * decoded as UTF-8 losslessly: the same value as the gRPC APIs see for the same bytes.
 */
export function latin1ToLossless(latin1: string): string {
  let ascii = true;
  for (let i = 0; i < latin1.length; i++) {
    if (latin1.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return latin1;
  const bytes = new Uint8Array(latin1.length);
  for (let i = 0; i < latin1.length; i++) bytes[i] = latin1.charCodeAt(i) & 0xff;
  return decodeUtf8Lossless(bytes);
}
