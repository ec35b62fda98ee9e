// Compiles validated config files into the matcher the hot path walks:
// every limit's integer math, bucket key prefix, header policy and metric
// label are computed here once, so a request only looks things up. Problems
// that only compiling reveals are collected, not thrown one by one, so
// `check-config` can report them all. The walk is a generator that pauses
// after each descriptor node: a reload compiles a large config on the event
// loop in short slices (compile-off-thread.ts), start-up runs it to the end.
import { InternalError, LimitSpecError, type ConfigProblem } from '../errors.js';
import type { CompiledDomain, HttpAction } from '../core/config-model.js';
import { compileLimit } from '../core/limit.js';
import { compileRuleLimit, exactKey, type CompiledRule, type RuleLimit, type RuleNode, type WildcardChild } from '../core/rules.js';
import type { Algorithm } from '../core/types.js';
import { compositeKey, describeComposite, type ConfigFile, type DescriptorNodeConfig, type HttpActionConfig, type RateLimitConfig } from './schema.js';

interface FileContext {
  file: string;
  domain: string;
  algorithm: Algorithm;
  problems: ConfigProblem[];
}

/** One validated file. */
export interface ValidatedFile {
  file: string;
  config: ConfigFile;
  /** The parsed file as JSON, frozen (GET /v1/config). */
  document: unknown;
}

function report(ctx: FileContext, path: string, problem: string): void {
  ctx.problems.push({ file: ctx.file, path, problem });
}

/** Metric label segment of a node, as envoyproxy/ratelimit's stats key: `key` or `key_value`. */
function labelSegment(node: DescriptorNodeConfig): string {
  return node.value === undefined || node.value === '' ? node.key : `${node.key}_${node.value}`;
}

function compileOneLimit(ctx: FileContext, config: RateLimitConfig, path: string, ruleId: string): RuleLimit | undefined {
  const algorithm = config.algorithm ?? ctx.algorithm;
  // Windows have no bucket capacity: a burst there would be silently ignored.
  if (config.burst !== undefined && algorithm !== 'token_bucket') {
    report(ctx, `${path}.burst`, `applies only to token_bucket limits (this limit uses ${algorithm})`);
    return undefined;
  }
  if (config.scope === 'global' && algorithm !== 'token_bucket') {
    // Leases move tokens of a bucket between regions; a window's count has no such tokens to move.
    report(ctx, `${path}.scope`, `global applies only to token_bucket limits (this limit uses ${algorithm})`);
    return undefined;
  }
  if (config.overdraft === true) {
    // A budget's balance goes below zero: only a token bucket has one.
    const problem = algorithm !== 'token_bucket' ? `applies only to token_bucket limits (this limit uses ${algorithm})`
      : config.requests_per_unit === 0 ? 'needs requests_per_unit above 0 (refills pay the debt)'
        : config.scope === 'global' ? 'is not supported on scope: global limits' : undefined;
    if (problem !== undefined) {
      report(ctx, `${path}.overdraft`, problem);
      return undefined;
    }
  }
  try {
    const name = config.name === '' ? undefined : config.name;
    const spec = compileLimit({
      // The schema's refinement guarantees both when not unlimited.
      requestsPerUnit: config.requests_per_unit!,
      unit: config.unit!,
      unitMultiplier: config.unit_multiplier,
      burst: config.burst,
      algorithm,
      name,
      scope: config.scope,
      overdraft: config.overdraft,
    });
    return compileRuleLimit(ctx.domain, spec, name ?? ruleId);
  } catch (error: unknown) {
    if (error instanceof LimitSpecError) {
      const hint = algorithm === 'token_bucket' ? 'lower burst or requests_per_unit, or use a shorter unit' : 'lower requests_per_unit, or use a shorter period';
      report(ctx, path, `cannot be computed exactly in integers: ${error.message} (${hint})`);
      return undefined;
    }
    throw error;
  }
}

function compileRule(
  ctx: FileContext,
  node: DescriptorNodeConfig,
  id: string,
  path: string,
  sharedValues: readonly (string | undefined)[],
): CompiledRule | undefined {
  const configs: { config: RateLimitConfig; path: string }[] = [];
  if (node.rate_limit !== undefined) configs.push({ config: node.rate_limit, path: `${path}.rate_limit` });
  (node.rate_limits ?? []).forEach((config, i) => configs.push({ config, path: `${path}.rate_limits[${i}]` }));
  if (configs.length === 0) return undefined;
  const unlimited = node.rate_limit?.unlimited === true;
  const limits: RuleLimit[] = [];
  const seen = new Map<string, string>();
  let broken = false;
  if (!unlimited) {
    for (const { config, path: limitPath } of configs) {
      const limit = compileOneLimit(ctx, config, limitPath, id);
      if (limit === undefined) {
        broken = true;
        continue;
      }
      const twin = seen.get(limit.spec.fingerprint);
      if (twin !== undefined) {
        // Equal parameters would mean one bucket charged twice per request.
        report(ctx, limitPath, `duplicate limit: the same numbers as ${twin} (the two would share one bucket)`);
        broken = true;
        continue;
      }
      seen.set(limit.spec.fingerprint, limitPath.slice(path.length + 1));
      limits.push(limit);
    }
  }
  if (broken) return undefined;
  const replaces = new Set<string>();
  for (const { config } of configs) for (const entry of config.replaces ?? []) replaces.add(entry.name);
  return Object.freeze({
    id,
    limits: Object.freeze(limits),
    unlimited,
    quotaMode: node.quota_mode === true,
    shadow: node.shadow_mode === true,
    detailedMetric: node.detailed_metric === true,
    replaces: Object.freeze([...replaces]),
    sharedValues: sharedValues.some((value) => value !== undefined) ? Object.freeze([...sharedValues]) : undefined,
  });
}

/** A compile in steps: each `yield` is a point where the caller may pause; the return value is the result. */
export type CompileSteps<T> = Generator<void, T, void>;

/** Runs `steps` to the end at once. */
function runToEnd<T>(steps: CompileSteps<T>): T {
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
  }
}

/** Every leaf shares these (most nodes are leaves): two Maps per leaf were a fifth of a large config's memory. */
const NO_CHILDREN: ReadonlyMap<string, RuleNode> = new Map();
const NO_WILDCARDS: readonly WildcardChild[] = Object.freeze([]);

function* compileLevel(
  ctx: FileContext,
  nodes: readonly DescriptorNodeConfig[],
  parentId: string,
  parentPath: string,
  rule: CompiledRule | undefined,
  sharedValues: readonly (string | undefined)[],
): CompileSteps<RuleNode> {
  const exact = new Map<string, RuleNode>();
  const wildcards: WildcardChild[] = [];
  const keyOnly = new Map<string, RuleNode>();
  for (const [i, node] of nodes.entries()) {
    const path = `${parentPath}descriptors[${i}]`;
    const id = parentId === '' ? labelSegment(node) : `${parentId}.${labelSegment(node)}`;
    const value = node.value ?? '';
    const wildcard = value.includes('*');
    // share_threshold: this entry's value in bucket keys is the wildcard itself (one shared bucket).
    const shared = [...sharedValues, wildcard && node.share_threshold === true ? value : undefined];
    const child = yield* compileLevel(ctx, node.descriptors ?? [], id, `${path}.`, compileRule(ctx, node, id, path, shared), shared);
    // Sibling uniqueness is checked by the schema; these maps cannot collide.
    if (value === '') keyOnly.set(node.key, child);
    else if (wildcard) wildcards.push(Object.freeze({ key: node.key, parts: Object.freeze(value.split('*')), node: child }));
    else exact.set(exactKey(node.key, value), child);
    yield;
  }
  if (nodes.length === 0) return Object.freeze({ rule, exact: NO_CHILDREN, wildcards: NO_WILDCARDS, keyOnly: NO_CHILDREN });
  return Object.freeze({ rule, exact, wildcards: Object.freeze(wildcards), keyOnly });
}

function compileAction(action: HttpActionConfig): HttpAction {
  if (action.request_headers !== undefined) {
    const { header_name, descriptor_key, skip_if_absent } = action.request_headers;
    // Header names are case-insensitive; the request side looks them up in lower case.
    return { type: 'request_headers', headerName: header_name.toLowerCase(), descriptorKey: descriptor_key, skipIfAbsent: skip_if_absent === true };
  }
  if (action.remote_address !== undefined) return { type: 'remote_address' };
  if (action.masked_remote_address !== undefined) {
    const masks = action.masked_remote_address ?? {};
    return {
      type: 'masked_remote_address',
      v4PrefixMaskLen: masks.v4_prefix_mask_len ?? 32,
      v6PrefixMaskLen: masks.v6_prefix_mask_len ?? 128,
    };
  }
  if (action.generic_key !== undefined) {
    return {
      type: 'generic_key',
      descriptorKey: action.generic_key.descriptor_key ?? 'generic_key',
      descriptorValue: action.generic_key.descriptor_value,
    };
  }
  if (action.query_parameters !== undefined) {
    const { query_parameter_name, descriptor_key, skip_if_absent } = action.query_parameters;
    return { type: 'query_parameters', queryParameterName: query_parameter_name, descriptorKey: descriptor_key, skipIfAbsent: skip_if_absent === true };
  }
  // The schema requires exactly one action type.
  throw new InternalError('unreachable: action without a type');
}

/**
 * Compiles the files of one domain: one file, or several with
 * `--merge-domains` (envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG), whose
 * top-level descriptors are joined as one list (a descriptor defined in two
 * files is a duplicate, as upstream) and whose `http.descriptors` are joined
 * in file order. Each file's `algorithm` is the default of its own limits;
 * RLS limit overrides use the first file's. Returns the domain, or undefined
 * when `problems` received what only compiling reveals (burst on a window,
 * unrepresentable numbers, duplicates).
 */
export function compileDomain(
  files: readonly ValidatedFile[],
  problems: ConfigProblem[],
): CompiledDomain | undefined {
  return runToEnd(compileDomainSteps(files, problems));
}

/** compileDomain in steps, pausing after each descriptor node. */
export function* compileDomainSteps(
  files: readonly ValidatedFile[],
  problems: ConfigProblem[],
): CompileSteps<CompiledDomain | undefined> {
  const first = files[0];
  if (first === undefined) throw new InternalError('compileDomain needs at least one file');
  const name = first.config.domain;
  const before = problems.length;
  const exact = new Map<string, RuleNode>();
  const wildcards: WildcardChild[] = [];
  const keyOnly = new Map<string, RuleNode>();
  const topLevel = new Map<string, { file: string; index: number }>();
  for (const { file, config } of files) {
    const ctx: FileContext = { file, domain: name, algorithm: config.algorithm ?? 'token_bucket', problems };
    const nodes = config.descriptors ?? [];
    // Duplicates within one file are the schema's; across merged files, ours.
    const kept = nodes.filter((node, index) => {
      const composite = compositeKey(node);
      const earlier = topLevel.get(composite);
      if (earlier !== undefined && earlier.file !== file) {
        report(ctx, `descriptors[${index}]`,
          `duplicate descriptor: ${describeComposite(node)} is already defined in ${earlier.file} at descriptors[${earlier.index}]`);
        return false;
      }
      if (earlier === undefined) topLevel.set(composite, { file, index });
      return true;
    });
    const root = yield* compileLevel(ctx, nodes, '', '', undefined, []);
    for (const node of kept) {
      const value = node.value ?? '';
      if (value === '') keyOnly.set(node.key, root.keyOnly.get(node.key)!);
      else if (!value.includes('*')) exact.set(exactKey(node.key, value), root.exact.get(exactKey(node.key, value))!);
    }
    for (const wildcard of root.wildcards) {
      if (kept.some((node) => node.key === wildcard.key && node.value === wildcard.parts.join('*'))) wildcards.push(wildcard);
    }
  }
  if (problems.length > before) return undefined;
  const httpDescriptors = files.flatMap(({ config }) => (config.http?.descriptors ?? []).map((actions) =>
    Object.freeze(actions.map((action) => Object.freeze(compileAction(action))))));
  return Object.freeze({
    name,
    source: files.map(({ file }) => file).join(', '),
    algorithm: first.config.algorithm ?? 'token_bucket',
    root: Object.freeze({ rule: undefined, exact, wildcards: Object.freeze(wildcards), keyOnly }),
    httpDescriptors: Object.freeze(httpDescriptors),
    document: files.length === 1
      ? first.document
      : Object.freeze({ domain: name, merged_from: Object.freeze(files.map(({ file, document }) => Object.freeze({ file, config: document }))) }),
  });
}
