import { isUtf8 } from 'node:buffer';
import { hasByteEscapes } from '../../core/lossless-text.js';
import type { DecisionRequest, Descriptor, Entry } from '../../core/types.js';
import { InvalidRequestError } from '../../errors.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(value: Json | undefined): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalHits(value: Json | undefined, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number') throw new InvalidRequestError(field, 'must be a non-negative integer');
  return value; // range checked by checkDecisionRequest
}

function text(value: Json | undefined, field: string): string {
  if (typeof value !== 'string') throw new InvalidRequestError(field, 'must be a string');
  // JSON text names characters, not bytes: a lone surrogate escape ("\udc80")
  // is no character, and on the proxy-facing APIs U+DC80..U+DCFF stand for
  // invalid bytes. Accepting it here would let one value alias another.
  if (hasByteEscapes(value)) {
    throw new InvalidRequestError(field, 'must be Unicode text: a lone surrogate (\\ud800-\\udfff unpaired) is not a character');
  }
  return value;
}

/**
 * The body of POST /v1/check as text. JSON is UTF-8 (RFC 8259): bytes that
 * are not are a 400, not silently U+FFFD (which would make different byte
 * values one bucket).
 */
export function checkBodyText(body: Uint8Array): string {
  if (!isUtf8(body)) throw new InvalidRequestError('body', 'must be UTF-8 text (JSON)');
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
}

/**
 * Decodes the JSON body of POST /v1/check into a request, naming the field of
 * the first problem. `domain` stays undefined when absent (resolved later).
 */
export function decodeCheckBody(raw: string): Omit<DecisionRequest, 'domain'> & { domain: string | undefined } {
  let body: Json;
  try {
    body = JSON.parse(raw) as Json;
  } catch (error: unknown) {
    throw new InvalidRequestError('body', `invalid JSON (${error instanceof Error ? error.message : 'parse error'})`);
  }
  if (!isObject(body)) throw new InvalidRequestError('body', 'must be a JSON object');
  for (const key of Object.keys(body)) {
    if (key !== 'domain' && key !== 'descriptors' && key !== 'hits_addend') {
      throw new InvalidRequestError(key, 'unknown field (expected domain, descriptors, hits_addend)');
    }
  }
  const domain = body.domain === undefined || body.domain === null ? undefined : text(body.domain, 'domain');
  const list = body.descriptors;
  if (list === undefined) throw new InvalidRequestError('descriptors', 'required');
  if (!Array.isArray(list)) throw new InvalidRequestError('descriptors', 'must be an array');
  const descriptors: Descriptor[] = list.map((item, i) => {
    const field = `descriptors[${i}]`;
    if (!isObject(item)) throw new InvalidRequestError(field, 'must be an object');
    for (const key of Object.keys(item)) {
      if (key !== 'entries' && key !== 'hits_addend') {
        throw new InvalidRequestError(`${field}.${key}`, 'unknown field (expected entries, hits_addend)');
      }
    }
    const rawEntries = item.entries;
    if (!Array.isArray(rawEntries)) throw new InvalidRequestError(`${field}.entries`, 'must be an array');
    const entries: Entry[] = rawEntries.map((entry, j) => {
      const entryField = `${field}.entries[${j}]`;
      if (!isObject(entry)) throw new InvalidRequestError(entryField, 'must be an object with key and value');
      for (const key of Object.keys(entry)) {
        if (key !== 'key' && key !== 'value') throw new InvalidRequestError(`${entryField}.${key}`, 'unknown field (expected key, value)');
      }
      return { key: text(entry.key, `${entryField}.key`), value: text(entry.value, `${entryField}.value`) };
    });
    const hitsAddend = optionalHits(item.hits_addend, `${field}.hits_addend`);
    return hitsAddend === undefined ? { entries } : { entries, hitsAddend };
  });
  const hitsAddend = optionalHits(body.hits_addend, 'hits_addend');
  return hitsAddend === undefined ? { domain, descriptors } : { domain, descriptors, hitsAddend };
}
