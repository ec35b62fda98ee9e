import type { CompiledConfig, CompiledDomain } from './config-model.js';
import { bucketKey, encodeEntries, slotTagFor, type Digest } from './keys.js';
import { compileLimit } from './limit.js';
import { matchRule, type CompiledRule } from './rules.js';
import type { Store } from './store.js';
import type {
  BucketOp, BucketOutcome, Decision, DecisionRequest, Descriptor, DescriptorStatus, LimitOverride,
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
      const result = await this.options.store.apply(ops);
      outcomes = result.outcomes;
      storeFailure = result.fallback;
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
}
