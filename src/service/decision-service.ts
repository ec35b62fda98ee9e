// What both transports call to decide: the DecisionService interface (a
// transport depends on it, and translates only: wire format in, Decision
// out), the one orchestration of an HTTP request's decision every
// implementation shares (decideHttpRequest: test doubles use it too), and
// LimiterDecisionService, the implementation the server runs: bounds, domain
// choice, the limiter, metrics.
import type { CompiledConfig } from '../core/config-model.js';
import { descriptorsFromHttp, type HttpRequestInput } from '../core/http-actions.js';
import type { Limiter } from '../core/limiter.js';
import type { Digest } from '../core/keys.js';
import { checkDecisionRequest, digestLongValues, type RequestBounds } from '../core/request-bounds.js';
import type { Store } from '../core/store.js';
import type { Api, Decision, DecisionRequest, Descriptor } from '../core/types.js';
import { InvalidRequestError } from '../errors.js';
import { UNKNOWN_DOMAIN_LABEL, type Metrics, type Outcome } from '../telemetry/metrics.js';

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

export interface DecisionServiceOptions {
  config: () => CompiledConfig;
  limiter: Limiter;
  store: Store;
  metrics: Metrics;
  bounds: RequestBounds;
  defaultDomain: string | undefined;
  /** Under `local`/`allow` a failing store still leaves the server able to decide. */
  canDecideWithoutStore: boolean;
  /** Digest for over-long values on the proxy-facing APIs (see digestLongValues). */
  digest: Digest;
}

/** Most loaded domains an error message lists. */
const MAX_LISTED_DOMAINS = 20;

function loadedList(names: Iterable<string>): string {
  const all = [...names].sort();
  if (all.length === 0) return 'none';
  const shown = all.slice(0, MAX_LISTED_DOMAINS).join(', ');
  return all.length > MAX_LISTED_DOMAINS ? `${shown} and ${all.length - MAX_LISTED_DOMAINS} more` : shown;
}

function outcomeOf(decision: Decision): Outcome {
  if (decision.storeFailure === 'allow') return 'store_failure';
  if (decision.overallCode === 'OVER_LIMIT') return 'over_limit';
  return decision.shadowOverLimit ? 'shadow_over_limit' : 'ok';
}

/** The DecisionService both transports call: bounds, domain choice, limiter, metrics. */
export class LimiterDecisionService implements DecisionService {
  readonly bounds: RequestBounds;
  private readonly options: DecisionServiceOptions;

  constructor(options: DecisionServiceOptions) {
    this.options = options;
    this.bounds = options.bounds;
  }

  resolveDomain(requested: string | undefined, refuseUnknownAs?: string): string {
    const { domains } = this.options.config();
    const named = requested !== undefined && requested !== '';
    const domain = named ? requested : this.options.defaultDomain;
    if (domain === undefined) {
      if (domains.size === 1) return domains.keys().next().value!;
      throw new InvalidRequestError(
        'domain',
        `required: ${domains.size} domains are loaded (${loadedList(domains.keys())}) and no --default-domain is set`,
      );
    }
    if (refuseUnknownAs === undefined || domains.has(domain)) return domain;
    // A hot reload can take away the --default-domain that start-up checked.
    throw named
      ? new InvalidRequestError(refuseUnknownAs, `"${domain}" is not a loaded domain (loaded: ${loadedList(domains.keys())})`)
      : new InvalidRequestError('domain', `required: --default-domain "${domain}" is no longer loaded (loaded: ${loadedList(domains.keys())})`);
  }

  descriptorsFromHttp(domain: string, request: HttpRequestInput): Descriptor[] {
    const compiled = this.options.config().domains.get(domain);
    if (compiled === undefined) return [];
    return descriptorsFromHttp(compiled.httpDescriptors, request).map((entries) => ({ entries }));
  }

  decide(asked: DecisionRequest, api: Api): Decision | Promise<Decision> {
    // /v1/check callers build descriptors on purpose: an over-long value is their
    // bug (400). Elsewhere a client chose it, and an error would fail open.
    const request = api === 'http_check' || api === 'http_report' ? asked : digestLongValues(asked, this.bounds.maxKeyOrValueBytes, this.options.digest);
    checkDecisionRequest(request, this.bounds);
    const started = performance.now();
    const config = this.options.config();
    const known = config.domains.has(request.domain);
    const domainLabel = known ? request.domain : UNKNOWN_DOMAIN_LABEL;
    let decided: Decision | Promise<Decision>;
    try {
      decided = this.options.limiter.decide(config, request);
    } catch (error: unknown) {
      this.options.metrics.countDecision(domainLabel, api, 'store_failure', 'policy', (performance.now() - started) / 1000);
      throw error;
    }
    if (!(decided instanceof Promise)) return this.counted(decided, request.domain, known, domainLabel, api, started);
    return decided.then(
      (decision) => this.counted(decision, request.domain, known, domainLabel, api, started),
      (error: unknown) => {
        this.options.metrics.countDecision(domainLabel, api, 'store_failure', 'policy', (performance.now() - started) / 1000);
        throw error;
      },
    );
  }

  /** Counts a decision in the metrics and returns it. */
  private counted(decision: Decision, domain: string, known: boolean, domainLabel: string, api: Api, started: number): Decision {
    const { metrics } = this.options;
    metrics.countDecision(domainLabel, api, outcomeOf(decision), decision.decidedBy, (performance.now() - started) / 1000);
    if (known && decision.charges !== undefined) metrics.budgets.count(domain, decision.charges);
    if (known) {
      for (const status of decision.statuses) {
        if (status.rule === undefined) continue;
        const outcome = status.code === 'OVER_LIMIT' ? 'over_limit' : status.shadowOverLimit ? 'shadow_over_limit' : 'ok';
        metrics.countRule(domain, status.rule, outcome);
      }
    }
    return decision;
  }

  decideHttp(requestedDomain: string | undefined, request: HttpRequestInput, api: Api, refuseUnknownAs?: string): Decision | Promise<Decision> {
    return decideHttpRequest(this, requestedDomain, request, api, refuseUnknownAs);
  }

  readiness(): { ready: boolean; detail: string } {
    const health = this.options.store.health();
    // A misconfigured store is not an outage: not ready under any failure policy (docs/failure.md).
    const misconfigured = health.misconfigured !== undefined;
    const ready = this.options.config().domains.size > 0 && !misconfigured && (health.ready || this.options.canDecideWithoutStore);
    const mode = misconfigured ? 'none (misconfigured: refused until fixed)'
      : health.ready ? 'store' : this.options.canDecideWithoutStore ? 'store-failure policy' : 'none';
    return { ready, detail: `${health.detail}; deciding with: ${mode}` };
  }
}
