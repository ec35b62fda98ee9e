// The admin listener (--admin-port on --admin-host, loopback by default):
// POST /v1/inspect and POST /v1/reset, for operators. No authentication:
// whoever reaches it can reset any bucket (docs/operations.md). The public
// HTTP port does not serve these routes.
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { StoreUnavailableError } from '../../errors.js';
import type { AdminService, BucketStatus, DescriptorInspection, Inspection } from '../../service/admin-service.js';
import type { Logger } from '../../telemetry/logger.js';
import { decodeCheckRequest } from './check-body.js';
import { debtJson, integerJson, limitJson } from './check-response.js';
import { writeClientError } from './node-server.js';
import { httpError } from './server.js';

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
/** An operator's call reads one body; it need not wait long for it. */
const ADMIN_REQUEST_TIMEOUT_MS = 10_000;

export interface AdminServerOptions {
  admin: AdminService;
  logger: Logger;
  /** Largest request body, bytes (--max-body-bytes, as the public port). */
  maxBodyBytes: number;
}

export interface AdminServer {
  readonly app: FastifyInstance;
  /** Listens; resolves with the bound port. Rejects if the bind fails. */
  listen(host: string, port: number): Promise<number>;
  close(): Promise<void>;
}

function bucketJson({ status, key }: BucketStatus): string {
  let json = `{"code":${JSON.stringify(status.code)},"limit":${status.limit === null ? 'null' : limitJson(status.limit)}`;
  if (key !== undefined) json += `,"key":${JSON.stringify(key)}`;
  json += `,"limit_remaining":${integerJson(status.limitRemaining)},"duration_until_reset_ms":${integerJson(status.durationUntilResetMs)}`;
  // Tokens leases hold out of the bucket; a token budget (overdraft limit) at or below zero: whole tokens owed.
  if (status.leased !== undefined) json += `,"leased":${integerJson(status.leased)}`;
  return json + debtJson(status);
}

function descriptorJson(inspected: DescriptorInspection): string {
  let json = bucketJson(inspected);
  if (inspected.limits !== undefined) json += `,"limits":[${inspected.limits.map((limit) => `${bucketJson(limit)}}`).join(',')}]`;
  return `${json}}`;
}

/** `{ domain, statuses: [ { code, limit, key?, limit_remaining, duration_until_reset_ms, leased?, debt?, limits? } ] }` (docs/api.md). */
export function inspectionJson(inspection: Inspection): string {
  return `{"domain":${JSON.stringify(inspection.domain)},"statuses":[${inspection.statuses.map(descriptorJson).join(',')}]}`;
}

export function resetJson(buckets: number): string {
  return `{"reset":${integerJson(buckets)}}`;
}

const ADMIN_ROUTES = new Set(['/v1/inspect', '/v1/reset']);

export function createAdminServer(options: AdminServerOptions): AdminServer {
  const { admin, logger } = options;
  const app = Fastify({
    bodyLimit: options.maxBodyBytes,
    logger: false,
    return503OnClosing: true,
    requestTimeout: ADMIN_REQUEST_TIMEOUT_MS,
    clientErrorHandler: writeClientError,
  });
  // Bodies are read as bytes and decoded as /v1/check's, whatever the content type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  app.setErrorHandler((error, request, reply) => {
    const { status, body } = httpError(error);
    if (status >= 500 && !(error instanceof StoreUnavailableError)) logger.error({ err: error, url: request.url }, 'unexpected error in admin handler');
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    if (ADMIN_ROUTES.has(request.url.split('?', 1)[0]!)) {
      void reply.code(405).header('allow', 'POST').send({
        error: { code: 'RL_ERR_METHOD_NOT_ALLOWED', message: `${request.method} ${request.url}: this route takes POST` },
      });
      return;
    }
    void reply.code(404).send({ error: { code: 'RL_ERR_NOT_FOUND', message: `no route ${request.method} ${request.url}` } });
  });

  const send = (reply: FastifyReply, json: string): FastifyReply => reply.code(200).header('content-type', JSON_CONTENT_TYPE).send(json);
  app.post('/v1/inspect', async (request, reply) => {
    const inspection = await admin.inspect(decodeCheckRequest(request.headers['content-encoding'], request.body));
    return send(reply, inspectionJson(inspection));
  });
  app.post('/v1/reset', async (request, reply) => {
    const buckets = await admin.reset(decodeCheckRequest(request.headers['content-encoding'], request.body));
    return send(reply, resetJson(buckets));
  });

  return {
    app,
    async listen(host, port) {
      await app.listen({ host, port });
      const address = app.server.address();
      return typeof address === 'object' && address !== null ? address.port : port;
    },
    close: () => app.close(),
  };
}
