// Request bytes for the two gRPC methods, encoded with the repository's
// proto/ files (the server's own wire contract) via @grpc/proto-loader.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import { BENCH_DOMAIN } from './workload.js';

export const RLS_PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';
export const AUTHZ_PATH = '/envoy.service.auth.v3.Authorization/Check';

const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'proto');
const OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: Number, defaults: true, arrays: true, objects: true, oneofs: true };

let definition: protoLoader.PackageDefinition | undefined;

function method(service: string, name: string): protoLoader.MethodDefinition<object, object> {
  definition ??= protoLoader.loadSync(
    ['envoy/service/ratelimit/v3/rls.proto', 'envoy/service/auth/v3/external_auth.proto'],
    { ...OPTIONS, includeDirs: [PROTO_DIR] },
  );
  const svc = definition[service] as protoLoader.ServiceDefinition | undefined;
  const found = svc?.[name];
  if (found === undefined) throw new Error(`${service}/${name} not in proto/`);
  return found;
}

/** The protobuf bytes of a RateLimitRequest for one api_key. */
export function rlsRequest(apiKey: string): Buffer {
  return method('envoy.service.ratelimit.v3.RateLimitService', 'ShouldRateLimit').requestSerialize({
    domain: BENCH_DOMAIN,
    descriptors: [{ entries: [{ key: 'api_key', value: apiKey }] }],
  });
}

/** The protobuf bytes of an ext_authz CheckRequest carrying `x-api-key`. */
export function authzRequest(apiKey: string): Buffer {
  return method('envoy.service.auth.v3.Authorization', 'Check').requestSerialize({
    attributes: {
      source: { address: { socket_address: { address: '10.0.0.7', port_value: 40000 } } },
      request: {
        http: {
          method: 'GET',
          path: '/rating?q=1',
          host: 'api.example',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          headers: { 'x-api-key': apiKey, 'user-agent': 'bench', accept: '*/*' },
        },
      },
      context_extensions: { domain: BENCH_DOMAIN },
    },
  });
}

/** The request decoder of the method at `path`: @grpc/proto-loader's generic objects, as a grpc-js service usually decodes. */
export function requestDecoder(path: string): (bytes: Buffer) => object {
  const [service, name] = path.slice(1).split('/');
  return method(service ?? '', name ?? '').requestDeserialize;
}

/** Decodes a response with the method's own deserializer (for the probe call). */
export function decodeResponse(path: string, bytes: Buffer): object {
  const [service, name] = path.slice(1).split('/');
  return method(service ?? '', name ?? '').responseDeserialize(bytes) as object;
}

/** gRPC length-prefixed message: flag 0 (uncompressed), 4-byte big-endian length, bytes. */
export function grpcFrame(message: Buffer): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}
