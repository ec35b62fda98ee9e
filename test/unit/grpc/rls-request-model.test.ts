// Our RateLimitRequest decoding against a reference: proto-loader's generic
// decode plus the translation the transport used before the hand-written
// codec. Random valid messages from the fuzz suite's generator, seeded.
import { isDeepStrictEqual } from 'node:util';
import t from 'tap';
import { hasByteEscapes } from '../../../src/core/lossless-text.js';
import { DEFAULT_REQUEST_BOUNDS } from '../../../src/core/request-bounds.js';
import type { Descriptor } from '../../../src/core/types.js';
import { loadPackageDefinition } from '../../../src/transport/grpc/proto-root.js';
import { decodeRateLimitRequest } from '../../../src/transport/grpc/rls-codec.js';
import { Random } from '../../fuzz/fuzz-kit.js';
import { validRateLimitRequest } from '../../fuzz/proto-cases.js';

type Method = { requestDeserialize(b: Buffer): any };
const rls = (loadPackageDefinition() as unknown as Record<string, Record<string, Method>>)['envoy.service.ratelimit.v3.RateLimitService']!['ShouldRateLimit']!;
const UNITS = [undefined, 'second', 'minute', 'hour', 'day', 'month', 'year', 'week'];

function reference(bytes: Buffer): { domain: string; descriptors: Descriptor[]; hitsAddend: number } {
  const m = rls.requestDeserialize(bytes);
  return {
    domain: m.domain,
    hitsAddend: m.hits_addend,
    descriptors: m.descriptors.map((d: any) => {
      const descriptor: Descriptor = { entries: d.entries.map((e: any) => ({ key: e.key, value: e.value })) };
      if (d.limit !== null) descriptor.limitOverride = { requestsPerUnit: d.limit.requests_per_unit, unit: UNITS[d.limit.unit] as never };
      if (d.hits_addend !== null) descriptor.hitsAddend = Number(d.hits_addend.value);
      return descriptor;
    }),
  };
}

t.test('our RateLimitRequest decoding agrees with proto-loader plus the old translation', async (t) => {
  const random = new Random(20_260_102);
  let compared = 0;
  for (let i = 0; i < 12000; i++) {
    const { bytes } = validRateLimitRequest(random);
    const ours = decodeRateLimitRequest(bytes, DEFAULT_REQUEST_BOUNDS);
    if (ours instanceof Error) {
      t.fail(`case ${i}: ${ours.message}`);
      continue;
    }
    // proto-loader replaces invalid UTF-8 with U+FFFD; ours keeps the bytes: compare valid text only.
    const texts = [ours.domain, ...ours.descriptors.flatMap((d) => d.entries.flatMap((e) => [e.key, e.value]))];
    if (texts.some(hasByteEscapes)) continue;
    compared++;
    const theirs = reference(bytes);
    if (!isDeepStrictEqual(ours, theirs)) t.fail(`case ${i}: ours ${JSON.stringify(ours).slice(0, 400)}, reference ${JSON.stringify(theirs).slice(0, 400)}`);
  }
  t.ok(compared > 500, `${compared} messages compared`);
});
