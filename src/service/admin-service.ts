// Inspect and reset buckets: what the admin listener and the `inspect` /
// `reset` commands call (docs/operations.md, "Inspect and reset a bucket").
// The request is matched as a decision would match it (Limiter.plan); the
// store reads or deletes those buckets without deciding.
import type { CompiledConfig } from './core/config-model.js';
import type { Digest } from './core/keys.js';
import { decisionOf, type Limiter, type RequestPlan } from './core/limiter.js';
import { checkDecisionRequest, digestLongValues } from './core/request-bounds.js';
import type { BucketAdmin } from './core/store.js';
import type { DecisionRequest, DescriptorStatus } from './core/types.js';
import type { AdminRequest, AdminService, DecisionService, DescriptorInspection, Inspection } from './service.js';

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
