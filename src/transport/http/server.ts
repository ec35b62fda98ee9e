import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { CompiledConfig } from '../../core/config-model.js';
import type { HttpRequestInput } from '../../core/http-actions.js';
import { rateLimitHeaders, type HeaderStyle } from '../../core/response-headers.js';
import type { Decision } from '../../core/types.js';
import { InvalidRequestError, RateLimitError, StoreUnavailableError } from '../../errors.js';
import type { Api, DecisionService } from '../../service.js';
import type { Logger } from '../../telemetry/logger.js';
import type { Metrics } from '../../telemetry/metrics.js';
import { decodeCheckBody } from './check-body.js';
import type { ClientAddressResolver } from './client-address.js';

export interface HttpServerOptions {
  service: DecisionService;
  metrics: Metrics;
  config: () => CompiledConfig;
  clientAddress: ClientAddressResolver;
  logger: Logger;
  /** --header-style; default x. */
  headerStyle?: HeaderStyle;
}

interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

/** The one place errors become HTTP statuses. */
function httpError(error: unknown): { status: number; body: ErrorBody } {
  if (error instanceof InvalidRequestError) {
    const status = error.code === 'RL_ERR_BODY_TOO_LARGE' ? 413 : 400;
    return { status, body: { error: { code: error.code, message: error.message, field: error.field } } };
  }
  if (error instanceof StoreUnavailableError) {
    return { status: 503, body: { error: { code: error.code, message: error.message } } };
  }
  if (error instanceof RateLimitError) {
    return { status: 400, body: { error: { code: error.code, message: error.message } } };
  }
  const fastifyError = error as { statusCode?: unknown; code?: unknown; message?: unknown };
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    const code = fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'RL_ERR_BODY_TOO_LARGE' : 'RL_ERR_INVALID_REQUEST';
    return {
      status: fastifyError.statusCode,
      body: { error: { code, message: String(fastifyError.message), field: 'body' } },
    };
  }
  return { status: 500, body: { error: { code: 'RL_ERR_INTERNAL', message: 'internal error' } } };
}

function setDecisionHeaders(reply: FastifyReply, decision: Decision, style: HeaderStyle): void {
  for (const [name, value] of rateLimitHeaders(decision, style)) reply.header(name, value);
}

function statusBody(decision: Decision): unknown {
  return {
    overall_code: decision.overallCode,
    statuses: decision.statuses.map((status) => ({
      code: status.code,
      limit: status.limit === null
        ? null
        : {
            requests_per_unit: status.limit.requestsPerUnit,
            unit: status.limit.unit,
            burst: status.limit.burst,
            ...(status.limit.unitMultiplier === undefined ? {} : { unit_multiplier: status.limit.unitMultiplier }),
            ...(status.limit.name === undefined ? {} : { name: status.limit.name }),
          },
      limit_remaining: status.limitRemaining,
      duration_until_reset_ms: status.durationUntilResetMs,
      ...(status.code === 'OVER_LIMIT' ? { retry_after_s: status.retryAfterS } : {}),
      ...(status.unsatisfiable === true ? { unsatisfiable: true } : {}),
    })),
  };
}

function headerText(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : value;
}

/** The /v1/check body, for fastify's compiled serializer (faster than JSON.stringify on the hot path). */
const CHECK_RESPONSE_SCHEMA = {
  type: 'object',
  properties: {
    overall_code: { type: 'string' },
    statuses: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          code: { type: 'string' },
          limit: {
            anyOf: [
              { type: 'null' },
              {
                type: 'object',
                properties: {
                  requests_per_unit: { type: 'integer' },
                  unit: { type: 'string' },
                  burst: { type: 'integer' },
                  unit_multiplier: { type: 'integer' },
                  name: { type: 'string' },
                },
                required: ['requests_per_unit', 'unit', 'burst'],
              },
            ],
          },
          limit_remaining: { type: 'integer' },
          duration_until_reset_ms: { type: 'integer' },
          retry_after_s: { type: 'integer' },
          unsatisfiable: { type: 'boolean' },
        },
        required: ['code', 'limit', 'limit_remaining', 'duration_until_reset_ms'],
      },
    },
  },
  required: ['overall_code', 'statuses'],
} as const;

const AUTH_PREFIX = '/v1/auth';
const MAX_HEADER_BYTES = 64 * 1024;

/**
 * The request a forward-auth call stands for: X-Original-URI/-Method (NGINX),
 * else X-Forwarded-Uri/-Method (Traefik, Caddy), else the call's own method and
 * the path after /v1/auth (Envoy HTTP ext_authz with path_prefix).
 */
function forwardedRequest(request: FastifyRequest, clientAddress: ClientAddressResolver): HttpRequestInput {
  let uri = headerText(request, 'x-original-uri') ?? headerText(request, 'x-forwarded-uri');
  if (uri === undefined) {
    const own = request.url.startsWith(AUTH_PREFIX) ? request.url.slice(AUTH_PREFIX.length) : request.url;
    uri = own === '' || own.startsWith('?') ? `/${own}` : own;
  }
  const queryAt = uri.indexOf('?');
  return {
    method: headerText(request, 'x-original-method') ?? headerText(request, 'x-forwarded-method') ?? request.method,
    path: queryAt < 0 ? uri : uri.slice(0, queryAt),
    query: queryAt < 0 ? '' : uri.slice(queryAt + 1),
    authority: headerText(request, 'x-forwarded-host') ?? headerText(request, 'host') ?? '',
    header: (name) => headerText(request, name),
    remoteAddress: clientAddress.resolve(
      request.socket.remoteAddress,
      headerText(request, 'x-real-ip'),
      headerText(request, 'x-forwarded-for'),
    ),
  };
}

export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const { service, metrics, clientAddress } = options;
  const headerStyle = options.headerStyle ?? 'x';
  const app = Fastify({
    bodyLimit: service.bounds.maxBodyBytes,
    logger: false,
    return503OnClosing: true,
    // Envoy and NGINX keep connections open; keep them a little longer than they do.
    keepAliveTimeout: 75_000,
    // Forward auth carries the client's headers. Node's default (16 KiB) would
    // answer 431 to a client with big headers, which NGINX turns into a 500 and
    // fail-open; Envoy caps request headers at 60 KiB by default.
    http: { maxHeaderSize: MAX_HEADER_BYTES },
  });

  // Bodies are read as text and decoded by us, so every problem names its field
  // and a missing or odd content type is not an error (curl -d sends form type).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => done(null, body));

  app.setErrorHandler((error, request, reply) => {
    const { status, body } = httpError(error);
    if (status >= 500 && !(error instanceof StoreUnavailableError)) {
      options.logger.error({ err: error, url: request.url }, 'unexpected error in HTTP handler');
    }
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: { code: 'RL_ERR_NOT_FOUND', message: `no route ${request.method} ${request.url}` } });
  });

  app.post('/v1/check', { schema: { response: { 200: CHECK_RESPONSE_SCHEMA, 429: CHECK_RESPONSE_SCHEMA } } }, async (request, reply) => {
    const raw = typeof request.body === 'string' ? request.body : '';
    if (raw === '') throw new InvalidRequestError('body', 'required: a JSON object with descriptors');
    const body = decodeCheckBody(raw);
    const decision = await service.decide({ ...body, domain: service.resolveDomain(body.domain) }, 'http_check');
    setDecisionHeaders(reply, decision, headerStyle);
    return reply.code(decision.overallCode === 'OK' ? 200 : 429).send(statusBody(decision));
  });

  async function forwardAuth(request: FastifyRequest, reply: FastifyReply, api: Api, denyStatus: number): Promise<FastifyReply> {
    const domain = service.resolveDomain(headerText(request, 'x-ratelimit-domain'));
    const descriptors = service.descriptorsFromHttp(domain, forwardedRequest(request, clientAddress));
    if (descriptors.length === 0) return reply.code(200).send({ overall_code: 'OK', statuses: [] });
    const decision = await service.decide({ domain, descriptors }, api);
    setDecisionHeaders(reply, decision, headerStyle);
    if (decision.overallCode === 'OK') return reply.code(200).send({ overall_code: 'OK' });
    return reply.code(denyStatus).send({ overall_code: 'OVER_LIMIT', message: 'rate limit exceeded' });
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
  return app;
}
