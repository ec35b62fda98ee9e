// Compiles one validated config file into the matcher the hot path walks:
// every limit's integer math, bucket key prefix and metric label are computed
// here once, so a request only looks things up.
import { ConfigError, InternalError, LimitSpecError } from '../errors.js';
import type { CompiledDomain, HttpAction } from '../core/config-model.js';
import { compileLimit } from '../core/limit.js';
import { exactKey, type CompiledRule, type RuleNode, type WildcardChild } from '../core/rules.js';
import type { Algorithm, LimitSpec } from '../core/types.js';
import type { ConfigFile, DescriptorNodeConfig, HttpActionConfig } from './schema.js';

interface DomainContext {
  file: string;
  domain: string;
  algorithm: Algorithm;
}

/** Metric label segment of a node, as envoyproxy/ratelimit's stats key: `key` or `key_value`. */
function labelSegment(node: DescriptorNodeConfig): string {
  return node.value === undefined || node.value === '' ? node.key : `${node.key}_${node.value}`;
}

function compileRule(ctx: DomainContext, node: DescriptorNodeConfig, id: string, path: string): CompiledRule | undefined {
  const config = node.rate_limit;
  if (config === undefined) return undefined;
  const domainPrefix = `${ctx.domain.length}:${ctx.domain}`;
  let limit: LimitSpec | undefined;
  if (config.unlimited !== true) {
    const algorithm = config.algorithm ?? ctx.algorithm;
    // Fixed windows have no bucket capacity: a burst there would be silently ignored.
    if (config.burst !== undefined && algorithm !== 'token_bucket') {
      throw new ConfigError(ctx.file, `${path}.rate_limit.burst`,
        `applies only to token_bucket limits (this limit uses ${algorithm})`);
    }
    try {
      limit = compileLimit({
        // The schema's refinement guarantees both when not unlimited.
        requestsPerUnit: config.requests_per_unit!,
        unit: config.unit!,
        burst: config.burst,
        algorithm,
        name: config.name === '' ? undefined : config.name,
      });
    } catch (error: unknown) {
      if (error instanceof LimitSpecError) {
        throw new ConfigError(ctx.file, `${path}.rate_limit`, `cannot be computed exactly in integers: ${error.message} (lower burst or requests_per_unit, or use a shorter unit)`);
      }
      throw error;
    }
  }
  return Object.freeze({
    id,
    limit,
    keyPrefix: limit === undefined ? `${domainPrefix}:unlimited` : `${domainPrefix}:${limit.fingerprint}`,
    shadow: node.shadow_mode === true,
    detailedMetric: node.detailed_metric === true,
    replaces: Object.freeze((config.replaces ?? []).map((entry) => entry.name)),
  });
}

function compileLevel(
  ctx: DomainContext,
  nodes: readonly DescriptorNodeConfig[],
  parentId: string,
  parentPath: string,
  rule: CompiledRule | undefined,
): RuleNode {
  const exact = new Map<string, RuleNode>();
  const wildcards: WildcardChild[] = [];
  const keyOnly = new Map<string, RuleNode>();
  nodes.forEach((node, i) => {
    const path = `${parentPath}descriptors[${i}]`;
    const id = parentId === '' ? labelSegment(node) : `${parentId}.${labelSegment(node)}`;
    const child = compileLevel(ctx, node.descriptors ?? [], id, `${path}.`, compileRule(ctx, node, id, path));
    const value = node.value ?? '';
    // Sibling uniqueness is checked by the schema; these maps cannot collide.
    if (value === '') keyOnly.set(node.key, child);
    else if (value.includes('*')) wildcards.push(Object.freeze({ key: node.key, parts: Object.freeze(value.split('*')), node: child }));
    else exact.set(exactKey(node.key, value), child);
  });
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

/** Throws ConfigError for what only the compiled limits reveal (burst on fixed_window, unrepresentable numbers). */
export function compileDomain(file: string, config: ConfigFile, document: unknown): CompiledDomain {
  const ctx: DomainContext = { file, domain: config.domain, algorithm: config.algorithm ?? 'token_bucket' };
  const root = compileLevel(ctx, config.descriptors ?? [], '', '', undefined);
  const httpDescriptors = (config.http?.descriptors ?? []).map((actions) =>
    Object.freeze(actions.map((action) => Object.freeze(compileAction(action)))));
  return Object.freeze({
    name: config.domain,
    source: file,
    algorithm: ctx.algorithm,
    root,
    httpDescriptors: Object.freeze(httpDescriptors),
    document,
  });
}
