// The one place errors become gRPC status codes.
import { status, type ServiceError } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { hasByteEscapes } from '../../core/lossless-text.js';
import { RateLimitError, errorMessage, type ErrorCode } from '../../errors.js';
import type { GrpcLogger } from './logger.js';

export type GrpcError = Pick<ServiceError, 'code' | 'details' | 'metadata'> & { message: string; name: string };

/** In unicode mode a surrogate pair is one code point: this matches lone surrogates only. */
const LONE_SURROGATES = /[\uD800-\uDFFF]/gu;

/**
 * Status details fit to send: grpc-js puts them through encodeURI, which
 * throws on a lone surrogate, and a message may quote a client's value that
 * held invalid UTF-8 (decoded losslessly to U+DC80..U+DCFF). Such a byte is
 * shown as `\xNN`; any other lone surrogate as U+FFFD.
 */
export function sendableDetails(details: string): string {
  if (!hasByteEscapes(details)) return details;
  return details.replace(LONE_SURROGATES, (c) => {
    const code = c.charCodeAt(0);
    return code >= 0xdc80 && code <= 0xdcff ? `\\x${(code - 0xdc00).toString(16)}` : '\ufffd';
  });
}

function grpcError(code: status, details: string): GrpcError {
  const sendable = sendableDetails(details);
  return { name: 'GrpcError', message: sendable, code, details: sendable, metadata: new Metadata() };
}

/** Each code's gRPC status; a Record, so a new code cannot be left out. */
const GRPC_STATUS: Readonly<Record<ErrorCode, status>> = Object.freeze({
  RL_ERR_INVALID_REQUEST: status.INVALID_ARGUMENT,
  RL_ERR_MALFORMED_MESSAGE: status.INVALID_ARGUMENT,
  RL_ERR_BODY_TOO_LARGE: status.INVALID_ARGUMENT,
  RL_ERR_LIMIT_SPEC: status.INVALID_ARGUMENT,
  RL_ERR_BAD_HTTP: status.INVALID_ARGUMENT,
  RL_ERR_NOT_FOUND: status.UNIMPLEMENTED,
  RL_ERR_METHOD_NOT_ALLOWED: status.UNIMPLEMENTED,
  RL_ERR_REQUEST_TIMEOUT: status.DEADLINE_EXCEEDED,
  RL_ERR_HEADERS_TOO_LARGE: status.INVALID_ARGUMENT,
  // UNAVAILABLE, so Envoy's failure_mode_deny / failure_mode_allow decides.
  RL_ERR_STORE_UNAVAILABLE: status.UNAVAILABLE,
  // The failure policy turns store call failures into decisions; one escaping is a bug.
  RL_ERR_STORE_CALL: status.INTERNAL,
  RL_ERR_CONFIG: status.INTERNAL,
  RL_ERR_SETTINGS: status.INTERNAL,
  RL_ERR_TLS: status.INTERNAL,
  RL_ERR_INTERNAL: status.INTERNAL,
});

/**
 * The one place errors become gRPC statuses. A caller's fault (INVALID_ARGUMENT
 * and kin) and UNAVAILABLE carry the message, which names the field; INTERNAL
 * is logged and sends nothing that could leak.
 */
export function toGrpcError(error: unknown, method: string, logger: GrpcLogger): GrpcError {
  const code = error instanceof RateLimitError ? GRPC_STATUS[error.code] : status.INTERNAL;
  if (code !== status.INTERNAL) return grpcError(code, (error as RateLimitError).message);
  logger.error({ err: error, method }, `gRPC ${method} failed: ${errorMessage(error)}`);
  return grpcError(status.INTERNAL, 'internal error');
}
