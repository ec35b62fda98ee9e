import type { CompiledConfig, CompiledDomain } from './config-model.js';
import { bucketKey, encodeEntries, slotTagFor, type Digest } from './keys.js';
import { compileLimit } from './limit.js';
import { compileRuleLimit, matchRule, type CompiledRule, type RuleLimit } from './rules.js';
import type { Store, StoreDecision } from './store.js';
import { chargesAlways } from './bucket.js';
import type {
  BucketOp, BucketOutcome, Decision, DecisionCharges, DecisionRequest, Descriptor, DescriptorStatus, Entry, LimitOverride,
} from './types.js';

/** envoyproxy/ratelimit's limit_remaining for unlimited descriptors. */
export const UNLIMITED_REMAINING = 4_294_967_295;
const MAX_CACHED_OVERRIDES = 1_024;

export interface LimiterOptions {
  /** Decides the ops; applies its own failure policy (see core/store.ts). */
  store: Store;
  /** Global shadow mode: evaluate and count, never deny. */
  shadow: boolean;
  /** Prefix of every store key, e.g. "rl:". */
  keyPrefix: string;
  digest: Digest;
}

const NO_LIMIT_STATUS: DescriptorStatus = Object.freeze({
  code: 'OK', limit: null, limitRemaining: 0, durationUntilResetMs: 0, retryAfterS: 0, shadowOverLimit: false,
  shadow: false, rule: undefined,
});

const UNLIMITED_STATUS_BASE = { ...NO_LIMIT_STATUS, limitRemaining: UNLIMITED_REMAINING };

/**
 * Turns a request into one store batch and the batch's outcomes into a
 * decision. Pure but for the injected store.
 */
export class Limiter {
  private readonly options: LimiterOptions;
  private readonly overrideRules = new Map<string, CompiledRule>();

  constructor(options: LimiterOptions) {
    this.options = options;
  }

  /**
   * The decision, at once when the store decides at once (see Store.apply),
   * else a promise of it.
   */
  decide(config: CompiledConfig, request: DecisionRequest): Decision | Promise<Decision> {
    const plan = this.plan(config, request);
    if (plan.ops.length === 0) return decisionOf(plan, NO_OUTCOMES);
    const result = this.options.store.apply(plan.ops);
    return result instanceof Promise ? result.then((decided) => decisionOf(plan, decided)) : decisionOf(plan, result);
  }

  /**
   * The store ops a request makes (none for an unknown domain or when nothing
   * matches), without deciding: `decisionOf` turns their outcomes into the
   * request's decision. One plan makes one decision.
   */
  plan(config: CompiledConfig, request: DecisionRequest): RequestPlan {
    const { descriptors } = request;
    const domain = config.domains.get(request.domain);
    const statuses: DescriptorStatus[] = new Array(descriptors.length);
    if (domain === undefined) {
      statuses.fill(NO_LIMIT_STATUS);
      return { rules: [], statuses, ops: [], opIndex: [], opLimits: [] };
    }
    const rules = this.matchRules(domain, descriptors);
    const replaced = replacedNames(rules);
    const requestCost = request.hitsAddend === undefined || request.hitsAddend === 0 ? 1 : request.hitsAddend;
    const ops: BucketOp[] = [];
    /** For op k: the descriptor it belongs to and the limit it applies. */
    const opIndex: number[] = [];
    const opLimits: RuleLimit[] = [];
    for (let i = 0; i < descriptors.length; i++) {
      const rule = rules[i];
      if (rule === undefined) {
        statuses[i] = NO_LIMIT_STATUS;
        continue;
      }
      if (rule.unlimited) {
        statuses[i] = { ...UNLIMITED_STATUS_BASE, rule: rule.id };
        continue;
      }
      const descriptor = descriptors[i]!;
      // share_threshold: the wildcard stands for the value, so every matching value shares one bucket.
      const entries = rule.sharedValues === undefined ? descriptor.entries : sharedEntries(descriptor.entries, rule.sharedValues);
      const slotTag = slotTagFor(entries);
      const encoded = encodeEntries(entries, this.options.digest);
      const cost = descriptor.hitsAddend ?? requestCost;
      const shadow = rule.shadow || this.options.shadow;
      const quota = rule.quotaMode;
      const first = ops.length;
      for (const limit of rule.limits) {
        // A limit named in another matched limit's `replaces` does not apply.
        if (replaced !== undefined && limit.spec.name !== undefined && replaced.has(limit.spec.name)) continue;
        const op: BucketOp = {
          key: bucketKey(this.options.keyPrefix, slotTag, limit.keyPrefix, encoded), slotTag, limit: limit.spec, cost, shadow,
        };
        if (quota) op.quotaGroup = i;
        if (request.report === true) op.report = true;
        ops.push(op);
        opIndex.push(i);
        opLimits.push(limit);
      }
      if (ops.length === first) statuses[i] = NO_LIMIT_STATUS;
    }
    return { rules, statuses, ops, opIndex, opLimits };
  }

  private matchRules(domain: CompiledDomain, descriptors: readonly Descriptor[]): (CompiledRule | undefined)[] {
    const rules: (CompiledRule | undefined)[] = new Array(descriptors.length);
    for (let i = 0; i < descriptors.length; i++) {
      const descriptor = descriptors[i]!;
      rules[i] = descriptor.limitOverride !== undefined
        ? this.overrideRule(domain, descriptor.limitOverride)
        : matchRule(domain.root, descriptor.entries);
    }
    return rules;
  }

  /** A request's own limit (RLS `limit` override); never shadow, like envoyproxy/ratelimit. */
  private overrideRule(domain: CompiledDomain, override: LimitOverride): CompiledRule {
    const cacheKey = `${domain.name}\u0000${override.requestsPerUnit}\u0000${override.unit}`;
    let rule = this.overrideRules.get(cacheKey);
    if (rule === undefined) {
      const limit = compileLimit({ requestsPerUnit: override.requestsPerUnit, unit: override.unit, algorithm: domain.algorithm });
      rule = Object.freeze({
        id: OVERRIDE_RULE_ID,
        limits: Object.freeze([compileRuleLimit(domain.name, limit, OVERRIDE_RULE_ID)]),
        unlimited: false,
        quotaMode: false,
        shadow: false,
        detailedMetric: false,
        replaces: [],
        sharedValues: undefined,
      });
      if (this.overrideRules.size >= MAX_CACHED_OVERRIDES) this.overrideRules.clear();
      this.overrideRules.set(cacheKey, rule);
    }
    return rule;
  }
}

/** A request's store batch and what the decision needs of it besides the outcomes (Limiter.plan). */
export interface RequestPlan {
  readonly rules: readonly (CompiledRule | undefined)[];
  /** Filled for descriptors without ops; decisionOf fills the rest. */
  readonly statuses: DescriptorStatus[];
  readonly ops: readonly BucketOp[];
  /** For op k: the descriptor it belongs to and the limit it applies. */
  readonly opIndex: readonly number[];
  readonly opLimits: readonly RuleLimit[];
}

const NO_OUTCOMES: StoreDecision = Object.freeze({ outcomes: [], fallback: undefined });

/**
 * The decision from a plan's outcomes (one per op, in order): one status per
 * limit, then per descriptor the most restrictive of its limits.
 */
export function decisionOf(plan: RequestPlan, result: StoreDecision): Decision {
  const { rules, statuses, ops, opIndex, opLimits } = plan;
  const { outcomes } = result;
  let overallCode: Decision['overallCode'] = 'OK';
  let shadowOverLimit = false;
  let quotaDescriptors = 0;
  let quotaDescriptorsOver = 0;
  let charges: DecisionCharges | undefined;
  for (let k = 0; k < ops.length; k++) {
    const op = ops[k]!;
    if (!chargesAlways(op)) continue;
    charges ??= { tokens: 0, intoDebt: 0 };
    charges.tokens += op.cost;
    if (op.limit.overdraft && outcomes[k]!.debt !== undefined) charges.intoDebt++;
  }
  for (let k = 0; k < ops.length;) {
    const i = opIndex[k]!;
    let end = k + 1;
    while (end < ops.length && opIndex[end] === i) end++;
    const rule = rules[i]!;
    let status = limitStatus(ops[k]!, outcomes[k]!, opLimits[k]!, rule);
    if (end - k > 1) {
      const all: DescriptorStatus[] = [status];
      for (let j = k + 1; j < end; j++) {
        const next = limitStatus(ops[j]!, outcomes[j]!, opLimits[j]!, rule);
        all.push(next);
        if (moreRestrictive(next, status)) status = next;
      }
      status = { ...status, limitStatuses: all };
    }
    statuses[i] = status;
    if (status.shadowOverLimit) shadowOverLimit = true;
    if (status.quota === true) {
      quotaDescriptors++;
      if (status.code === 'OVER_LIMIT') quotaDescriptorsOver++;
    } else if (status.code === 'OVER_LIMIT') {
      overallCode = 'OVER_LIMIT';
    }
    k = end;
  }
  // envoyproxy/ratelimit's quota_mode: over when every quota descriptor is.
  if (quotaDescriptors > 0 && quotaDescriptors === quotaDescriptorsOver) overallCode = 'OVER_LIMIT';
  const decidedBy = result.fallback !== undefined ? 'policy' : result.fromMirror === true ? 'mirror' : result.fromLease === true ? 'lease' : 'store';
  const decision: Decision = { overallCode, decidedBy, statuses, storeFailure: result.fallback, shadowOverLimit };
  if (charges !== undefined) decision.charges = charges;
  return decision;
}

const OVERRIDE_RULE_ID = 'limit_override';
const SECOND_US = 1_000_000;

/** Names every matched limit replaces (upstream: collected before any is dropped), or undefined. */
function replacedNames(rules: readonly (CompiledRule | undefined)[]): Set<string> | undefined {
  let replaced: Set<string> | undefined;
  for (const rule of rules) {
    if (rule === undefined || rule.replaces.length === 0) continue;
    replaced ??= new Set();
    for (const name of rule.replaces) replaced.add(name);
  }
  return replaced;
}

function sharedEntries(entries: readonly Entry[], shared: readonly (string | undefined)[]): Entry[] {
  return entries.map((entry, i) => {
    const value = shared[i];
    return value === undefined ? entry : { key: entry.key, value };
  });
}

/**
 * The status of one limit. A denial whose cost can never fit (above the
 * limit's capacity: burst, or requests_per_unit for windows; any cost when
 * requests_per_unit is 0) is `unsatisfiable`: no wait helps, and its
 * Retry-After is the limit's whole period rather than a wait that would
 * promise a success (a full bucket would say 1 s).
 */
function limitStatus(op: BucketOp, outcome: BucketOutcome, limit: RuleLimit, rule: CompiledRule): DescriptorStatus {
  const denied = !outcome.allowed;
  // A budget's charge and a report's are recorded anyway: their wait is the one computed, never "no wait helps".
  const unsatisfiable = denied && op.cost > op.limit.burst && !op.limit.overdraft && op.report !== true;
  const status: DescriptorStatus = {
    code: denied && !op.shadow ? 'OVER_LIMIT' : 'OK',
    limit: limit.reported,
    limitRemaining: outcome.remaining,
    durationUntilResetMs: Math.ceil(outcome.resetUs / 1000),
    retryAfterS: !denied ? 0 : Math.max(1, Math.ceil((unsatisfiable ? op.limit.unitUs : outcome.retryAfterUs) / SECOND_US)),
    shadowOverLimit: denied && op.shadow,
    shadow: op.shadow,
    rule: rule.id,
    policy: limit.policy,
  };
  if (outcome.debt !== undefined) status.debt = outcome.debt;
  if (outcome.leased !== undefined) status.leased = outcome.leased;
  if (op.quotaGroup !== undefined) status.quota = true;
  if (unsatisfiable) status.unsatisfiable = true;
  return status;
}

/** Denied beats allowed; among denied the longer wait, among allowed the fewer tokens left; ties keep the first. */
function moreRestrictive(candidate: DescriptorStatus, chosen: DescriptorStatus): boolean {
  const candidateDenied = candidate.code === 'OVER_LIMIT' || candidate.shadowOverLimit;
  const chosenDenied = chosen.code === 'OVER_LIMIT' || chosen.shadowOverLimit;
  if (candidateDenied !== chosenDenied) return candidateDenied;
  return candidateDenied ? candidate.retryAfterS > chosen.retryAfterS : candidate.limitRemaining < chosen.limitRemaining;
}
