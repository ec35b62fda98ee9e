import { StoreUnavailableError, errorMessage } from '../errors.js';
import type { Store } from '../store/store.js';
import type { CompiledConfig, CompiledDomain } from './config-model.js';
import { bucketKey, encodeEntries, slotTagFor, type Digest } from './keys.js';
import { compileLimit } from './limit.js';
import type { OverLimitCache } from './over-limit-cache.js';
import { compileRuleLimit, matchRule, type CompiledRule, type RuleLimit } from './rules.js';
import type {
  BucketOp, BucketOutcome, Decision, DecisionRequest, Descriptor, DescriptorStatus, Entry, LimitOverride, LimitSpec,
} from './types.js';

export type StoreFailurePolicy = 'local' | 'allow' | 'deny';

/** envoyproxy/ratelimit's limit_remaining for unlimited descriptors. */
export const UNLIMITED_REMAINING = 4_294_967_295;
const MAX_CACHED_OVERRIDES = 1_024;

export interface LimiterOptions {
  store: Store;
  /** Decides for the `local` policy when `store` fails (an in-process store). */
  fallbackStore: Store;
  onStoreFailure: StoreFailurePolicy;
  /** Local fallback limits are the configured ones divided by this (replicas). */
  fallbackDivisor: number;
  /** Global shadow mode: evaluate and count, never deny. */
  shadow: boolean;
  /** Prefix of every store key, e.g. "rl:". */
  keyPrefix: string;
  digest: Digest;
  /** Told about each store failure (for logs and metrics). */
  onStoreError?: (error: unknown) => void;
  /** Keys known to be empty are denied without a store call (see OverLimitCache). */
  overLimitCache?: OverLimitCache | undefined;
  /** Local monotonic clock, µs; only the over-limit cache uses it. */
  clockUs?: () => number;
  /**
   * Whether the store decides quota_mode (core/bucket.ts `commitPlan`). When
   * false, quota-mode descriptors are enforced as ordinary limits: that only
   * denies more than quota_mode would, never admits more. Default true.
   */
  quotaMode?: boolean;
}

const NO_LIMIT_STATUS: DescriptorStatus = Object.freeze({
  code: 'OK', limit: null, limitRemaining: 0, durationUntilResetMs: 0, retryAfterS: 0, shadowOverLimit: false,
  shadow: false, rule: undefined,
});

const UNLIMITED_STATUS_BASE = { ...NO_LIMIT_STATUS, limitRemaining: UNLIMITED_REMAINING };

/**
 * Turns a request into one store batch and the batch's outcomes into a
 * decision. Applies the store-failure policy. Pure but for the injected store.
 */
export class Limiter {
  private readonly options: LimiterOptions;
  private readonly overrideRules = new Map<string, CompiledRule>();
  private readonly dividedLimits = new WeakMap<LimitSpec, LimitSpec>();

  constructor(options: LimiterOptions) {
    this.options = options;
  }

  async decide(config: CompiledConfig, request: DecisionRequest): Promise<Decision> {
    const { descriptors } = request;
    const domain = config.domains.get(request.domain);
    const statuses: DescriptorStatus[] = new Array(descriptors.length);
    if (domain === undefined) {
      statuses.fill(NO_LIMIT_STATUS);
      return { overallCode: 'OK', statuses, storeFailure: undefined, shadowOverLimit: false };
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
      const quota = rule.quotaMode && this.options.quotaMode !== false;
      const first = ops.length;
      for (const limit of rule.limits) {
        // A limit named in another matched limit's `replaces` does not apply.
        if (replaced !== undefined && limit.spec.name !== undefined && replaced.has(limit.spec.name)) continue;
        const op: BucketOp = {
          key: bucketKey(this.options.keyPrefix, slotTag, limit.keyPrefix, encoded), slotTag, limit: limit.spec, cost, shadow,
        };
        if (quota) op.quotaGroup = i;
        ops.push(op);
        opIndex.push(i);
        opLimits.push(limit);
      }
      if (ops.length === first) statuses[i] = NO_LIMIT_STATUS;
    }
    let storeFailure: Decision['storeFailure'];
    let outcomes: BucketOutcome[] = [];
    if (ops.length > 0) {
      const cache = this.options.overLimitCache;
      const nowUs = cache === undefined ? 0 : this.options.clockUs!();
      const cached = cache === undefined ? undefined : deniedFromCache(cache, ops, nowUs);
      if (cached !== undefined) {
        outcomes = cached;
      } else {
        try {
          outcomes = await this.options.store.apply(ops);
          if (cache !== undefined) rememberEmpty(cache, ops, outcomes, nowUs);
        } catch (error: unknown) {
          this.options.onStoreError?.(error);
          storeFailure = this.options.onStoreFailure;
          outcomes = await this.decideWithoutStore(ops, error);
        }
      }
    }
    // One status per limit, then per descriptor the most restrictive of its limits.
    let overallCode: Decision['overallCode'] = 'OK';
    let shadowOverLimit = false;
    let quotaDescriptors = 0;
    let quotaDescriptorsOver = 0;
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
    return { overallCode, statuses, storeFailure, shadowOverLimit };
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

  private async decideWithoutStore(ops: readonly BucketOp[], error: unknown): Promise<BucketOutcome[]> {
    switch (this.options.onStoreFailure) {
      case 'deny':
        throw new StoreUnavailableError(`store unavailable: ${errorMessage(error)}`, { cause: error });
      case 'allow':
        return ops.map((op) => ({ allowed: true, remaining: op.limit.burst, resetUs: 0, retryAfterUs: 0 }));
      case 'local':
        return this.options.fallbackStore.apply(
          this.options.fallbackDivisor > 1 ? ops.map((op) => ({ ...op, limit: this.divided(op.limit) })) : ops,
        );
    }
  }

  private divided(limit: LimitSpec): LimitSpec {
    let divided = this.dividedLimits.get(limit);
    if (divided === undefined) {
      const divisor = this.options.fallbackDivisor;
      const share = (n: number): number => (n === 0 ? 0 : Math.max(1, Math.floor(n / divisor)));
      divided = compileLimit({
        requestsPerUnit: share(limit.requestsPerUnit),
        burst: share(limit.burst),
        unit: limit.unit,
        unitMultiplier: limit.unitMultiplier,
        algorithm: limit.algorithm,
        name: limit.name,
      });
      this.dividedLimits.set(limit, divided);
    }
    return divided;
  }
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
  const unsatisfiable = denied && op.cost > op.limit.burst;
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

/**
 * Outcomes of a request the over-limit cache can answer alone, or undefined.
 * Only when EVERY op of the request is an enforced take (cost >= 1) on a key
 * known to be empty: then every status is truly OVER_LIMIT with 0 remaining,
 * and skipping the store changes no reported number. Any other request (a
 * check-only or shadow op, or one key with tokens) goes to the store.
 */
function deniedFromCache(cache: OverLimitCache, ops: readonly BucketOp[], nowUs: number): BucketOutcome[] | undefined {
  const outcomes: BucketOutcome[] = new Array(ops.length);
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.shadow || op.cost === 0) return undefined;
    const empty = cache.emptyUntil(op.key, nowUs);
    if (empty === undefined) return undefined;
    outcomes[i] = { allowed: false, remaining: 0, resetUs: empty.fullAtUs - nowUs, retryAfterUs: empty.untilUs - nowUs };
  }
  return outcomes;
}

/** A cost-1 denial from the store says: no token until retryAfterUs from now. */
function rememberEmpty(cache: OverLimitCache, ops: readonly BucketOp[], outcomes: readonly BucketOutcome[], nowUs: number): void {
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const outcome = outcomes[i]!;
    if (!outcome.allowed && !op.shadow && op.cost === 1 && outcome.retryAfterUs > 0) {
      cache.remember(op.key, { untilUs: nowUs + outcome.retryAfterUs, fullAtUs: nowUs + outcome.resetUs });
    }
  }
}
