import { encodeUtf8Lossless, hasByteEscapes } from './lossless-text.js';
import type { Entry } from './types.js';

/**
 * Store key layout (documented in docs/redis.md "Key layout"):
 *
 *   <prefix>{<tag>}<rule keyPrefix>:<entries>
 *
 * - `tag` is a short hash of the descriptor's LAST entry (key and value). The
 *   last entry is the most specific one (the client: api_key, remote_address),
 *   so one client's nested and flat limits tend to share a Redis Cluster slot
 *   while different clients spread over all slots. Being a hash, it is never
 *   chosen by a client: braces inside values come after the tag and do not
 *   pick the slot.
 * - `entries` is each entry's key and value as length-prefixed text,
 *   `<len>:<text>` (unambiguous whatever the values contain); when longer
 *   than MAX_PLAIN_ENTRIES_CHARS it is replaced by a digest so keys stay bounded.
 *
 * Keys are made of bytes: a text holding invalid UTF-8 bytes (lone surrogates
 * U+DC80..U+DCFF, see lossless-text.ts) is written `<len>~<hex of its bytes>`
 * instead, because Redis clients encode lone surrogates as U+FFFD and two
 * values would share one bucket. `:` and `~` keep the two forms apart, so the
 * encoding stays injective.
 */
const MAX_PLAIN_ENTRIES_CHARS = 200;

/** A collision-resistant digest, injected so the core stays free of node:*. */
export type Digest = (text: string) => string;

/** FNV-1a over UTF-16 code units, 32 bits, as 8 hex chars. Spread only, not security. */
export function fnv1a32(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, '0');
}

export function slotTagFor(entries: readonly Entry[]): string {
  const last = entries[entries.length - 1];
  return last === undefined ? '0' : fnv1a32(`${last.key}\u0000${last.value}`);
}

function field(text: string): string {
  if (!hasByteEscapes(text)) return `${text.length}:${text}`;
  let hex = '';
  for (const byte of encodeUtf8Lossless(text)) hex += byte.toString(16).padStart(2, '0');
  return `${hex.length}~${hex}`;
}

export function encodeEntries(entries: readonly Entry[], digest: Digest): string {
  let text = '';
  for (const { key, value } of entries) text += field(key) + field(value);
  return text.length <= MAX_PLAIN_ENTRIES_CHARS ? text : `#${digest(text)}`;
}

export function bucketKey(prefix: string, tag: string, ruleKeyPrefix: string, encodedEntries: string): string {
  return `${prefix}{${tag}}${ruleKeyPrefix}:${encodedEntries}`;
}
