import { StoreUnavailableError, errorMessage } from '../errors.js';
import type { Store } from '../store/store.js';
import type { CompiledConfig, CompiledDomain } from './config-model.js';
import { bucketKey, encodeEntries, slotTagFor, type Digest } from './keys.js';
import { compileLimit } from './limit.js';
import type { OverLimitCache } from './over-limit-cache.js';
import { matchRule, type CompiledRule } from './rules.js';
import type {
  BucketOp, BucketOutcome, Decision, DecisionRequest, Descriptor, DescriptorStatus, LimitOverride, LimitSpec,
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
    const requestCost = request.hitsAddend === undefined || request.hitsAddend === 0 ? 1 : request.hitsAddend;
    const ops: BucketOp[] = [];
    const opIndex: number[] = [];
    for (let i = 0; i < descriptors.length; i++) {
      const rule = rules[i];
      if (rule === undefined) {
        statuses[i] = NO_LIMIT_STATUS;
      } else if (rule.limit === undefined) {
        statuses[i] = { ...UNLIMITED_STATUS_BASE, rule: rule.id };
      } else {
        const descriptor = descriptors[i]!;
        const entries = descriptor.entries;
        const slotTag = slotTagFor(entries);
        ops.push({
          key: bucketKey(this.options.keyPrefix, slotTag, rule.keyPrefix, encodeEntries(entries, this.options.digest)),
          slotTag,
          limit: rule.limit,
          cost: descriptor.hitsAddend ?? requestCost,
          shadow: rule.shadow || this.options.shadow,
        });
        opIndex.push(i);
      }
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
    let overallCode: Decision['overallCode'] = 'OK';
    let shadowOverLimit = false;
    for (let k = 0; k < ops.length; k++) {
      const op = ops[k]!;
      const outcome = outcomes[k]!;
      const rule = rules[opIndex[k]!]!;
      const denied = !outcome.allowed;
      const status: DescriptorStatus = {
        code: denied && !op.shadow ? 'OVER_LIMIT' : 'OK',
        limit: { requestsPerUnit: op.limit.requestsPerUnit, unit: op.limit.unit, name: op.limit.name, burst: op.limit.burst },
        limitRemaining: outcome.remaining,
        durationUntilResetMs: Math.ceil(outcome.resetUs / 1000),
        retryAfterS: denied ? Math.max(1, Math.ceil(outcome.retryAfterUs / 1_000_000)) : 0,
        shadowOverLimit: denied && op.shadow,
        shadow: op.shadow,
        rule: rule.id,
      };
      if (status.code === 'OVER_LIMIT') overallCode = 'OVER_LIMIT';
      if (status.shadowOverLimit) shadowOverLimit = true;
      statuses[opIndex[k]!] = status;
    }
    return { overallCode, statuses, storeFailure, shadowOverLimit };
  }

  private matchRules(domain: CompiledDomain, descriptors: readonly Descriptor[]): (CompiledRule | undefined)[] {
    const rules: (CompiledRule | undefined)[] = new Array(descriptors.length);
    let replaced: Set<string> | undefined;
    for (let i = 0; i < descriptors.length; i++) {
      const descriptor = descriptors[i]!;
      const rule = descriptor.limitOverride !== undefined
        ? this.overrideRule(domain, descriptor.limitOverride)
        : matchRule(domain.root, descriptor.entries);
      rules[i] = rule;
      if (rule !== undefined && rule.replaces.length > 0) {
        replaced ??= new Set();
        for (const name of rule.replaces) replaced.add(name);
      }
    }
    if (replaced !== undefined) {
      // A limit named in another matched limit's `replaces` does not apply.
      for (let i = 0; i < rules.length; i++) {
        const name = rules[i]?.limit?.name;
        if (name !== undefined && replaced.has(name)) rules[i] = undefined;
      }
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
        id: 'limit_override',
        limit,
        keyPrefix: `${domain.name.length}:${domain.name}:${limit.fingerprint}`,
        shadow: false,
        detailedMetric: false,
        replaces: [],
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
        algorithm: limit.algorithm,
        name: limit.name,
      });
      this.dividedLimits.set(limit, divided);
    }
    return divided;
  }
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
