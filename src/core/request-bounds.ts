import { InvalidRequestError } from '../errors.js';
import type { Digest } from './keys.js';
import type { DecisionRequest, Descriptor } from './types.js';

export interface RequestBounds {
  maxDescriptors: number;
  maxEntries: number;
  maxKeyOrValueBytes: number;
  maxBodyBytes: number;
}

export const DEFAULT_REQUEST_BOUNDS: RequestBounds = Object.freeze({
  maxDescriptors: 64,
  maxEntries: 16,
  maxKeyOrValueBytes: 4096,
  maxBodyBytes: 65_536,
});

const MAX_HITS_ADDEND = 0xffff_ffff;

function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** Whether `text` is over `max` UTF-8 bytes. Fast path: even all 3-byte characters would fit. */
function overBytes(text: string, max: number): boolean {
  return text.length * 3 > max && utf8Length(text) > max;
}

function checkHitsAddend(value: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_HITS_ADDEND) {
    throw new InvalidRequestError(field, `must be an integer from 0 to ${MAX_HITS_ADDEND}`);
  }
}

/**
 * Checks a decoded request against the bounds and basic shape rules shared by
 * every transport. Throws InvalidRequestError naming the field.
 */
export function checkDecisionRequest(request: DecisionRequest, bounds: RequestBounds): void {
  const { descriptors } = request;
  if (request.domain === '') throw new InvalidRequestError('domain', 'must not be empty');
  if (overBytes(request.domain, bounds.maxKeyOrValueBytes)) throw new InvalidRequestError('domain', `longer than ${bounds.maxKeyOrValueBytes} bytes`);
  if (descriptors.length === 0) throw new InvalidRequestError('descriptors', 'must not be empty');
  if (descriptors.length > bounds.maxDescriptors) {
    throw new InvalidRequestError('descriptors', `at most ${bounds.maxDescriptors} descriptors per request`);
  }
  if (request.hitsAddend !== undefined) checkHitsAddend(request.hitsAddend, 'hits_addend');
  for (let i = 0; i < descriptors.length; i++) {
    const descriptor = descriptors[i]!;
    const { entries } = descriptor;
    if (entries.length === 0) throw new InvalidRequestError(`descriptors[${i}].entries`, 'must not be empty');
    if (entries.length > bounds.maxEntries) {
      throw new InvalidRequestError(`descriptors[${i}].entries`, `at most ${bounds.maxEntries} entries per descriptor`);
    }
    if (descriptor.hitsAddend !== undefined) checkHitsAddend(descriptor.hitsAddend, `descriptors[${i}].hits_addend`);
    // Field names are built only for an error (this loop runs for every entry of every request).
    const max = bounds.maxKeyOrValueBytes;
    for (let j = 0; j < entries.length; j++) {
      const entry = entries[j]!;
      if (entry.key === '') throw new InvalidRequestError(`descriptors[${i}].entries[${j}].key`, 'must not be empty');
      if (overBytes(entry.key, max)) throw new InvalidRequestError(`descriptors[${i}].entries[${j}].key`, `longer than ${max} bytes`);
      if (overBytes(entry.value, max)) throw new InvalidRequestError(`descriptors[${i}].entries[${j}].value`, `longer than ${max} bytes`);
    }
  }
}

/**
 * Replaces every descriptor value longer than `maxBytes` by `#` + a digest of
 * it. For the proxy-facing APIs (RLS, ext_authz, forward auth), whose values a
 * client chose (an x-api-key header): rejecting the request would make Envoy
 * or NGINX fail open and skip EVERY limit, including the per-address one. The
 * digest keeps one bucket per distinct value, so nothing is shared or lost.
 * Returns the request itself when nothing is too long (the usual case).
 */
export function digestLongValues(request: DecisionRequest, maxBytes: number, digest: Digest): DecisionRequest {
  let descriptors: Descriptor[] | undefined;
  for (let i = 0; i < request.descriptors.length; i++) {
    const descriptor = request.descriptors[i]!;
    for (let j = 0; j < descriptor.entries.length; j++) {
      const { key, value } = descriptor.entries[j]!;
      if (value.length * 3 <= maxBytes || utf8Length(value) <= maxBytes) continue;
      descriptors ??= [...request.descriptors];
      const current = descriptors[i]!;
      const entries = current === descriptor ? [...descriptor.entries] : current.entries;
      entries[j] = { key, value: `#${digest(value)}` };
      descriptors[i] = { ...current, entries };
    }
  }
  return descriptors === undefined ? request : { ...request, descriptors };
}
