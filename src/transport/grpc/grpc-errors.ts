// The one place errors become gRPC status codes.
import { status, type ServiceError } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { InvalidRequestError, StoreUnavailableError, errorMessage } from '../../errors.js';
import type { GrpcLogger } from './logger.js';

export type GrpcError = Pick<ServiceError, 'code' | 'details' | 'metadata'> & { message: string; name: string };

function grpcError(code: status, details: string): GrpcError {
  return { name: 'GrpcError', message: details, code, details, metadata: new Metadata() };
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
