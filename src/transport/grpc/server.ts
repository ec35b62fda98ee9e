// The gRPC listener: Envoy's ext_authz and global rate-limit services, and health.
import {
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { HeaderStyle } from '../../core/response-headers.js';
import type { Decision, DecisionRequest } from '../../core/types.js';
import type { DecisionService } from '../../service/decision-service.js';
import { encodeCheckResponse } from './authz-codec.js';
import type { CheckHttpRequest } from './check-http-request.js';
import { toGrpcError, type GrpcError } from './grpc-errors.js';
import { createHealthHandlers } from './health.js';
import type { GrpcLogger } from './logger.js';
import { encodeRateLimitResponse } from './rls-codec.js';
import { AUTHORIZATION_SERVICE_DEFINITION, HEALTH_SERVICE_DEFINITION, rateLimitServiceDefinition } from './service-definitions.js';

export type { GrpcLogger } from './logger.js';

/** Envoy's requests are a few KiB; 1 MiB leaves room and bounds memory per call. */
const GRPC_MAX_RECEIVE_MESSAGE_BYTES = 1024 * 1024;
/** How long shutdown() waits for in-flight calls before cutting them. */
const GRPC_SHUTDOWN_GRACE_MS = 10_000;
/**
 * The server pings each connection this often and drops one that does not
 * answer within GRPC_KEEPALIVE_TIMEOUT_MS: peers that vanished, and sessions
 * node:http2 wedges after a connection error (a malformed PING or a DATA
 * frame on stream 0 gets a GOAWAY, then the socket is neither read nor
 * closed, even once the client is gone: one leaked socket per such
 * connection; found by the fuzz suite on Node 20). Envoy answers pings itself.
 */
const GRPC_KEEPALIVE_TIME_MS = 60_000;
const GRPC_KEEPALIVE_TIMEOUT_MS = 20_000;

export interface GrpcServerOptions {
  /** Add x-ratelimit-* / retry-after to RateLimitResponse.response_headers_to_add. ext_authz always carries them. */
  responseHeaders: boolean;
  /** --header-style for both services' headers; default x. */
  headerStyle?: HeaderStyle;
  logger: GrpcLogger;
  maxReceiveMessageBytes?: number;
  /** Defaults GRPC_KEEPALIVE_TIME_MS and GRPC_KEEPALIVE_TIMEOUT_MS (tests shorten them). */
  keepaliveTimeMs?: number;
  keepaliveTimeoutMs?: number;
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

/**
 * Builds the gRPC server over a DecisionService. Handlers only translate
 * (codecs in rls-codec.ts and authz-codec.ts); every error becomes a gRPC
 * status (see toGrpcError) and none escapes.
 */
export function createGrpcServer(service: DecisionService, options: GrpcServerOptions): GrpcServer {
  const { logger, responseHeaders } = options;
  const headerStyle = options.headerStyle ?? 'x';
  const server = new Server({
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? GRPC_MAX_RECEIVE_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': options.keepaliveTimeMs ?? GRPC_KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': options.keepaliveTimeoutMs ?? GRPC_KEEPALIVE_TIMEOUT_MS,
    // Nothing here serves channelz, and with it on grpc-js counts every call and message per session
    // (closures and timestamps per call): off, calls take its plain stream handler.
    'grpc.enable_channelz': 0,
  });
  let shuttingDown = false;
  const health = createHealthHandlers(() => !shuttingDown && service.readiness().ready);

  /** Answers a call; a throwing callback (a broken stream) is logged, never left to reject a handler's promise. */
  function reply(method: string, callback: sendUnaryData<Buffer>, error: GrpcError | null, response?: Buffer): void {
    try {
      if (error === null) callback(null, response);
      else callback(error);
    } catch (thrown: unknown) {
      logger.error({ err: thrown, method }, `gRPC ${method}: could not send the answer`);
    }
  }

  function fail(method: string, callback: sendUnaryData<Buffer>, error: unknown): void {
    reply(method, callback, toGrpcError(error, method, logger));
  }

  function send(method: string, callback: sendUnaryData<Buffer>, decision: Decision, encode: (decision: Decision) => Buffer): void {
    let response: Buffer;
    try {
      response = encode(decision);
    } catch (error: unknown) {
      fail(method, callback, error);
      return;
    }
    reply(method, callback, null, response);
  }

  /**
   * Decides a call and answers it. The request was decoded by the service
   * definition into a core type, or into the Error saying why not. A decision
   * made at once (memory store) is answered in the same turn with no closure
   * made; a Redis decision is a promise. Every error becomes a gRPC status.
   */
  function answer<R>(
    method: string,
    callback: sendUnaryData<Buffer>,
    request: R | Error,
    decide: (request: R) => Decision | Promise<Decision>,
    encode: (decision: Decision) => Buffer,
  ): void {
    let decided: Decision | Promise<Decision>;
    try {
      if (request instanceof Error) throw request;
      decided = decide(request);
    } catch (error: unknown) {
      fail(method, callback, error);
      return;
    }
    if (!(decided instanceof Promise)) send(method, callback, decided, encode);
    else decided.then((decision) => send(method, callback, decision, encode), (error: unknown) => fail(method, callback, error));
  }

  const decideRls = (request: DecisionRequest): Decision | Promise<Decision> => service.decide(request, 'grpc_rls');
  const encodeRls = (decision: Decision): Buffer => encodeRateLimitResponse(decision, responseHeaders, headerStyle);
  const decideCheck = (request: CheckHttpRequest): Decision | Promise<Decision> =>
    service.decideHttp(request.requestedDomain === '' ? undefined : request.requestedDomain, request, 'grpc_authz');
  const encodeCheck = (decision: Decision): Buffer => encodeCheckResponse(decision.statuses.length === 0 ? undefined : decision, headerStyle);

  function shouldRateLimit(call: ServerUnaryCall<DecisionRequest | Error, Buffer>, callback: sendUnaryData<Buffer>): void {
    answer('ShouldRateLimit', callback, call.request, decideRls, encodeRls);
  }

  function check(call: ServerUnaryCall<CheckHttpRequest | Error, Buffer>, callback: sendUnaryData<Buffer>): void {
    answer('Check', callback, call.request, decideCheck, encodeCheck);
  }

  server.addService(rateLimitServiceDefinition(service.bounds), { ShouldRateLimit: shouldRateLimit } as UntypedServiceImplementation);
  server.addService(AUTHORIZATION_SERVICE_DEFINITION, { Check: check } as UntypedServiceImplementation);
  server.addService(HEALTH_SERVICE_DEFINITION, {
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
