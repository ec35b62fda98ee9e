// The gRPC listener: Envoy's ext_authz and global rate-limit services, and health.
import {
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { HeaderStyle } from '../../core/response-headers.js';
import type { DecisionService } from '../../service.js';
import { allowResponse, encodeCheckResponse, httpInputFromCheckRequest, requestedDomain } from './authz.js';
import { toGrpcError } from './grpc-errors.js';
import { createHealthHandlers } from './health.js';
import type { GrpcLogger } from './logger.js';
import type {
  CheckRequestMessage,
  CheckResponseMessage,
  RateLimitRequestMessage,
  RateLimitResponseMessage,
} from './messages.js';
import { loadPackageDefinition } from './proto-root.js';
import { decodeRateLimitRequest, encodeRateLimitResponse } from './rls.js';

export type { GrpcLogger } from './logger.js';

/** Envoy's requests are a few KiB; 1 MiB leaves room and bounds memory per call. */
export const GRPC_MAX_RECEIVE_MESSAGE_BYTES = 1024 * 1024;
/** How long shutdown() waits for in-flight calls before cutting them. */
export const GRPC_SHUTDOWN_GRACE_MS = 10_000;

export interface GrpcServerOptions {
  /** Add x-ratelimit-* / retry-after to RateLimitResponse.response_headers_to_add. ext_authz always carries them. */
  responseHeaders: boolean;
  /** --header-style for both services' headers; default x. */
  headerStyle?: HeaderStyle;
  logger: GrpcLogger;
  maxReceiveMessageBytes?: number;
}

export interface GrpcServer {
  readonly server: Server;
  /**
   * Binds and serves, plain text unless `credentials` say otherwise (TLS);
   * resolves with the bound port (useful with port 0). Rejects if the bind fails.
   */
  listen(host: string, port: number, credentials?: ServerCredentials): Promise<number>;
  /**
   * Health turns NOT_SERVING, new calls are refused, in-flight calls finish
   * (cut after `graceMs`), then resolves. Never rejects.
   */
  shutdown(graceMs?: number): Promise<void>;
}

function serviceDefinition(name: string): ServiceDefinition {
  const definition = loadPackageDefinition()[name];
  if (definition === undefined) throw new Error(`gRPC service ${name} missing from proto/`);
  return definition as ServiceDefinition;
}

/**
 * Builds the gRPC server over a DecisionService. Handlers only translate;
 * every error becomes a gRPC status (see toGrpcError) and none escapes.
 */
export function createGrpcServer(service: DecisionService, options: GrpcServerOptions): GrpcServer {
  const { logger, responseHeaders } = options;
  const headerStyle = options.headerStyle ?? 'x';
  const server = new Server({
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? GRPC_MAX_RECEIVE_MESSAGE_BYTES,
  });
  let shuttingDown = false;
  const health = createHealthHandlers(() => !shuttingDown && service.readiness().ready);

  /** Runs one call: a value answers it, a throw becomes a gRPC status; nothing escapes. */
  const answer = <T>(method: string, work: () => T | Promise<T>, callback: sendUnaryData<T>): void => {
    const reply = async (): Promise<void> => {
      let response: T;
      try {
        response = await work();
      } catch (error: unknown) {
        callback(toGrpcError(error, method, logger));
        return;
      }
      callback(null, response);
    };
    reply().catch((error: unknown) => {
      logger.error({ err: error, method }, `gRPC ${method}: could not send the answer`);
    });
  };

  const shouldRateLimit = (
    call: ServerUnaryCall<RateLimitRequestMessage, RateLimitResponseMessage>,
    callback: sendUnaryData<RateLimitResponseMessage>,
  ): void => {
    answer('ShouldRateLimit', async () => {
      const request = decodeRateLimitRequest(call.request);
      return encodeRateLimitResponse(await service.decide(request, 'grpc_rls'), responseHeaders, headerStyle);
    }, callback);
  };

  const check = (
    call: ServerUnaryCall<CheckRequestMessage, CheckResponseMessage>,
    callback: sendUnaryData<CheckResponseMessage>,
  ): void => {
    answer('Check', async () => {
      const request = httpInputFromCheckRequest(call.request);
      return encodeCheckResponse(await service.decideHttp(requestedDomain(call.request), request, 'grpc_authz'), headerStyle);
    }, callback);
  };

  server.addService(serviceDefinition('envoy.service.ratelimit.v3.RateLimitService'), {
    ShouldRateLimit: shouldRateLimit,
  } as UntypedServiceImplementation);
  server.addService(serviceDefinition('envoy.service.auth.v3.Authorization'), {
    Check: check,
  } as UntypedServiceImplementation);
  server.addService(serviceDefinition('grpc.health.v1.Health'), {
    Check: health.Check,
    Watch: health.Watch,
  } as UntypedServiceImplementation);

  return {
    server,
    listen(host, port, credentials = ServerCredentials.createInsecure()) {
      const address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
      return new Promise<number>((resolve, reject) => {
        server.bindAsync(address, credentials, (error, bound) => {
          if (error !== null) reject(error);
          else resolve(bound);
        });
      });
    },
    shutdown(graceMs = GRPC_SHUTDOWN_GRACE_MS) {
      shuttingDown = true;
      health.endWatches();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          logger.warn({ graceMs }, 'gRPC shutdown grace period over; cutting in-flight calls');
          server.forceShutdown();
          resolve();
        }, graceMs);
        timer.unref();
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}
