// Fuzz: random and broken protobuf messages to ShouldRateLimit and Check on
// a running server (real composition root, memory store, real sockets).
// Every answer must be gRPC OK, INVALID_ARGUMENT or RESOURCE_EXHAUSTED within
// its deadline; a valid message must be OK with a well-formed response.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { CHECK_PATH, SHOULD_RATE_LIMIT_PATH } from '../../src/transport/grpc/service-definitions.js';
import { startServer } from '../helpers/server.js';
import { FUZZ_SECONDS, mutateBytes, type Random } from './fuzz-kit.js';
import { fuzz } from './fuzz-kit.js';
import { parseWire, reencode, validCheckRequest, validRateLimitRequest } from './proto-cases.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const CALL_DEADLINE_MS = 5000;
const ACCEPTABLE = new Set([grpc.status.OK, grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED]);

interface Answer { code: grpc.status; details: string; bytes: Buffer | undefined }

function send(client: grpc.Client, path: string, body: Buffer): Promise<Answer> {
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(path, (b) => b, (b) => b, body, { deadline: Date.now() + CALL_DEADLINE_MS }, (error, response) => {
      resolve(error === null ? { code: grpc.status.OK, details: '', bytes: response } : { code: error.code, details: error.details, bytes: undefined });
    });
  });
}

/** Field numbers and wire types of a well-formed message, or why it is not one. */
function fieldsOf(bytes: Buffer): { field: number; wireType: number; raw?: Buffer; value?: bigint }[] | string {
  const nodes = parseWire(bytes);
  return nodes === undefined ? `response does not parse: ${bytes.toString('hex')}` : nodes.map((n) => ({ field: n.field, wireType: n.wireType, ...('raw' in n ? { raw: n.raw } : { value: n.value }) }));
}

/** A RateLimitResponse: overall_code OK/OVER_LIMIT, `statuses` statuses when known, each with a code. */
function checkRateLimitResponse(bytes: Buffer, statuses: number | undefined): string | undefined {
  const fields = fieldsOf(bytes);
  if (typeof fields === 'string') return fields;
  const overall = fields.filter((f) => f.field === 1);
  if (overall.length !== 1 || (overall[0]!.value !== 1n && overall[0]!.value !== 2n)) return `overall_code not OK/OVER_LIMIT: ${bytes.toString('hex')}`;
  const got = fields.filter((f) => f.field === 2);
  if (statuses !== undefined && got.length !== statuses) return `${got.length} statuses for ${statuses} descriptors`;
  for (const status of got) {
    const inner = fieldsOf(status.raw!);
    if (typeof inner === 'string') return inner;
    const code = inner.find((f) => f.field === 1)?.value;
    if (code !== 1n && code !== 2n) return `a status code is ${code}`;
  }
  return undefined;
}

/** A CheckResponse: status and exactly one of ok_response / denied_response. */
function checkCheckResponse(bytes: Buffer): string | undefined {
  const fields = fieldsOf(bytes);
  if (typeof fields === 'string') return fields;
  const numbers = fields.map((f) => f.field).join(',');
  return numbers === '1,3' || numbers === '1,2' ? undefined : `CheckResponse fields ${numbers}`;
}

type Kind = 'valid' | 'reencoded' | 'mutated' | 'lying' | 'random';

function pickKind(random: Random): Kind {
  const roll = random.next();
  return roll < 0.25 ? 'valid' : roll < 0.45 ? 'reencoded' : roll < 0.75 ? 'mutated' : roll < 0.9 ? 'lying' : 'random';
}

/** The message to send for a kind, and whether it is still a valid message the service must decide. */
function variant(random: Random, kind: Kind, valid: Buffer): { body: Buffer; mustDecide: boolean } {
  switch (kind) {
    case 'valid':
      return { body: valid, mustDecide: true };
    case 'reencoded':
      // Non-minimal varints and unknown fields of every wire type: still the same message.
      return { body: reencode(parseWire(valid)!, random, { padVarints: 0.3, insertUnknown: 0.2, lieAboutLength: 0, wrongWireType: 0 }), mustDecide: true };
    case 'mutated':
      return { body: mutateBytes(random, valid), mustDecide: false };
    case 'lying':
      return { body: reencode(parseWire(valid)!, random, { padVarints: 0.1, insertUnknown: 0.05, lieAboutLength: 0.1, wrongWireType: 0.05 }), mustDecide: false };
    case 'random':
      return { body: random.bytes(random.int(64)), mustDecide: false };
  }
}

t.test('fuzz: protobuf messages to ShouldRateLimit and Check', async (t) => {
  const app = await startServer({ config: FIXTURES, store: 'memory', 'default-domain': 'fuzz', 'response-headers': true });
  const client = new grpc.Client(`127.0.0.1:${app.grpcPort}`, grpc.credentials.createInsecure());
  t.teardown(async () => {
    client.close();
    await app.stop();
  });

  const judge = (answer: Answer, mustDecide: boolean, body: Buffer, check: (bytes: Buffer) => string | undefined): string | undefined => {
    const sent = body.length <= 200 ? body.toString('hex') : `${body.subarray(0, 200).toString('hex')}... (${body.length} bytes)`;
    if (!ACCEPTABLE.has(answer.code)) return `${grpc.status[answer.code]} "${answer.details}" for ${sent}`;
    if (mustDecide && answer.code !== grpc.status.OK) return `a valid message was refused: ${grpc.status[answer.code]} "${answer.details}" for ${sent}`;
    if (answer.code === grpc.status.INVALID_ARGUMENT && answer.details === '') return `INVALID_ARGUMENT without a message for ${sent}`;
    if (answer.code === grpc.status.OK) {
      const problem = check(answer.bytes!);
      if (problem !== undefined) return `${problem} (request ${sent})`;
    }
    return undefined;
  };

  await fuzz(t, 'ShouldRateLimit', { seconds: FUZZ_SECONDS * 0.5, concurrency: 8 }, async (random) => {
    const kind = pickKind(random);
    const valid = validRateLimitRequest(random);
    const { body, mustDecide } = variant(random, kind, valid.bytes);
    const answer = await send(client, SHOULD_RATE_LIMIT_PATH, body);
    return judge(answer, mustDecide, body, (bytes) => checkRateLimitResponse(bytes, mustDecide ? valid.descriptors : undefined));
  });

  await fuzz(t, 'Check', { seconds: FUZZ_SECONDS * 0.5, concurrency: 8 }, async (random) => {
    const kind = pickKind(random);
    const { body, mustDecide } = variant(random, kind, validCheckRequest(random));
    const answer = await send(client, CHECK_PATH, body);
    return judge(answer, mustDecide, body, checkCheckResponse);
  });

  const health = await fetch(`${app.url}/healthz`, { signal: AbortSignal.timeout(CALL_DEADLINE_MS) });
  t.equal(health.status, 200, '/healthz still answers');
});
