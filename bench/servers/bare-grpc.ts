// Baseline: a grpc-js unary method answering a constant pre-encoded message.
// With --decode it first decodes the request as a grpc-js service usually
// does (@grpc/proto-loader's generic objects from our .proto files): the
// baseline issue 13 states its target against ("bare grpc-js, decoding the
// same RateLimitRequest"). Without it, no work at all. One node process, as
// our server.
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { AUTHZ_PATH, RLS_PATH, requestDecoder } from '../grpc-messages.js';

const { values } = parseArgs({ options: { port: { type: 'string' }, decode: { type: 'boolean' } } });
// RateLimitResponse { overall_code: OK } — field 1, varint 1.
const REPLY = Buffer.from([0x08, 0x01]);
const identity = (b: Buffer): Buffer => b;

const RLS_DECODE = values.decode === true ? requestDecoder(RLS_PATH) : undefined;
const AUTHZ_DECODE = values.decode === true ? requestDecoder(AUTHZ_PATH) : undefined;

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
