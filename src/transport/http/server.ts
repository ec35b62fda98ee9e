import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { CompiledConfig } from '../../core/config-model.js';
import type { HttpRequestInput } from '../../core/http-actions.js';
import { latin1ToLossless } from '../../core/lossless-text.js';
import { writeRateLimitHeaders, type HeaderSink, type HeaderStyle } from '../../core/response-headers.js';
import type { Api, Decision, DecisionRequest } from '../../core/types.js';
import { InvalidRequestError, RateLimitError, StoreUnavailableError, type ErrorCode } from '../../errors.js';
import type { DecisionService } from '../../service/decision-service.js';
import type { Logger } from '../../telemetry/logger.js';
import type { Metrics } from '../../telemetry/metrics.js';
import { decodeCheckRequest } from './check-body.js';
import { checkResponseJson } from './check-response.js';
import type { ClientAddressResolver } from './client-address.js';
import type { TlsMaterial } from '../tls-files.js';
import { DEFAULT_HTTP_CONNECTION_LIMITS, HttpWire, writeClientError, type HttpConnectionLimits } from './node-server.js';
import { TurnWriter } from './turn-writer.js';

export interface HttpServerOptions {
  service: DecisionService;
  metrics: Metrics;
  config: () => CompiledConfig;
  clientAddress: ClientAddressResolver;
  logger: Logger;
  /** Timeouts and the connection cap (default DEFAULT_HTTP_CONNECTION_LIMITS). */
  limits?: HttpConnectionLimits;
  /** HTTPS (and mTLS with a client CA); plain HTTP when absent. */
  tls?: TlsMaterial | undefined;
  /** --header-style; default x. */
  headerStyle?: HeaderStyle;
}

export interface HttpServer {
  readonly app: FastifyInstance;
  /** Listens; resolves with the bound port (useful with port 0). Rejects if the bind fails. */
  listen(host: string, port: number): Promise<number>;
  /**
   * Drains within `timeoutMs` (see HttpWire.drain: every request still gets
   * an answer, with Connection: close), then closes fastify. Never rejects.
   */
  drain(timeoutMs: number): Promise<void>;
  /** Certificate rotation: new handshakes use this (checked) material. A no-op without TLS. */
  setTls(material: TlsMaterial): void;
}

interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

/** Each code's HTTP status; a Record, so a new code cannot be left out. */
const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = Object.freeze({
  RL_ERR_INVALID_REQUEST: 400,
  RL_ERR_MALFORMED_MESSAGE: 400,
  RL_ERR_BODY_TOO_LARGE: 413,
  RL_ERR_LIMIT_SPEC: 400,
  RL_ERR_NOT_FOUND: 404,
  RL_ERR_REQUEST_TIMEOUT: 408,
  RL_ERR_HEADERS_TOO_LARGE: 431,
  RL_ERR_BAD_HTTP: 400,
  RL_ERR_METHOD_NOT_ALLOWED: 405,
  RL_ERR_STORE_UNAVAILABLE: 503,
  // The failure policy turns store call failures into decisions; one escaping is a bug.
  RL_ERR_STORE_CALL: 500,
  RL_ERR_CONFIG: 500,
  RL_ERR_SETTINGS: 500,
  RL_ERR_TLS: 500,
  RL_ERR_INTERNAL: 500,
});

const INTERNAL_ERROR_BODY: ErrorBody = Object.freeze({ error: Object.freeze({ code: 'RL_ERR_INTERNAL', message: 'internal error' }) });

/** The one place errors become HTTP statuses. A 500 sends no details (they are logged). */
export function httpError(error: unknown): { status: number; body: ErrorBody } {
  if (error instanceof RateLimitError) {
    const status = HTTP_STATUS[error.code];
    if (status >= 500 && status !== 503) return { status, body: INTERNAL_ERROR_BODY };
    const field = error instanceof InvalidRequestError ? { field: error.field } : {};
    return { status, body: { error: { code: error.code, message: error.message, ...field } } };
  }
  const fastifyError = error as { statusCode?: unknown; code?: unknown; message?: unknown };
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    const code = fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'RL_ERR_BODY_TOO_LARGE' : 'RL_ERR_INVALID_REQUEST';
    return {
      status: fastifyError.statusCode,
      body: { error: { code, message: String(fastifyError.message), field: 'body' } },
    };
  }
  return { status: 500, body: INTERNAL_ERROR_BODY };
}

const replyHeader: HeaderSink<FastifyReply> = (reply, name, value) => {
  reply.header(name, value);
};

function setDecisionHeaders(reply: FastifyReply, decision: Decision, style: HeaderStyle): void {
  writeRateLimitHeaders(decision, style, replyHeader, reply);
}

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
const AUTH_OK_BODY = JSON.stringify({ overall_code: 'OK' });
const AUTH_DENIED_BODY = JSON.stringify({ overall_code: 'OVER_LIMIT', message: 'rate limit exceeded' });

/**
 * Header lookup for forward auth, over the raw header lines: names are
 * case-insensitive, repeats are joined with ',' (as Envoy joins them for
 * ext_authz), and a value's bytes (Node gives them as latin1 chars) are
 * decoded as UTF-8 losslessly, so the same bytes make the same descriptor
 * value here and on the gRPC APIs (invalid bytes become U+DC80..U+DCFF).
 */
function rawHeaderLookup(rawHeaders: readonly string[]): (lowerCaseName: string) => string | undefined {
  let joined: Map<string, string> | undefined;
  return (name) => {
    if (joined === undefined) {
      joined = new Map();
      for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
        const key = rawHeaders[i]!.toLowerCase();
        const previous = joined.get(key);
        joined.set(key, previous === undefined ? rawHeaders[i + 1]! : `${previous},${rawHeaders[i + 1]!}`);
      }
    }
    const value = joined.get(name);
    return value === undefined ? undefined : latin1ToLossless(value);
  };
}

const AUTH_PREFIX = '/v1/auth';

/** A path the forward-auth routes take: /v1/auth, /v1/auth?… or /v1/auth/…. */
function isForwardAuthPath(url: string): boolean {
  return url.startsWith(AUTH_PREFIX) && (url.length === AUTH_PREFIX.length || url[AUTH_PREFIX.length] === '/' || url[AUTH_PREFIX.length] === '?');
}

/**
 * The request a forward-auth call stands for: X-Original-URI/-Method (NGINX),
 * else X-Forwarded-Uri/-Method (Traefik, Caddy), else the call's own method and
 * the path after /v1/auth (Envoy HTTP ext_authz with path_prefix).
 */
function forwardedRequest(request: FastifyRequest, clientAddress: ClientAddressResolver): HttpRequestInput {
  const header = rawHeaderLookup(request.raw.rawHeaders);
  let uri = header('x-original-uri') ?? header('x-forwarded-uri');
  if (uri === undefined) {
    // The request target's bytes, as latin1 chars like header values.
    const url = latin1ToLossless(request.url);
    const own = url.startsWith(AUTH_PREFIX) ? url.slice(AUTH_PREFIX.length) : url;
    uri = own === '' || own.startsWith('?') ? `/${own}` : own;
  }
  const queryAt = uri.indexOf('?');
  return {
    method: header('x-original-method') ?? header('x-forwarded-method') ?? request.method,
    path: queryAt < 0 ? uri : uri.slice(0, queryAt),
    query: queryAt < 0 ? '' : uri.slice(queryAt + 1),
    authority: header('x-forwarded-host') ?? header('host') ?? '',
    header,
    remoteAddress: clientAddress.resolve(request.socket.remoteAddress, header('x-real-ip'), header('x-forwarded-for')),
  };
}

/** Routes that take only some methods (forward auth takes all): another method is a 405 with Allow, not a 404. */
const METHODS_OF_ROUTE: ReadonlyMap<string, string> = new Map([
  ['/v1/check', 'POST'],
  ['/v1/report', 'POST'],
  ...['/healthz', '/healthcheck', '/readyz', '/metrics', '/v1/config'].map((path) => [path, 'GET, HEAD'] as const),
]);

export function createHttpServer(options: HttpServerOptions): HttpServer {
  const { service, metrics, clientAddress, logger } = options;
  let wire: HttpWire | undefined;
  const headerStyle = options.headerStyle ?? 'x';
  /**
   * An error as its HTTP answer (httpError), a 500 logged: fastify's error
   * handler, and directly for a request the router never routed (frameworkErrors).
   */
  function sendErrorBody(reply: FastifyReply, error: unknown): void {
    const { status, body } = httpError(error);
    if (status >= 500 && !(error instanceof StoreUnavailableError)) {
      logger.error({ err: error, url: reply.request.url }, 'unexpected error in HTTP handler');
    }
    void reply.code(status).send(body);
  }
  const app = Fastify({
    bodyLimit: service.bounds.maxBodyBytes,
    logger: false,
    return503OnClosing: true,
    serverFactory: (handler) => {
      wire = new HttpWire(handler, { limits: options.limits ?? DEFAULT_HTTP_CONNECTION_LIMITS, tls: options.tls });
      return wire.server;
    },
    clientErrorHandler: writeClientError,
    // The router could not percent-decode the path (`%ff`, `%zz`, a lone `%`).
    // Forward auth does not need it decoded (it reads the raw target, invalid
    // bytes kept as values), so such a path is still decided; anything else
    // is a 400 in our own error shape, not the router's.
    frameworkErrors: (error, request, reply) => {
      if (error.code !== 'FST_ERR_BAD_URL') {
        sendErrorBody(reply, error);
        return;
      }
      if (!isForwardAuthPath(request.url)) {
        sendErrorBody(reply, new InvalidRequestError('path', 'invalid percent-encoding (each % takes two hex digits, and the bytes must be UTF-8)'));
        return;
      }
      try {
        const decided = forwardAuth(request, reply, 'http_auth', 429);
        if (decided instanceof Promise) decided.catch((failure: unknown) => sendErrorBody(reply, failure));
      } catch (failure: unknown) {
        sendErrorBody(reply, failure); // e.g. an unknown X-RateLimit-Domain: a 400 naming it, as on the routed paths
      }
    },
  });

  // Only /v1/check reads a body (below). Forward auth never does: the request
  // it stands for is in its headers, and a big body must not turn a decision
  // into a 413. Whatever the content type (see HttpWire).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => {
    payload.resume();
    done(null, undefined);
  });

  app.setErrorHandler((error, _request, reply) => sendErrorBody(reply, error));
  app.setNotFoundHandler((request, reply) => {
    const allow = METHODS_OF_ROUTE.get(request.url.split('?', 1)[0]!);
    if (allow !== undefined) {
      void reply.code(405).header('allow', allow).send({
        error: { code: 'RL_ERR_METHOD_NOT_ALLOWED', message: `${request.method} ${request.url}: this route takes ${allow}` },
      });
      return;
    }
    void reply.code(404).send({ error: { code: 'RL_ERR_NOT_FOUND', message: `no route ${request.method} ${request.url}` } });
  });

  // /v1/check: the body is read as bytes and decoded by us, so every problem
  // names its field and a missing or odd content type is not an error.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    // Not async: with the memory store the decision is made at once and its
    // answer written with the turn's others (turn-writer.ts; no promise); a
    // Redis decision is a promise.
    scope.post('/v1/check', (request, reply) => {
      const decided = service.decide(checkRequest(request), 'http_check');
      if (decided instanceof Promise) return decided.then((decision) => sendCheck(reply, decision));
      checkWriter.later(reply, decided);
      return undefined;
    });
    // The stream-done charge over HTTP: same body, every cost recorded, never a denial (docs/budgets.md).
    scope.post('/v1/report', (request, reply) => {
      const decided = service.decide({ ...checkRequest(request), report: true }, 'http_report');
      if (decided instanceof Promise) return decided.then((decision) => sendReport(reply, decision));
      return sendReport(reply, decided);
    });
  });

  /** The decision request of a /v1/check or /v1/report body. Throws InvalidRequestError naming the field. */
  function checkRequest(request: FastifyRequest): DecisionRequest {
    const body = decodeCheckRequest(request.headers['content-encoding'], request.body);
    return { ...body, domain: service.resolveDomain(body.domain, 'domain') };
  }

  /** A report's answer: 200 with the statuses, and no Retry-After (nothing was refused). */
  function sendReport(reply: FastifyReply, decision: Decision): FastifyReply {
    return reply.code(200).header('content-type', JSON_CONTENT_TYPE).send(checkResponseJson(decision));
  }

  // An answer that cannot be written goes to the error handler, as a throw in the handler would.
  const sendError = (reply: FastifyReply, error: unknown): void => {
    try {
      void reply.send(error instanceof Error ? error : new Error(String(error)));
    } catch {
      reply.raw.destroy();
    }
  };
  const checkWriter = new TurnWriter<FastifyReply, Decision>(sendCheck, sendError);
  const authWriters = new Map([403, 429].map((status) => [status,
    new TurnWriter<FastifyReply, Decision>((reply, decision) => sendAuth(reply, decision, status), sendError)]));

  function sendCheck(reply: FastifyReply, decision: Decision): FastifyReply {
    setDecisionHeaders(reply, decision, headerStyle);
    return reply.code(decision.overallCode === 'OK' ? 200 : 429).header('content-type', JSON_CONTENT_TYPE).send(checkResponseJson(decision));
  }

  function sendAuth(reply: FastifyReply, decision: Decision, denyStatus: number): FastifyReply {
    setDecisionHeaders(reply, decision, headerStyle);
    const allowed = decision.overallCode === 'OK';
    return reply.code(allowed ? 200 : denyStatus).header('content-type', JSON_CONTENT_TYPE).send(allowed ? AUTH_OK_BODY : AUTH_DENIED_BODY);
  }

  /** Forward auth; a decision made at once is written with the turn's others (see /v1/check). */
  function forwardAuth(request: FastifyRequest, reply: FastifyReply, api: Api, denyStatus: number): Promise<FastifyReply> | undefined {
    const forwarded = forwardedRequest(request, clientAddress);
    // An unknown domain is a 400: to NGINX (auth_request) a 500, which deploy/nginx
    // routes to its sidecar-unavailable location (docs/api.md, forward auth).
    const decided = service.decideHttp(forwarded.header('x-ratelimit-domain'), forwarded, api, 'X-RateLimit-Domain');
    if (decided instanceof Promise) return decided.then((decision) => sendAuth(reply, decision, denyStatus));
    authWriters.get(denyStatus)!.later(reply, decided);
    return undefined;
  }

  app.all('/v1/auth/nginx', (request, reply) => forwardAuth(request, reply, 'http_auth_nginx', 403));
  app.all('/v1/auth', (request, reply) => forwardAuth(request, reply, 'http_auth', 429));
  app.all('/v1/auth/*', (request, reply) => forwardAuth(request, reply, 'http_auth', 429));

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/healthcheck', async () => ({ status: 'ok' })); // envoyproxy/ratelimit's path
  app.get('/readyz', async (_request, reply) => {
    const { ready, detail } = service.readiness();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', detail });
  });
  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.text();
    return reply.type(metrics.registry.contentType).send(text);
  });
  app.get('/v1/config', async () => {
    const config = options.config();
    return {
      source: config.source,
      loaded_at: new Date(config.loadedAtMs).toISOString(),
      domains: [...config.domains.values()].map((domain) => ({
        domain: domain.name,
        file: domain.source,
        config: domain.document,
      })),
    };
  });

  return {
    app,
    async listen(host, port) {
      await app.listen({ host, port });
      const address = app.server.address();
      return typeof address === 'object' && address !== null ? address.port : port;
    },
    setTls(material) {
      wire?.setTls(material);
    },
    async drain(timeoutMs) {
      const outcome = await wire?.drain(timeoutMs);
      if (outcome === 'cut') logger.warn({ timeoutMs }, 'HTTP drain time over; cut the connections still open');
      await app.close();
    },
  };
}
