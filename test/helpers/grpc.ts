// Shared test scaffolding: a controllable DecisionService and real-socket clients.
import * as grpc from '@grpc/grpc-js';
import type { HttpRequestInput } from '../../src/core/http-actions.js';
import type { Api, Decision, DecisionRequest, Descriptor, DescriptorStatus } from '../../src/core/types.js';
import { InvalidRequestError } from '../../src/errors.js';
import { DEFAULT_REQUEST_BOUNDS, checkDecisionRequest, digestLongValues, type RequestBounds } from '../../src/core/request-bounds.js';
import { decideHttpRequest, type DecisionService } from '../../src/service/decision-service.js';
import { createGrpcServer, type GrpcLogger, type GrpcServer } from '../../src/transport/grpc/server.js';
import { loadPackageDefinition } from '../../src/transport/grpc/proto-root.js';

export interface LoggedLine { level: string; details: object; message: string }

export function recordingLogger(): GrpcLogger & { lines: LoggedLine[] } {
  const lines: LoggedLine[] = [];
  const log = (level: string) => (details: object, message: string) => { lines.push({ level, details, message }); };
  return { lines, error: log('error'), warn: log('warn'), info: log('info') };
}

/** A DecisionService the test steers: what decide answers, what HTTP requests produce. */
export class FakeDecisionService implements DecisionService {
  bounds: RequestBounds = DEFAULT_REQUEST_BOUNDS;
  ready = true;
  defaultDomain: string | undefined = 'openclaw';
  decideCalls: { request: DecisionRequest; api: Api }[] = [];
  httpInputs: { domain: string; input: HttpRequestInput }[] = [];
  httpDescriptors: Descriptor[] = [{ entries: [{ key: 'api_key', value: 'k1' }] }];
  answer: (request: DecisionRequest) => Decision | Promise<Decision> = (request) => okDecision(request);

  resolveDomain(requested: string | undefined): string {
    if (requested !== undefined && requested !== '') return requested;
    if (this.defaultDomain !== undefined) return this.defaultDomain;
    throw new InvalidRequestError('domain', 'required: no default domain');
  }

  descriptorsFromHttp(domain: string, input: HttpRequestInput): Descriptor[] {
    this.httpInputs.push({ domain, input });
    return this.httpDescriptors;
  }

  async decide(asked: DecisionRequest, api: Api): Promise<Decision> {
    // The DecisionService contract, as the real one: over-long values from the
    // proxy-facing APIs are digested; bounds and shape are checked.
    const request = api === 'http_check' ? asked : digestLongValues(asked, this.bounds.maxKeyOrValueBytes, (v) => `digest-of-${v.length}`);
    checkDecisionRequest(request, this.bounds);
    this.decideCalls.push({ request, api });
    return this.answer(request);
  }

  decideHttp(requestedDomain: string | undefined, input: HttpRequestInput, api: Api): Decision | Promise<Decision> {
    return decideHttpRequest(this, requestedDomain, input, api);
  }

  readiness(): { ready: boolean; detail: string } {
    return { ready: this.ready, detail: this.ready ? 'ok' : 'store down' };
  }
}

export function limitedStatus(overrides: Partial<DescriptorStatus> = {}): DescriptorStatus {
  return {
    code: 'OK',
    limit: { requestsPerUnit: 10, unit: 'minute', name: undefined, burst: 10 },
    limitRemaining: 9,
    durationUntilResetMs: 6000,
    retryAfterS: 0,
    shadowOverLimit: false,
    shadow: false,
    rule: 'api_key',
    ...overrides,
  };
}

export function noLimitStatus(limitRemaining = 0): DescriptorStatus {
  return {
    code: 'OK', limit: null, limitRemaining, durationUntilResetMs: 0, retryAfterS: 0, shadowOverLimit: false, shadow: false, rule: undefined,
  };
}

export function decision(statuses: DescriptorStatus[]): Decision {
  return {
    overallCode: statuses.some((s) => s.code === 'OVER_LIMIT') ? 'OVER_LIMIT' : 'OK',
    statuses,
    decidedBy: 'store', storeFailure: undefined,
    shadowOverLimit: false,
  };
}

function okDecision(request: DecisionRequest): Decision {
  return decision(request.descriptors.map(() => limitedStatus()));
}

export interface UnaryResult<T> { error: grpc.ServiceError | null; response: T | undefined }

type UnaryMethod = (request: unknown, callback: (error: grpc.ServiceError | null, response?: unknown) => void) => void;

export function call<T = any>(client: grpc.Client, method: string, request: unknown): Promise<UnaryResult<T>> {
  return new Promise((resolve) => {
    const fn = (client as unknown as Record<string, UnaryMethod>)[method]!.bind(client);
    fn(request, (error, response) => resolve({ error, response: response as T | undefined }));
  });
}

export interface Harness {
  port: number;
  grpcServer: GrpcServer;
  rls: grpc.Client;
  authz: grpc.Client;
  health: grpc.Client;
  close(): Promise<void>;
}

type ClientCtor = new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client;

export function clientConstructor(serviceName: string): ClientCtor {
  let node: unknown = grpc.loadPackageDefinition(loadPackageDefinition());
  for (const part of serviceName.split('.')) node = (node as Record<string, unknown>)[part];
  return node as ClientCtor;
}

export async function startHarness(
  service: DecisionService,
  options: { responseHeaders?: boolean; logger?: GrpcLogger; keepaliveTimeMs?: number; keepaliveTimeoutMs?: number } = {},
): Promise<Harness> {
  const grpcServer = createGrpcServer(service, {
    responseHeaders: options.responseHeaders ?? true,
    logger: options.logger ?? recordingLogger(),
    ...(options.keepaliveTimeMs === undefined ? {} : { keepaliveTimeMs: options.keepaliveTimeMs }),
    ...(options.keepaliveTimeoutMs === undefined ? {} : { keepaliveTimeoutMs: options.keepaliveTimeoutMs }),
  });
  const port = await grpcServer.listen('127.0.0.1', 0);
  const address = `127.0.0.1:${port}`;
  const credentials = grpc.credentials.createInsecure();
  const rls = new (clientConstructor('envoy.service.ratelimit.v3.RateLimitService'))(address, credentials);
  const authz = new (clientConstructor('envoy.service.auth.v3.Authorization'))(address, credentials);
  const health = new (clientConstructor('grpc.health.v1.Health'))(address, credentials);
  return {
    port, grpcServer, rls, authz, health,
    async close() {
      rls.close();
      authz.close();
      health.close();
      await grpcServer.shutdown(2000);
    },
  };
}

/** A RateLimitRequest as envoyproxy/ratelimit's tests build it: descriptors as [key, value] lists. */
export function rlsRequest(domain: string, descriptors: [string, string][][], hitsAddend = 1): object {
  return {
    domain,
    descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })),
    hits_addend: hitsAddend,
  };
}
