// Baseline: a grpc-js unary method answering a constant pre-encoded message.
// With --decode it first decodes the request as a grpc-js service usually
// does (@grpc/proto-loader's generic objects from our .proto files): the
// baseline issue 13 states its target against ("bare grpc-js, decoding the
// same RateLimitRequest"). Without it, no work at all. One node process, as
// our server.
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition as LoaderMethod } from '@grpc/proto-loader';
import { loadPackageDefinition } from '../../src/transport/grpc/proto-root.js';
import { AUTHZ_PATH, RLS_PATH } from '../grpc-messages.js';

const { values } = parseArgs({ options: { port: { type: 'string' }, decode: { type: 'boolean' } } });
// RateLimitResponse { overall_code: OK } — field 1, varint 1.
const REPLY = Buffer.from([0x08, 0x01]);
const identity = (b: Buffer): Buffer => b;

const definitions = values.decode === true ? loadPackageDefinition() : undefined;
/** The request decoder of `service`'s `name` (--decode), else none. */
function decoderOf(service: string, name: string): ((b: Buffer) => unknown) | undefined {
  const method = (definitions?.[service] as Record<string, LoaderMethod<object, object>> | undefined)?.[name];
  return method?.requestDeserialize;
}
const RLS_DECODE = decoderOf('envoy.service.ratelimit.v3.RateLimitService', 'ShouldRateLimit');
const AUTHZ_DECODE = decoderOf('envoy.service.auth.v3.Authorization', 'Check');
if (values.decode === true && (RLS_DECODE === undefined || AUTHZ_DECODE === undefined)) throw new Error('no decoder in the package definition');

const method = (path: string, decode: ((b: Buffer) => unknown) | undefined): grpc.MethodDefinition<unknown, Buffer> => ({
  path,
  requestStream: false,
  responseStream: false,
  requestSerialize: (value: unknown) => value as Buffer,
  requestDeserialize: decode ?? identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
const handler: grpc.handleUnaryCall<unknown, Buffer> = (_call, callback) => callback(null, REPLY);

const server = new grpc.Server();
server.addService({ ShouldRateLimit: method(RLS_PATH, RLS_DECODE), Check: method(AUTHZ_PATH, AUTHZ_DECODE) }, { ShouldRateLimit: handler, Check: handler });
server.bindAsync(`127.0.0.1:${values.port ?? '0'}`, grpc.ServerCredentials.createInsecure(), (error) => {
  if (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
