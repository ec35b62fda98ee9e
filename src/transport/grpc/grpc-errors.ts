// The one place errors become gRPC status codes.
import { status, type ServiceError } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { hasByteEscapes } from '../../core/lossless-text.js';
import { InvalidRequestError, StoreUnavailableError, errorMessage } from '../../errors.js';
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

/**
 * InvalidRequestError → INVALID_ARGUMENT with its message (it names the field);
 * StoreUnavailableError → UNAVAILABLE, so Envoy's failure_mode_* decides;
 * anything else → INTERNAL, logged, with a message that leaks nothing.
 */
export function toGrpcError(error: unknown, method: string, logger: GrpcLogger): GrpcError {
  if (error instanceof InvalidRequestError) return grpcError(status.INVALID_ARGUMENT, error.message);
  if (error instanceof StoreUnavailableError) return grpcError(status.UNAVAILABLE, error.message);
  logger.error({ err: error, method }, `gRPC ${method} failed: ${errorMessage(error)}`);
  return grpcError(status.INTERNAL, 'internal error');
}
