// Inspect and reset buckets: what the admin listener and the `inspect` /
// `reset` commands call (docs/operations.md, "Inspect and reset a bucket").
// The request is matched as a decision would match it (Limiter.plan); the
// store reads or deletes those buckets without deciding.
import type { CompiledConfig } from '../core/config-model.js';
import type { Digest } from '../core/keys.js';
import { decisionOf, type Limiter, type RequestPlan } from '../core/limiter.js';
import { checkDecisionRequest, digestLongValues } from '../core/request-bounds.js';
import type { BucketAdmin } from '../core/store.js';
import type { Descriptor, DecisionRequest, DescriptorStatus } from '../core/types.js';
import type { DecisionService } from './decision-service.js';

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

export interface BucketAdminServiceOptions {
  config: () => CompiledConfig;
  limiter: Limiter;
  store: BucketAdmin;
  /** Domain choice and bounds, as the decision APIs apply them. */
  decisions: Pick<DecisionService, 'resolveDomain' | 'bounds'>;
  /** Over-long values are digested as the proxy-facing APIs digest them, so their buckets can be found. */
  digest: Digest;
  /** Told of every reset (an operator's action belongs in the log). */
  onReset?: (domain: string, buckets: number) => void;
}

export class BucketAdminService implements AdminService {
  constructor(private readonly options: BucketAdminServiceOptions) {}

  async inspect(asked: AdminRequest): Promise<Inspection> {
    const { request, plan } = this.plan(asked);
    const outcomes = plan.ops.length === 0 ? [] : await this.options.store.inspect(plan.ops);
    const decision = decisionOf(plan, { outcomes, fallback: undefined });
    return { domain: request.domain, statuses: decision.statuses.map((status, i) => inspection(plan, i, status)) };
  }

  async reset(asked: AdminRequest): Promise<number> {
    const { request, plan } = this.plan(asked);
    const count = plan.ops.length === 0 ? 0 : await this.options.store.reset(plan.ops);
    this.options.onReset?.(request.domain, count);
    return count;
  }

  /** Domain, bounds (InvalidRequestError naming the field), then the ops a decision would make. */
  private plan(asked: AdminRequest): { request: DecisionRequest; plan: RequestPlan } {
    const { decisions, digest } = this.options;
    const domain = decisions.resolveDomain(asked.domain, 'domain');
    const request = digestLongValues({ ...asked, domain }, decisions.bounds.maxKeyOrValueBytes, digest);
    checkDecisionRequest(request, decisions.bounds);
    return { request, plan: this.options.limiter.plan(this.options.config(), request) };
  }
}

/** Descriptor `index`'s status with the keys of its buckets (several for `rate_limits`: the chosen one's first). */
function inspection(plan: RequestPlan, index: number, status: DescriptorStatus): DescriptorInspection {
  const keys: string[] = [];
  plan.opIndex.forEach((descriptor, k) => {
    if (descriptor === index) keys.push(plan.ops[k]!.key);
  });
  if (keys.length === 0) return { status, key: undefined };
  const each = status.limitStatuses;
  if (each === undefined || keys.length === 1) return { status, key: keys[0] };
  const limits = each.map((limitStatus, j) => ({ status: limitStatus, key: keys[j] }));
  // The descriptor reports its most restrictive limit (core/limiter.ts): a copy of that limit's status.
  const chosen = limits.find((limit) => limit.status.limit === status.limit && limit.status.code === status.code
    && limit.status.limitRemaining === status.limitRemaining && limit.status.durationUntilResetMs === status.durationUntilResetMs);
  return { status, key: chosen?.key ?? keys[0], limits };
}
