// Hand-built grpc-js service definitions: requests are decoded by our codecs
// (the decision RPCs' straight into core types), responses of the decision
// RPCs are bytes the handlers encoded. proto/ and @grpc/proto-loader
// (proto-root.ts) remain for clients: tests, the bench, and the golden-bytes
// cross-check of field numbers.
import type { ServiceDefinition } from '@grpc/grpc-js';
import type { RequestBounds } from '../../core/request-bounds.js';
import { InternalError } from '../../errors.js';
import { decodeCheckRequest } from './authz-codec.js';
import { decodeHealthCheckRequest, decodeHealthCheckResponse, encodeHealthCheckResponse } from './health-codec.js';
import { decodeRateLimitRequest } from './rls-codec.js';

export const SHOULD_RATE_LIMIT_PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';
export const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';
const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';
const HEALTH_WATCH_PATH = '/grpc.health.v1.Health/Watch';

/**
 * Messages already encoded. The server's handlers encode their responses
 * themselves, so an encoding fault is an error of ours (logged, INTERNAL)
 * rather than grpc-js's silent "Error serializing response"; a client made from
 * these definitions sends and receives encoded messages (tests, the fuzz suite).
 */
function encodedBytes(value: unknown): Buffer {
  if (!Buffer.isBuffer(value)) throw new InternalError('expected an encoded protobuf message (a Buffer)');
  return value;
}

const asReceived = (bytes: Buffer): Buffer => bytes;

/**
 * envoy.service.ratelimit.v3.RateLimitService. The request decodes to a
 * DecisionRequest, or to the Error that says why it could not (never a throw:
 * grpc-js answers INTERNAL to a throwing deserializer); `bounds` stop the
 * decoding of descriptors and entries past what the service would accept.
 */
export function rateLimitServiceDefinition(bounds: Pick<RequestBounds, 'maxDescriptors' | 'maxEntries'>): ServiceDefinition {
  return {
    ShouldRateLimit: {
      path: SHOULD_RATE_LIMIT_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: encodedBytes,
      requestDeserialize: (bytes: Buffer) => decodeRateLimitRequest(bytes, bounds),
      responseSerialize: encodedBytes,
      responseDeserialize: asReceived,
      originalName: 'shouldRateLimit',
    },
  };
}

/** envoy.service.auth.v3.Authorization: the request decodes to a CheckHttpRequest, or an Error. */
export const AUTHORIZATION_SERVICE_DEFINITION: ServiceDefinition = {
  Check: {
    path: CHECK_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: encodedBytes,
    requestDeserialize: decodeCheckRequest,
    responseSerialize: encodedBytes,
    responseDeserialize: asReceived,
    originalName: 'check',
  },
};

/** grpc.health.v1.Health: requests decode to {service} or an Error; responses are {status} objects. */
export const HEALTH_SERVICE_DEFINITION: ServiceDefinition = {
  Check: {
    path: HEALTH_CHECK_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: encodedBytes,
    requestDeserialize: decodeHealthCheckRequest,
    responseSerialize: encodeHealthCheckResponse,
    responseDeserialize: decodeHealthCheckResponse,
    originalName: 'check',
  },
  Watch: {
    path: HEALTH_WATCH_PATH,
    requestStream: false,
    responseStream: true,
    requestSerialize: encodedBytes,
    requestDeserialize: decodeHealthCheckRequest,
    responseSerialize: encodeHealthCheckResponse,
    responseDeserialize: decodeHealthCheckResponse,
    originalName: 'watch',
  },
};
