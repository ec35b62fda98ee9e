// Baseline: a grpc-js unary method doing no work — the RateLimitService and
// ext_authz paths answer a constant pre-encoded message without decoding the
// request. One node process, as our server.
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { AUTHZ_PATH, RLS_PATH } from '../grpc-messages.js';

const { values } = parseArgs({ options: { port: { type: 'string' } } });
// RateLimitResponse { overall_code: OK } — field 1, varint 1.
const REPLY = Buffer.from([0x08, 0x01]);
const identity = (b: Buffer): Buffer => b;

const method = (path: string): grpc.MethodDefinition<Buffer, Buffer> => ({
  path,
  requestStream: false,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
const handler: grpc.handleUnaryCall<Buffer, Buffer> = (_call, callback) => callback(null, REPLY);

const server = new grpc.Server();
server.addService({ ShouldRateLimit: method(RLS_PATH), Check: method(AUTHZ_PATH) }, { ShouldRateLimit: handler, Check: handler });
server.bindAsync(`127.0.0.1:${values.port ?? '0'}`, grpc.ServerCredentials.createInsecure(), (error) => {
  if (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
