// What the transports call (the DecisionService interface), the one
// orchestration of an HTTP request's decision every implementation shares,
// and the API label. The interface lives apart from its implementation
// (decision-service.ts, which builds on the limiter, the store and the
// metrics) so that a transport depends on what it calls, not on how it is
// done (test/unit/code/architecture.test.ts keeps it that way).
import type { HttpRequestInput } from './core/http-actions.js';
import type { RequestBounds } from './core/request-bounds.js';
import type { Decision, DecisionRequest, Descriptor, DescriptorStatus } from './core/types.js';

/** Which API asked; a metric label. */
export type Api = 'http_check' | 'http_auth' | 'http_auth_nginx' | 'grpc_rls' | 'grpc_authz' | 'http_report';

/**
 * What the transports (HTTP, gRPC) call. Transports only translate: decode the
 * wire format into these types, call, encode the Decision.
 */
export interface DecisionService {
  /** Bounds on one request; over them → 400 / INVALID_ARGUMENT (413 for a body). */
  readonly bounds: RequestBounds;
  /**
   * The domain a request names, else --default-domain, else the only loaded
   * domain. Throws InvalidRequestError (field "domain") when none can be chosen.
   * A domain that is not loaded is returned as is (unknown domain → OK, as
   * envoyproxy/ratelimit's RLS answers) unless `refuseUnknownAs` is given:
   * then it throws InvalidRequestError naming that field (e.g. "domain",
   * "X-RateLimit-Domain") and the loaded domains — our HTTP APIs' choice,
   * so a mistyped domain is an error, not "no limit" (docs/api.md, `POST /v1/check`).
   */
  resolveDomain(requested: string | undefined, refuseUnknownAs?: string): string;
  /** Descriptors an HTTP request produces under the domain's `http.descriptors`; [] for an unknown domain. */
  descriptorsFromHttp(domain: string, request: HttpRequestInput): Descriptor[];
  /**
   * Checks bounds (throws InvalidRequestError naming the field), decides,
   * records metrics. Returns the decision itself when the store decided at
   * once (the memory store: no promise, no turn of the event loop), else a
   * promise of it, which rejects with StoreUnavailableError when the store
   * failed and the policy is `deny`.
   */
  decide(request: DecisionRequest, api: Api): Decision | Promise<Decision>;
  /**
   * Forward auth and ext_authz: resolves the domain (`requestedDomain`, else
   * the default), builds the descriptors the domain's `http.descriptors`
   * make of `request`, allows at once when there are none (no store call, no
   * metric), else decides. Throws and returns as resolveDomain and decide do.
   */
  decideHttp(requestedDomain: string | undefined, request: HttpRequestInput, api: Api, refuseUnknownAs?: string): Decision | Promise<Decision>;
  /** Config loaded and store usable (or fallback active). */
  readiness(): { ready: boolean; detail: string };
}

/**
 * DecisionService.decideHttp in terms of the other three methods: the one
 * orchestration behind forward auth (HTTP) and ext_authz (gRPC), shared by
 * every implementation (test doubles included) so the transports only translate.
 */
export function decideHttpRequest(
  service: Pick<DecisionService, 'resolveDomain' | 'descriptorsFromHttp' | 'decide'>,
  requestedDomain: string | undefined,
  request: HttpRequestInput,
  api: Api,
  refuseUnknownAs?: string,
): Decision | Promise<Decision> {
  const domain = service.resolveDomain(requestedDomain, refuseUnknownAs);
  const descriptors = service.descriptorsFromHttp(domain, request);
  // No descriptor: allowed, nothing to report (and no store call, no metric).
  if (descriptors.length === 0) return { overallCode: 'OK', statuses: [], decidedBy: 'store', storeFailure: undefined, shadowOverLimit: false };
  return service.decide({ domain, descriptors }, api);
}

/** A request to the admin API: a /v1/check body, its domain not yet resolved. */
export interface AdminRequest {
  domain: string | undefined;
  descriptors: Descriptor[];
  hitsAddend?: number;
}

/** One limit's bucket as inspected: its status (nothing taken) and its store key. */
export interface BucketStatus {
  status: DescriptorStatus;
  /** The bucket's store key; undefined when no limit matched (or the limit is unlimited). */
  key: string | undefined;
}

/** One descriptor's buckets: the most restrictive one's, and each of them when it has several limits (`rate_limits`). */
export interface DescriptorInspection extends BucketStatus {
  limits?: BucketStatus[];
}

export interface Inspection {
  domain: string;
  /** One per descriptor, in order. */
  statuses: DescriptorInspection[];
}

/**
 * What the admin listener and the inspect/reset commands call. Both resolve
 * the domain (an unknown one is an InvalidRequestError naming "domain") and
 * check bounds as /v1/check does; both reject with StoreUnavailableError
 * when the store cannot answer.
 */
export interface AdminService {
  /** Each descriptor's bucket as the store holds it now, for the request's cost; takes nothing. */
  inspect(request: AdminRequest): Promise<Inspection>;
  /** Deletes the state of every bucket the request matches (each full again); resolves with how many had state. */
  reset(request: AdminRequest): Promise<number>;
}
