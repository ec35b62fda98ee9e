// Our CheckRequest decoding against a reference: proto-loader's generic
// decode plus the translation the transport used before the hand-written
// codec (path/query split, pseudo-header fallbacks, header_map joins).
// Random valid messages from the fuzz suite's generator, seeded.
import t from 'tap';
import { hasByteEscapes } from '../../../src/core/lossless-text.js';
import { decodeCheckRequest } from '../../../src/transport/grpc/authz-codec.js';
import { loadPackageDefinition } from '../../../src/transport/grpc/proto-root.js';
import { Random } from '../../fuzz/fuzz-kit.js';
import { validCheckRequest } from '../../fuzz/proto-cases.js';

type Method = { requestDeserialize(b: Buffer): any };
const check = (loadPackageDefinition() as unknown as Record<string, Record<string, Method>>)['envoy.service.auth.v3.Authorization']!['Check']!;

interface Reference { method: string; path: string; query: string; authority: string; remoteAddress: string; domain: string; header(name: string): string | undefined }

function reference(bytes: Buffer): Reference {
  const attributes = check.requestDeserialize(bytes).attributes ?? {};
  const http = attributes.request?.http ?? {};
  const map: Record<string, string> = http.headers ?? {};
  const raw: { key: string; value: string; raw_value: Buffer }[] = http.header_map?.headers ?? [];
  const joined = new Map<string, string>();
  for (const h of raw) {
    const key = h.key.toLowerCase();
    const value = h.raw_value.length > 0 ? h.raw_value.toString('utf8') : h.value;
    const previous = joined.get(key);
    joined.set(key, previous === undefined ? value : `${previous},${value}`);
  }
  const lookup = (name: string): string | undefined => joined.get(name) ?? (Object.hasOwn(map, name) ? map[name] : undefined);
  const target: string = http.path !== '' ? http.path : (lookup(':path') ?? '/');
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? http.query : target.slice(q + 1);
  const method: string = http.method !== '' ? http.method : (lookup(':method') ?? '');
  const authority: string = http.host !== '' ? http.host : (lookup(':authority') ?? lookup('host') ?? '');
  const extensions: Record<string, string> = attributes.context_extensions ?? {};
  return {
    method, path, query, authority,
    remoteAddress: attributes.source?.address?.socket_address?.address ?? '',
    domain: Object.hasOwn(extensions, 'domain') ? extensions['domain']! : '',
    header: (name) => (name === ':path' ? path : name === ':method' ? method : name === ':authority' ? authority : lookup(name)),
  };
}

const NAMES = ['x-api-key', 'host', ':path', ':method', ':authority', 'x-forwarded-for', 'user-agent', 'x-multi', 'absent', 'X-Api-Key'];

t.test('our CheckRequest decoding agrees with proto-loader plus the old translation', async (t) => {
  const random = new Random(20_260_101);
  let compared = 0;
  for (let i = 0; i < 6000; i++) {
    const bytes = validCheckRequest(random);
    const ours = decodeCheckRequest(bytes);
    if (ours instanceof Error) {
      t.fail(`case ${i}: ${ours.message}`);
      continue;
    }
    const ref = reference(bytes);
    const fields: [string, string | undefined, string | undefined][] = [
      ['method', ours.method, ref.method], ['path', ours.path, ref.path], ['query', ours.query, ref.query],
      ['authority', ours.authority, ref.authority], ['remoteAddress', ours.remoteAddress, ref.remoteAddress],
      ['domain', ours.requestedDomain, ref.domain],
      ...NAMES.map((name): [string, string | undefined, string | undefined] => [`header(${name})`, ours.header(name), ref.header(name)]),
    ];
    // proto-loader replaces invalid UTF-8 with U+FFFD; ours keeps the bytes: compare valid text only.
    if (fields.some(([, value]) => value !== undefined && hasByteEscapes(value))) continue;
    compared++;
    for (const [name, mine, theirs] of fields) {
      if (mine !== theirs) t.fail(`case ${i}: ${name}: ours ${JSON.stringify(mine)}, reference ${JSON.stringify(theirs)}`);
    }
  }
  t.ok(compared > 1000, `${compared} messages compared`);
});
