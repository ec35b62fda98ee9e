import { isUtf8 } from 'node:buffer';
import { hasByteEscapes } from '../../core/lossless-text.js';
import type { DecisionRequest, Descriptor, Entry } from '../../core/types.js';
import { InvalidRequestError } from '../../errors.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(value: Json | undefined): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The name of a field: `name` in descriptor `descriptor`, entry `entry`
 * (-1 = none). Built only for an error: the decoder runs for every request.
 */
function fieldName(descriptor: number, entry: number, name: string): string {
  if (descriptor < 0) return name;
  const prefix = entry < 0 ? `descriptors[${descriptor}]` : `descriptors[${descriptor}].entries[${entry}]`;
  return name === '' ? prefix : `${prefix}.${name}`;
}

function optionalHits(value: Json | undefined, descriptor: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number') throw new InvalidRequestError(fieldName(descriptor, -1, 'hits_addend'), 'must be a non-negative integer');
  return value; // range checked by checkDecisionRequest
}

function text(value: Json | undefined, descriptor: number, entry: number, name: string): string {
  if (typeof value !== 'string') throw new InvalidRequestError(fieldName(descriptor, entry, name), 'must be a string');
  // JSON text names characters, not bytes: a lone surrogate escape ("\udc80")
  // is no character, and on the proxy-facing APIs U+DC80..U+DCFF stand for
  // invalid bytes. Accepting it here would let one value alias another.
  if (hasByteEscapes(value)) {
    throw new InvalidRequestError(fieldName(descriptor, entry, name),
      'must be Unicode text: a lone surrogate (\\ud800-\\udfff unpaired) is not a character');
  }
  return value;
}

/**
 * The body of POST /v1/check as text. JSON is UTF-8 (RFC 8259): bytes that
 * are not are a 400, not silently U+FFFD (which would make different byte
 * values one bucket).
 */
function checkBodyText(body: Uint8Array): string {
  if (!isUtf8(body)) throw new InvalidRequestError('body', 'must be UTF-8 text (JSON)');
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
}

/**
 * A /v1/check body as fastify hands it over (bytes, or nothing), decoded:
 * an encoded body, a missing one or one that is not UTF-8 JSON of the right
 * shape is an InvalidRequestError naming the field. /v1/check and the admin
 * API (/v1/inspect, /v1/reset) read their bodies with this.
 */
export function decodeCheckRequest(contentEncoding: string | undefined, body: unknown): ReturnType<typeof decodeCheckBody> {
  if (contentEncoding !== undefined && contentEncoding.toLowerCase() !== 'identity') {
    throw new InvalidRequestError('content-encoding', `"${contentEncoding}" is not supported: send the JSON body uncompressed`);
  }
  const raw = Buffer.isBuffer(body) ? checkBodyText(body) : '';
  if (raw === '') throw new InvalidRequestError('body', 'required: a JSON object with descriptors');
  return decodeCheckBody(raw);
}

/**
 * What is wrong with a body JSON.parse refused, in our words: where (line and
 * column, when the parser says), or that it ends too soon. The parser's own
 * message (V8's wording, with a quote of the body) does not reach the client.
 */
function invalidJson(raw: string, error: unknown): string {
  const message = error instanceof Error ? error.message : '';
  if (message.includes('Unexpected end')) return 'invalid JSON: the body ends before the JSON does';
  const position = /position (\d+)/.exec(message);
  if (position === null) return 'invalid JSON';
  const before = raw.slice(0, Number(position[1]));
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return `invalid JSON at line ${line}, column ${column}`;
}

/**
 * Decodes the JSON body of POST /v1/check into a request, naming the field of
 * the first problem. `domain` stays undefined when absent (resolved later).
 */
export function decodeCheckBody(raw: string): Omit<DecisionRequest, 'domain'> & { domain: string | undefined } {
  let body: Json;
  try {
    // A UTF-8 byte order mark before the JSON is ignored (RFC 8259 §8.1 allows it).
    body = JSON.parse(raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw) as Json;
  } catch (error: unknown) {
    throw new InvalidRequestError('body', invalidJson(raw, error));
  }
  if (!isObject(body)) throw new InvalidRequestError('body', 'must be a JSON object');
  // for-in: JSON.parse objects have no inherited enumerable keys, and no key array is made.
  for (const key in body) {
    if (key !== 'domain' && key !== 'descriptors' && key !== 'hits_addend') {
      throw new InvalidRequestError(key, 'unknown field (expected domain, descriptors, hits_addend)');
    }
  }
  const domain = body.domain === undefined || body.domain === null ? undefined : text(body.domain, -1, -1, 'domain');
  const list = body.descriptors;
  if (list === undefined) throw new InvalidRequestError('descriptors', 'required');
  if (!Array.isArray(list)) throw new InvalidRequestError('descriptors', 'must be an array');
  const descriptors: Descriptor[] = [];
  for (let i = 0; i < list.length; i++) {
    const item = list[i];
    if (!isObject(item)) throw new InvalidRequestError(fieldName(i, -1, ''), 'must be an object');
    for (const key in item) {
      if (key !== 'entries' && key !== 'hits_addend') {
        throw new InvalidRequestError(fieldName(i, -1, key), 'unknown field (expected entries, hits_addend)');
      }
    }
    const rawEntries = item.entries;
    if (!Array.isArray(rawEntries)) throw new InvalidRequestError(fieldName(i, -1, 'entries'), 'must be an array');
    const entries: Entry[] = [];
    for (let j = 0; j < rawEntries.length; j++) {
      const entry = rawEntries[j];
      if (!isObject(entry)) throw new InvalidRequestError(fieldName(i, j, ''), 'must be an object with key and value');
      for (const key in entry) {
        if (key !== 'key' && key !== 'value') throw new InvalidRequestError(fieldName(i, j, key), 'unknown field (expected key, value)');
      }
      entries.push({ key: text(entry.key, i, j, 'key'), value: text(entry.value, i, j, 'value') });
    }
    const hitsAddend = optionalHits(item.hits_addend, i);
    descriptors.push(hitsAddend === undefined ? { entries } : { entries, hitsAddend });
  }
  const hitsAddend = optionalHits(body.hits_addend, -1);
  return hitsAddend === undefined ? { domain, descriptors } : { domain, descriptors, hitsAddend };
}
