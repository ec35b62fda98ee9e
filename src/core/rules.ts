import { headerPolicy } from './response-headers.js';
import type { Entry, HeaderPolicy, LimitSpec, ReportedLimit } from './types.js';

/** One limit of a rule, with everything the hot path needs built at load. */
export interface RuleLimit {
  spec: LimitSpec;
  /** The key prefix of this limit's buckets: `<domain length>:<domain>:<fingerprint>`. */
  keyPrefix: string;
  /** The limit's `name`, else the rule path: its name in draft-10 headers. */
  policyName: string;
  policy: HeaderPolicy;
  /** What statuses report about it. */
  reported: ReportedLimit;
}

/** What a config node says about the descriptors that end on it. */
export interface CompiledRule {
  /** Metric label and error-message path, from config only (e.g. "path_/rating.api_key"). */
  id: string;
  /** Every limit that applies (`rate_limit` then `rate_limits`, in config order); empty when unlimited. */
  limits: readonly RuleLimit[];
  /** `unlimited: true`: always OK, touches no store. */
  unlimited: boolean;
  /** envoyproxy/ratelimit's quota_mode: over only when every quota descriptor of the request is. */
  quotaMode: boolean;
  shadow: boolean;
  detailedMetric: boolean;
  /** Names of limits (of other descriptors) that this rule's limits replace when both match one request. */
  replaces: readonly string[];
  /**
   * share_threshold: per entry index, the wildcard value that stands for the
   * request's value in bucket keys (one shared bucket); undefined when none.
   */
  sharedValues: readonly (string | undefined)[] | undefined;
}

/** Builds a rule's limit once: its key prefix, header policy and reported form. */
export function compileRuleLimit(domain: string, spec: LimitSpec, policyName: string): RuleLimit {
  const reported: ReportedLimit = {
    requestsPerUnit: spec.requestsPerUnit, unit: spec.unit, name: spec.name, burst: spec.burst,
  };
  if (spec.unitMultiplier !== 1) reported.unitMultiplier = spec.unitMultiplier;
  return Object.freeze({
    spec,
    keyPrefix: `${domain.length}:${domain}:${spec.fingerprint}`,
    policyName,
    policy: headerPolicy(policyName, spec),
    reported: Object.freeze(reported),
  });
}

/** A wildcard value: `*` matches any run of characters (envoyproxy/ratelimit). */
export interface WildcardChild {
  key: string;
  /** The pattern split on `*`; ["a", ""] for "a*". */
  parts: readonly string[];
  node: RuleNode;
}

export interface RuleNode {
  rule: CompiledRule | undefined;
  /** Children matched by key and exact value; map key = `${key}\u0000${value}`. */
  exact: ReadonlyMap<string, RuleNode>;
  /** Children matched by key and a wildcard value, in config order. */
  wildcards: readonly WildcardChild[];
  /** Children matched by key alone (no `value` in config). */
  keyOnly: ReadonlyMap<string, RuleNode>;
}

/**
 * A node compiled on first use. A reload builds the new config's nodes this
 * way (config/compile-domain.ts): the event loop then makes one small object
 * per node instead of every limit's compiled form at once, which on large
 * configs cost garbage-collection pauses of 10-20 ms while decisions waited
 * (docs/configuration.md, "Hot reload"). Reads through it give what the
 * compiled node holds; `compile` runs once.
 */
export abstract class LazyRuleNode implements RuleNode {
  private compiled: RuleNode | undefined;

  /** The node; called once. */
  protected abstract compile(): RuleNode;

  private get node(): RuleNode {
    this.compiled ??= this.compile();
    return this.compiled;
  }

  /** Whether the node has been compiled (tests). */
  get isCompiled(): boolean {
    return this.compiled !== undefined;
  }

  get rule(): CompiledRule | undefined {
    return this.node.rule;
  }

  get exact(): ReadonlyMap<string, RuleNode> {
    return this.node.exact;
  }

  get wildcards(): readonly WildcardChild[] {
    return this.node.wildcards;
  }

  get keyOnly(): ReadonlyMap<string, RuleNode> {
    return this.node.keyOnly;
  }
}

export function exactKey(key: string, value: string): string {
  return `${key}\u0000${value}`;
}

function wildcardMatch(parts: readonly string[], value: string): boolean {
  if (parts.length === 1) return parts[0] === value;
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (value.length < parts.reduce((n, p) => n + p.length, 0)) return false;
  if (!value.startsWith(first) || !value.endsWith(last)) return false;
  let at = first.length;
  const end = value.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const found = value.indexOf(parts[i]!, at);
    if (found < 0 || found + parts[i]!.length > end) return false;
    at = found + parts[i]!.length;
  }
  return true;
}

/**
 * Finds the rule for one descriptor with envoyproxy/ratelimit's semantics: at
 * each level an exact key+value child wins over a wildcard value, which wins
 * over a key-only child; a rule applies only at the level of the descriptor's
 * last entry; a descriptor deeper than the tree matches nothing.
 */
export function matchRule(root: RuleNode, entries: readonly Entry[]): CompiledRule | undefined {
  let node: RuleNode = root;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    let next = node.exact.get(exactKey(entry.key, entry.value));
    if (next === undefined) {
      for (const child of node.wildcards) {
        if (child.key === entry.key && wildcardMatch(child.parts, entry.value)) {
          next = child.node;
          break;
        }
      }
    }
    if (next === undefined) next = node.keyOnly.get(entry.key);
    if (next === undefined) return undefined;
    if (i === entries.length - 1) return next.rule;
    node = next;
  }
  return undefined;
}
