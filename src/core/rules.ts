import type { Entry, LimitSpec } from './types.js';

/** What a config node says about the descriptors that end on it. */
export interface CompiledRule {
  /** Metric label and error-message path, from config only (e.g. "path_/rating.api_key"). */
  id: string;
  /** undefined = `unlimited: true` (always OK, touches no store). */
  limit: LimitSpec | undefined;
  /** The key prefix of this rule's buckets: `<domain length>:<domain>:<fingerprint>`, built once at load. */
  keyPrefix: string;
  shadow: boolean;
  detailedMetric: boolean;
  /** Names of limits this one replaces when both match one request. */
  replaces: readonly string[];
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

export function exactKey(key: string, value: string): string {
  return `${key}\u0000${value}`;
}

export function wildcardMatch(parts: readonly string[], value: string): boolean {
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
