// The config file format (docs/configuration.md): envoyproxy/ratelimit's format
// unchanged, plus our `burst`, `algorithm`, `unit_multiplier`, `rate_limits`
// and `http` additions. Every object is strict so
// a misspelled key is an error, not a silently ignored setting. Types are
// derived from these schemas so the two cannot drift.
import { z } from 'zod';
import { MAX_PERIOD_SECONDS, parseUnit, UNIT_SECONDS, UNITS } from '../core/limit.js';
import type { Algorithm } from '../core/types.js';

/** How a value looks in an error message: `"fortnight"`, `-5`, `a list`. */
function describeValue(value: unknown): string {
  if (value === null) return 'nothing (null)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

/**
 * An error callback for zod: "is required" when missing, else what was
 * expected and what came. A whole number beyond 2^53 − 1 is named as such:
 * YAML has already rounded it, so echoing it would show a number not written.
 */
function expected(what: string) {
  return (issue: { input?: unknown }): string => {
    if (issue.input === undefined) return 'is required';
    if (typeof issue.input === 'number' && Number.isInteger(issue.input) && !Number.isSafeInteger(issue.input)) {
      return `expected ${what}, at most ${Number.MAX_SAFE_INTEGER} (2^53 − 1), got a larger number`;
    }
    return `expected ${what}, got ${describeValue(issue.input)}`;
  };
}

function orList(words: readonly string[]): string {
  return words.length <= 1 ? words.join('') : `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`;
}

const text = z.string({ error: expected('a string') });
const nonEmptyText = text.min(1, { error: 'must not be empty' });
const flag = z.boolean({ error: expected('true or false') });

const ALGORITHMS: readonly Algorithm[] = ['token_bucket', 'fixed_window', 'sliding_window'];

const algorithmSchema = text
  .refine((name) => (ALGORITHMS as readonly string[]).includes(name), {
    error: (issue) => `unknown algorithm ${describeValue(issue.input)} (expected ${orList(ALGORITHMS)})`,
  })
  .transform((name) => name as Algorithm);

const unitSchema = text
  .refine((name) => parseUnit(name) !== undefined, {
    error: (issue) => `unknown unit ${describeValue(issue.input)} (expected ${orList(UNITS)})`,
  })
  .transform((name) => parseUnit(name)!);

/** Safe integers only: beyond 2^53 a YAML number is no longer the number the operator wrote. */
const count = (what: string) =>
  z.int({ error: expected(what) }).min(0, { error: (issue) => `expected ${what}, got ${describeValue(issue.input)}` });

const replacesEntrySchema = z.strictObject({ name: text });

const rateLimitSchema = z
  .strictObject({
    unit: unitSchema.optional(),
    requests_per_unit: count('a whole number of requests, 0 or more').optional(),
    unlimited: flag.optional(),
    /** Names this limit for `replaces`; '' is the same as no name (envoyproxy/ratelimit). */
    name: text.optional(),
    replaces: z.array(replacesEntrySchema, { error: expected('a list of {name}') }).optional(),
    /** Ours: bucket capacity; defaults to requests_per_unit. */
    burst: count('a whole number of tokens, 1 or more').optional(),
    /** Ours: overrides the domain's algorithm for this limit. */
    algorithm: algorithmSchema.optional(),
    /** Ours: the period is this many units ("100 per 5 minutes"). */
    unit_multiplier: z.int({ error: expected('a whole number, 1 or more') })
      .min(1, { error: (issue) => `expected a whole number, 1 or more, got ${describeValue(issue.input)}` })
      .optional(),
    /** Ours: `region` (default) = one budget per region's Redis; `global` = one budget across --regions. */
    scope: z.enum(['region', 'global'], { error: (issue) => `expected region or global, got ${describeValue(issue.input)}` }).optional(),
    /** Ours: a token budget: charges are always recorded, the balance may go below zero (docs/budgets.md). */
    overdraft: flag.optional(),
  }, { error: expected('a mapping') })
  .superRefine((limit, ctx) => {
    if (limit.unlimited === true) {
      // As envoyproxy/ratelimit: a unit next to `unlimited` is a contradiction.
      if (limit.unit !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['unit'], message: 'must not be set when unlimited is true' });
      }
      if (limit.burst !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['burst'], message: 'must not be set when unlimited is true' });
      }
      if (limit.algorithm !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['algorithm'], message: 'must not be set when unlimited is true' });
      }
      if (limit.unit_multiplier !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['unit_multiplier'], message: 'must not be set when unlimited is true' });
      }
      if (limit.scope !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['scope'], message: 'must not be set when unlimited is true' });
      }
      if (limit.overdraft !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['overdraft'], message: 'must not be set when unlimited is true' });
      }
    } else {
      if (limit.unit === undefined) {
        ctx.addIssue({ code: 'custom', path: ['unit'], message: 'is required (or set unlimited: true)' });
      }
      // envoyproxy/ratelimit would default a missing count to 0 (deny everything);
      // that is almost always a forgotten line, so we ask for it.
      if (limit.requests_per_unit === undefined) {
        ctx.addIssue({ code: 'custom', path: ['requests_per_unit'], message: 'is required' });
      }
      const rate = limit.requests_per_unit;
      if (limit.burst === 0 && rate !== undefined && rate > 0) {
        ctx.addIssue({
          code: 'custom', path: ['burst'],
          message: 'must be at least 1 (a bucket that holds no token denies every request; use requests_per_unit: 0 for that)',
        });
      }
      if (limit.unit !== undefined && limit.unit_multiplier !== undefined
        && UNIT_SECONDS[limit.unit] * limit.unit_multiplier > MAX_PERIOD_SECONDS) {
        ctx.addIssue({
          code: 'custom', path: ['unit_multiplier'],
          message: `makes a period of ${limit.unit_multiplier} ${limit.unit}s; at most 50 years is supported`,
        });
      }
      if (limit.burst !== undefined && limit.burst > 0 && rate === 0) {
        ctx.addIssue({
          code: 'custom', path: ['burst'],
          message: 'must be 0 or absent when requests_per_unit is 0 (such a limit denies every request)',
        });
      }
    }
    (limit.replaces ?? []).forEach((entry, i) => {
      if (entry.name === '') {
        ctx.addIssue({ code: 'custom', path: ['replaces', i, 'name'], message: 'must not be empty' });
      } else if (entry.name === limit.name) {
        ctx.addIssue({
          code: 'custom', path: ['replaces', i, 'name'],
          message: `a limit cannot replace itself ("${entry.name}" is this limit's own name)`,
        });
      }
    });
  });

/** Key and value as they identify a node among its siblings; '' and absent are both "key only". */
export function compositeKey(node: { key: string; value?: string | undefined }): string {
  return node.value === undefined || node.value === '' ? `${node.key}` : `${node.key}\u0000${node.value}`;
}

export function describeComposite(node: { key: string; value?: string | undefined }): string {
  return node.value === undefined || node.value === ''
    ? `key "${node.key}" without a value`
    : `key "${node.key}" with value "${node.value}"`;
}

const descriptorNodeFieldsSchema = z.strictObject({
  key: nonEmptyText,
  /** Absent or '': matches any value (one bucket per value). Containing `*`: a wildcard. */
  value: text.optional(),
  rate_limit: rateLimitSchema.optional(),
  /** Ours: several limits that all apply (burst + sustained), next to or instead of rate_limit. */
  rate_limits: z.array(rateLimitSchema, { error: expected('a list of rate limits') })
    .min(1, { error: 'must list at least one limit (or be left out)' })
    .optional(),
  /** Evaluate and count, never deny. */
  shadow_mode: flag.optional(),
  detailed_metric: flag.optional(),
  // envoyproxy/ratelimit's newer node keys:
  /**
   * envoyproxy/ratelimit's quota mode: such a descriptor does not make the
   * request OVER_LIMIT on its own; the request is over when an ordinary limit
   * is, or when every quota-mode descriptor of the request is.
   */
  quota_mode: flag.optional(),
  /** Accepted and ignored: metric labels never carry request values here (label cardinality). */
  value_to_metric: flag.optional(),
  /** On a wildcard value: every value matching it shares one bucket (as envoyproxy/ratelimit). */
  share_threshold: flag.optional(),
  /** Accepted and ignored: free-form data envoyproxy/ratelimit attaches to responses. */
  metadata: z.record(z.string(), z.unknown(), { error: expected('a mapping') }).optional(),
}, { error: expected('a mapping') });

export type DescriptorNodeConfig = z.infer<typeof descriptorNodeFieldsSchema> & {
  descriptors?: DescriptorNodeConfig[] | null | undefined;
};

const descriptorNodeSchema = descriptorNodeFieldsSchema.extend({
  /** Nested nodes: the next entry of a descriptor. An empty `descriptors:` (null) is no nodes, as upstream. */
  get descriptors(): z.ZodOptional<z.ZodNullable<z.ZodType<DescriptorNodeConfig[]>>> {
    return descriptorListSchema.nullable().optional();
  },
}).superRefine((node, ctx) => {
  const limits = [
    ...(node.rate_limit === undefined ? [] : [{ limit: node.rate_limit, path: ['rate_limit'] as PropertyKey[] }]),
    ...(node.rate_limits ?? []).map((limit, i) => ({ limit, path: ['rate_limits', i] as PropertyKey[] })),
  ];
  for (const { limit, path } of limits) {
    if (limit.unlimited === true && path[0] === 'rate_limits') {
      ctx.addIssue({
        code: 'custom', path: [...path, 'unlimited'],
        message: 'not allowed in rate_limits (write rate_limit: { unlimited: true } alone)',
      });
    }
    (limit.replaces ?? []).forEach((entry, j) => {
      if (entry.name === '' || entry.name === limit.name) return; // reported by the limit itself
      if (limits.some((other) => other.limit !== limit && other.limit.name === entry.name)) {
        ctx.addIssue({
          code: 'custom', path: [...path, 'replaces', j, 'name'],
          message: `"${entry.name}" is a limit of this same descriptor (replaces drops limits of other descriptors)`,
        });
      }
    });
  }
  if (node.rate_limit?.unlimited === true && node.rate_limits !== undefined) {
    ctx.addIssue({
      code: 'custom', path: ['rate_limits'],
      message: 'must not be set next to rate_limit: { unlimited: true } (an unlimited descriptor has no limits)',
    });
  }
  if (node.share_threshold === true && !(node.value ?? '').includes('*')) {
    ctx.addIssue({
      code: 'custom', path: ['share_threshold'],
      message: 'needs a wildcard value (one containing *): it makes every value matching the wildcard share one bucket',
    });
  }
});

/** Siblings must differ in key+value: the matcher could only ever pick one of two equal ones. */
const descriptorListSchema: z.ZodType<DescriptorNodeConfig[]> = z
  .array(descriptorNodeSchema, { error: expected('a list of descriptors') })
  .superRefine((nodes, ctx) => {
    const seen = new Map<string, number>();
    nodes.forEach((node, i) => {
      const composite = compositeKey(node);
      const first = seen.get(composite);
      if (first === undefined) {
        seen.set(composite, i);
      } else {
        ctx.addIssue({
          code: 'custom', path: [i],
          message: `duplicate descriptor: ${describeComposite(node)} is already defined at index ${first}`,
        });
      }
    });
  });

// --- http: how an HTTP request becomes descriptors (Envoy's rate_limits actions) ---

const requestHeadersSchema = z.strictObject({
  header_name: nonEmptyText,
  descriptor_key: nonEmptyText,
  skip_if_absent: flag.optional(),
}, { error: expected('a mapping') });

const remoteAddressSchema = z.strictObject({}, { error: expected('an empty mapping {}') }).nullable();

const maskLength = (max: number) =>
  z.int({ error: expected(`a whole number from 0 to ${max}`) })
    .min(0, { error: (issue) => `expected a whole number from 0 to ${max}, got ${describeValue(issue.input)}` })
    .max(max, { error: (issue) => `expected a whole number from 0 to ${max}, got ${describeValue(issue.input)}` });

const maskedRemoteAddressSchema = z.strictObject({
  /** Default 32 (the whole address), as Envoy. */
  v4_prefix_mask_len: maskLength(32).optional(),
  /** Default 128 (the whole address), as Envoy. */
  v6_prefix_mask_len: maskLength(128).optional(),
}, { error: expected('a mapping') }).nullable();

const genericKeySchema = z.strictObject({
  descriptor_value: nonEmptyText,
  /** Default "generic_key", as Envoy. */
  descriptor_key: nonEmptyText.optional(),
}, { error: expected('a mapping') });

const queryParametersSchema = z.strictObject({
  query_parameter_name: nonEmptyText,
  descriptor_key: nonEmptyText,
  skip_if_absent: flag.optional(),
}, { error: expected('a mapping') });

export const HTTP_ACTION_NAMES = [
  'request_headers', 'remote_address', 'masked_remote_address', 'generic_key', 'query_parameters',
] as const;

/** One action: a mapping with exactly one of the action names, as in Envoy's `actions` list. */
const httpActionSchema = z
  .strictObject({
    request_headers: requestHeadersSchema.optional(),
    remote_address: remoteAddressSchema.optional(),
    masked_remote_address: maskedRemoteAddressSchema.optional(),
    generic_key: genericKeySchema.optional(),
    query_parameters: queryParametersSchema.optional(),
  }, { error: expected(`an action (a mapping with one of ${orList(HTTP_ACTION_NAMES)})`) })
  .superRefine((action, ctx) => {
    const present = HTTP_ACTION_NAMES.filter((name) => action[name] !== undefined);
    if (present.length === 0) {
      ctx.addIssue({ code: 'custom', message: `expected one of ${orList(HTTP_ACTION_NAMES)}` });
    } else if (present.length > 1) {
      ctx.addIssue({
        code: 'custom',
        message: `an action has exactly one type, found ${present.join(' and ')} (make them separate actions in the list)`,
      });
    }
  });

export type HttpActionConfig = z.infer<typeof httpActionSchema>;

const actionListSchema = z
  .array(httpActionSchema, {
    error: (issue) => {
      const input = issue.input;
      // Envoy's own config wraps each list as `- actions: [...]`; say how ours differs.
      if (input !== null && typeof input === 'object' && !Array.isArray(input) && 'actions' in input) {
        return 'expected a list of actions (write the list itself, without "actions:")';
      }
      return expected('a list of actions')(issue);
    },
  })
  .min(1, { error: 'must not be empty (an empty action list produces no descriptor)' });

const httpSchema = z.strictObject({
  /** Each inner list of actions produces one descriptor. */
  descriptors: z.array(actionListSchema, { error: expected('a list of action lists') }),
}, { error: expected('a mapping') });

export const configFileSchema = z.strictObject({
  domain: nonEmptyText,
  /** Ours: the default algorithm of the domain's limits. */
  algorithm: algorithmSchema.optional(),
  descriptors: descriptorListSchema.nullable().optional(),
  http: httpSchema.optional(),
}, { error: expected('a mapping with domain and descriptors') });

export type ConfigFile = z.infer<typeof configFileSchema>;
export type RateLimitConfig = z.infer<typeof rateLimitSchema>;

/** Keys of each kind of object, for "unknown key" messages and did-you-mean hints. */
export const KNOWN_KEYS = Object.freeze({
  file: Object.keys(configFileSchema.shape),
  descriptor: Object.keys(descriptorNodeSchema.shape),
  rate_limit: Object.keys(rateLimitSchema.shape),
  replaces: Object.keys(replacesEntrySchema.shape),
  http: Object.keys(httpSchema.shape),
  action: [...HTTP_ACTION_NAMES] as string[],
  request_headers: Object.keys(requestHeadersSchema.shape),
  remote_address: [] as string[],
  masked_remote_address: Object.keys(maskedRemoteAddressSchema.unwrap().shape),
  generic_key: Object.keys(genericKeySchema.shape),
  query_parameters: Object.keys(queryParametersSchema.shape),
});

export type ObjectKind = keyof typeof KNOWN_KEYS;

function isFlag(field: unknown): boolean {
  let inner = field;
  while (inner instanceof z.ZodOptional || inner instanceof z.ZodNullable) inner = inner.unwrap();
  return inner instanceof z.ZodBoolean;
}

/**
 * The fields that are true or false (`shadow_mode`, `unlimited`,
 * `skip_if_absent`, ...), read off the schemas above so a new one cannot be
 * missed: load.ts reads YAML 1.1's `yes`/`no`/`on`/`off` as booleans there.
 */
export const BOOLEAN_FIELDS: ReadonlySet<string> = new Set(
  [
    configFileSchema, rateLimitSchema, replacesEntrySchema, descriptorNodeSchema, httpSchema, requestHeadersSchema,
    maskedRemoteAddressSchema.unwrap(), genericKeySchema, queryParametersSchema,
  ].flatMap((schema) => Object.entries(schema.shape as Record<string, unknown>).filter(([, field]) => isFlag(field)).map(([name]) => name)),
);
