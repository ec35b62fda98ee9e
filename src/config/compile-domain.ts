// Compiles validated config files into the matcher the hot path walks:
// every limit's integer math, bucket key prefix, header policy and metric
// label are computed here once, so a request only looks things up. Problems
// that only compiling reveals are collected, not thrown one by one, so
// `check-config` can report them all. The walk is a generator that pauses
// after each descriptor node: a reload builds a large config on the event
// loop in short slices (compile-off-thread.ts), start-up runs it to the end.
// A reload's nodes compile on first use (CompileMode).
import { InternalError, LimitSpecError, type ConfigProblem } from '../errors.js';
import type { CompiledDomain, HttpAction } from '../core/config-model.js';
import { compileLimit } from '../core/limit.js';
import { LazyRuleNode, compileRuleLimit, exactKey, type CompiledRule, type RuleLimit, type RuleNode, type WildcardChild } from '../core/rules.js';
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
  /**
   * The parsed file as JSON, frozen (GET /v1/config). A function: after a
   * reload the document is parsed only when first asked for (transfer.ts).
   */
  readDocument: () => unknown;
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

/**
 * How a level's children are compiled: 'eager' compiles the whole tree now
 * (start-up, check-config, and the reload worker's check, which finds every
 * problem); 'lazy' makes each child a LazyRuleNode that compiles itself, and
 * its own children lazily, on first use. A reload's event-loop side is lazy:
 * it has only the top level's small placeholders to build, between requests.
 */
export type CompileMode = 'eager' | 'lazy';

function* compileLevel(
  ctx: FileContext,
  nodes: readonly DescriptorNodeConfig[],
  parentId: string,
  parentPath: string,
  rule: CompiledRule | undefined,
  sharedValues: readonly (string | undefined)[],
  mode: CompileMode,
): CompileSteps<RuleNode> {
  const exact = new Map<string, RuleNode>();
  const wildcards: WildcardChild[] = [];
  const keyOnly = new Map<string, RuleNode>();
  for (const [i, node] of nodes.entries()) {
    const child = mode === 'eager'
      ? yield* compileNode(ctx, node, i, parentId, parentPath, sharedValues, mode)
      : new LazyDescriptorNode(ctx, node, i, parentId, parentPath, sharedValues);
    const value = node.value ?? '';
    // Sibling uniqueness is checked by the schema; these maps cannot collide.
    if (value === '') keyOnly.set(node.key, child);
    else if (value.includes('*')) wildcards.push(Object.freeze({ key: node.key, parts: Object.freeze(value.split('*')), node: child }));
    else exact.set(exactKey(node.key, value), child);
    yield;
  }
  if (nodes.length === 0) return Object.freeze({ rule, exact: NO_CHILDREN, wildcards: NO_WILDCARDS, keyOnly: NO_CHILDREN });
  return Object.freeze({ rule, exact, wildcards: Object.freeze(wildcards), keyOnly });
}

/** One node (its rule and its children), the `index`-th child of the node at `parentId` / `parentPath`. */
function* compileNode(
  ctx: FileContext,
  node: DescriptorNodeConfig,
  index: number,
  parentId: string,
  parentPath: string,
  sharedValues: readonly (string | undefined)[],
  mode: CompileMode,
): CompileSteps<RuleNode> {
  const path = `${parentPath}descriptors[${index}]`;
  const id = parentId === '' ? labelSegment(node) : `${parentId}.${labelSegment(node)}`;
  const value = node.value ?? '';
  // share_threshold: this entry's value in bucket keys is the wildcard itself (one shared bucket).
  const shared = [...sharedValues, value.includes('*') && node.share_threshold === true ? value : undefined];
  return yield* compileLevel(ctx, node.descriptors ?? [], id, `${path}.`, compileRule(ctx, node, id, path, shared), shared, mode);
}

/**
 * compileNode on first use. The files were checked whole before (the reload
 * worker compiled them eagerly), so a problem here is an InternalError, not
 * a config error; it cannot arise from a checked file. One object per node
 * holds what compiling needs (a closure would take two more).
 */
class LazyDescriptorNode extends LazyRuleNode {
  constructor(
    private readonly ctx: FileContext,
    private config: DescriptorNodeConfig | undefined,
    private readonly index: number,
    private readonly parentId: string,
    private readonly parentPath: string,
    private readonly sharedValues: readonly (string | undefined)[],
  ) {
    super();
  }

  protected compile(): RuleNode {
    const problems: ConfigProblem[] = [];
    const compiled = runToEnd(compileNode({ ...this.ctx, problems }, this.config!, this.index, this.parentId, this.parentPath, this.sharedValues, 'lazy'));
    if (problems.length > 0) {
      throw new InternalError(`a checked config failed to compile: ${problems.map(({ path, problem }) => `${path}: ${problem}`).join('; ')}`);
    }
    // The node's config is not needed again.
    this.config = undefined;
    return compiled;
  }
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
  return runToEnd(compileDomainSteps(files, problems, 'eager'));
}

/** compileDomain in steps, pausing after each descriptor node it compiles (`mode`: see CompileMode). */
export function* compileDomainSteps(
  files: readonly ValidatedFile[],
  problems: ConfigProblem[],
  mode: CompileMode,
): CompileSteps<CompiledDomain | undefined> {
  const first = files[0];
  if (first === undefined) throw new InternalError('compileDomain needs at least one file');
  const name = first.config.domain;
  const before = problems.length;
  const contextOf = ({ file, config }: ValidatedFile): FileContext =>
    ({ file, domain: name, algorithm: config.algorithm ?? 'token_bucket', problems });
  // One file (the usual case) has no duplicates across files: its top level is the domain's.
  const root = files.length === 1
    ? yield* compileLevel(contextOf(first), first.config.descriptors ?? [], '', '', undefined, [], mode)
    : yield* mergedRoot(files, contextOf, mode);
  if (problems.length > before) return undefined;
  const httpDescriptors = files.flatMap(({ config }) => (config.http?.descriptors ?? []).map((actions) =>
    Object.freeze(actions.map((action) => Object.freeze(compileAction(action))))));
  // Only these are kept for the document, not the files' config trees.
  const readers = files.map(({ file, readDocument }) => ({ file, readDocument }));
  let document: unknown;
  return Object.freeze({
    name,
    source: files.map(({ file }) => file).join(', '),
    algorithm: first.config.algorithm ?? 'token_bucket',
    root,
    httpDescriptors: Object.freeze(httpDescriptors),
    get document(): unknown {
      document ??= readers.length === 1
        ? readers[0]!.readDocument()
        : Object.freeze({ domain: name, merged_from: Object.freeze(readers.map(({ file, readDocument }) => Object.freeze({ file, config: readDocument() }))) });
      return document;
    },
  });
}

/** The top level of several files of one domain (--merge-domains): each descriptor from the first file that defines it. */
function* mergedRoot(
  files: readonly ValidatedFile[],
  contextOf: (file: ValidatedFile) => FileContext,
  mode: CompileMode,
): CompileSteps<RuleNode> {
  const exact = new Map<string, RuleNode>();
  const wildcards: WildcardChild[] = [];
  const keyOnly = new Map<string, RuleNode>();
  const topLevel = new Map<string, { file: string; index: number }>();
  for (const validated of files) {
    const { file, config } = validated;
    const ctx = contextOf(validated);
    const nodes = config.descriptors ?? [];
    // Duplicates within one file are the schema's; across merged files, ours.
    const kept: DescriptorNodeConfig[] = [];
    for (const [index, node] of nodes.entries()) {
      const composite = compositeKey(node);
      const earlier = topLevel.get(composite);
      if (earlier !== undefined && earlier.file !== file) {
        report(ctx, `descriptors[${index}]`,
          `duplicate descriptor: ${describeComposite(node)} is already defined in ${earlier.file} at descriptors[${earlier.index}]`);
        continue;
      }
      if (earlier === undefined) topLevel.set(composite, { file, index });
      kept.push(node);
    }
    const root = yield* compileLevel(ctx, nodes, '', '', undefined, [], mode);
    for (const node of kept) {
      const value = node.value ?? '';
      if (value === '') keyOnly.set(node.key, root.keyOnly.get(node.key)!);
      else if (!value.includes('*')) exact.set(exactKey(node.key, value), root.exact.get(exactKey(node.key, value))!);
      yield;
    }
    for (const wildcard of root.wildcards) {
      if (kept.some((node) => node.key === wildcard.key && node.value === wildcard.parts.join('*'))) wildcards.push(wildcard);
    }
  }
  return Object.freeze({ rule: undefined, exact, wildcards: Object.freeze(wildcards), keyOnly });
}
