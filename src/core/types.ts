// The vocabulary shared by every layer. Pure types: no node:*, no I/O.

export type Unit = 'second' | 'minute' | 'hour' | 'day' | 'week' | 'month' | 'year';
export type Algorithm = 'token_bucket' | 'fixed_window' | 'sliding_window';
/**
 * What a store op decides: a configured algorithm, or one of a global
 * limit's buckets (store/redis/global-limits.ts): `home_bucket`, its bucket in
 * its home region, or `lease`, the tokens a region holds of it. Each is one
 * module of core/algorithms/.
 */
type BucketAlgorithm = Algorithm | 'home_bucket' | 'lease';
/** region: one budget per region's Redis; global: one budget across every region (docs/design.md#one-budget-across-regions). */
export type Scope = 'region' | 'global';

/** One `key`/`value` pair of a descriptor, as Envoy sends it. */
export interface Entry {
  key: string;
  value: string;
}

/** A limit given in a request instead of the configured one (RLS `limit` override). */
export interface LimitOverride {
  requestsPerUnit: number;
  unit: Unit;
}

export interface Descriptor {
  entries: Entry[];
  /** Per-descriptor cost; when present it wins over the request's (0 = check only). */
  hitsAddend?: number;
  limitOverride?: LimitOverride;
}

export interface DecisionRequest {
  /** Already resolved by the transport (default domain applied). */
  domain: string;
  descriptors: Descriptor[];
  /** Request-level cost; 0 is treated as 1, as in envoyproxy/ratelimit. */
  hitsAddend?: number;
  /**
   * A report (POST /v1/report): every matched limit records its cost and
   * nothing is denied; the statuses tell what is left (docs/budgets.md).
   */
  report?: boolean;
}

/**
 * A limit with every derived number computed once at config load.
 *
 * Token-bucket state is an integer `level` in units of 1/levelPerToken token,
 * refilled by `refillPerTick` every `tickUs` micro-seconds, capped at
 * `capacityLevel` (= burst * levelPerToken). All of these stay below 2^53, so
 * JavaScript numbers and Redis Lua doubles compute them exactly (no drift).
 *
 * Windows (fixed_window, sliding_window) are `unitUs` long and aligned to the
 * Unix epoch. A sliding window measures time into its window in whole ticks
 * of `tickUs` (1 µs, 1 ms or 1 s: the finest that keeps its products below
 * 2^53); `windowTicks` = unitUs / tickUs. See core/algorithms/.
 */
export interface LimitSpec {
  name: string | undefined;
  unit: Unit;
  /** The period is `unitMultiplier` units ("100 per 5 minutes"); 1 unless configured. */
  unitMultiplier: number;
  /** Length of the period in µs: unit × unitMultiplier (the window of the window algorithms). */
  unitUs: number;
  requestsPerUnit: number;
  burst: number;
  algorithm: BucketAlgorithm;
  scope: Scope;
  tickUs: number;
  refillPerTick: number;
  levelPerToken: number;
  capacityLevel: number;
  /** unitUs / tickUs, exact (every tick divides a whole second). */
  windowTicks: number;
  /** Short, stable text naming the parameters; part of every store key. */
  fingerprint: string;
  /**
   * A token budget (`overdraft: true`, token buckets only): a check passes
   * while the balance is above zero, and a charge is always recorded, also
   * below zero; refills pay the debt first (core/algorithms/overdraft-bucket.ts).
   */
  overdraft: boolean;
}

/** One bucket operation of a batch sent to a store. */
export interface BucketOp {
  /** Full store key; carries the `{hash tag}` for Redis Cluster. */
  key: string;
  /** The hash tag inside `key` (without braces): ops with equal tags share a slot. */
  slotTag: string;
  limit: LimitSpec;
  /** Tokens to take; 0 = check only. */
  cost: number;
  /**
   * What decides this op when its store cannot (the local failure policy):
   * a global limit's op (home bucket or lease) falls back to the region's
   * static share when its Redis is unavailable (a missed deadline denies it).
   */
  fallback?: BucketOp;
  /** A shadow op is evaluated and reported but never causes a denial. */
  shadow: boolean;
  /**
   * Set on the ops of a quota-mode descriptor (envoyproxy/ratelimit's
   * `quota_mode`), one number per descriptor: such ops do not deny the batch
   * on their own; it is denied by them only when every quota group has a
   * denied op. Absent = an ordinary op. See core/bucket.ts `commitPlan`.
   */
  quotaGroup?: number;
  /**
   * A charge of /v1/report: recorded whatever the batch decides, on an
   * ordinary limit as far as it has tokens (its algorithm's `debit`), on an
   * overdraft limit in full. See core/bucket.ts `chargesAlways`.
   */
  report?: true;
}

export interface BucketOutcome {
  /** Whether this bucket alone had enough tokens. */
  allowed: boolean;
  /** floor(tokens) after the decision (or count left in the window). */
  remaining: number;
  /** Micro-seconds until the bucket is full again (window end for fixed_window). */
  resetUs: number;
  /** Micro-seconds until `cost` tokens are available; 0 when allowed. */
  retryAfterUs: number;
  /** An overdraft limit at or below zero: whole tokens owed, rounded up (see `debtOf`). */
  debt?: number;
  /**
   * Inspect only: whole tokens that leases held out of the bucket when it was
   * read (sidecars' local leases; regions' leases of a global limit's home
   * bucket), spent or not. Absent when none.
   */
  leased?: number;
}

type Code = 'OK' | 'OVER_LIMIT';

/** A limit as statuses report it (built once per compiled limit). */
export interface ReportedLimit {
  requestsPerUnit: number;
  unit: Unit;
  /** The period is this many units; absent means 1. */
  unitMultiplier?: number;
  name: string | undefined;
  burst: number;
}

/**
 * A limit's IETF draft-10 policy, built once per compiled limit: its name as
 * a Structured Field String and its `RateLimit-Policy` list member.
 */
export interface HeaderPolicy {
  /** The policy name as an sf-string, quotes included: `"api_key"`. */
  readonly item: string;
  /** The `RateLimit-Policy` member: `"api_key";q=20;w=2`. */
  readonly policy: string;
}

export interface DescriptorStatus {
  code: Code;
  /** null when no limit matched (or unknown domain). */
  limit: ReportedLimit | null;
  /** For unlimited descriptors: 4294967295, as envoyproxy/ratelimit. */
  limitRemaining: number;
  durationUntilResetMs: number;
  /** Only meaningful when code is OVER_LIMIT; whole seconds, >= 1. */
  retryAfterS: number;
  /** True when a shadow-mode limit would have denied this descriptor. */
  shadowOverLimit: boolean;
  /** The matched limit is in shadow mode (its own or global): evaluated, never enforced. */
  shadow: boolean;
  /** Metric label of the matched rule (from config, never from request values). */
  rule: string | undefined;
  /** The reported limit's draft-10 policy (absent when no limit matched). */
  policy?: HeaderPolicy | undefined;
  /** A quota-mode descriptor: OVER_LIMIT here makes the request over only if every quota descriptor is. */
  quota?: boolean;
  /**
   * Denied (in shadow mode: would be) because the cost can never fit (it is
   * above the limit's burst, or requests_per_unit is 0): no wait helps.
   * `retryAfterS` is then the limit's whole period.
   */
  unsatisfiable?: boolean;
  /**
   * A descriptor with several limits (`rate_limits`): the status of each, in
   * config order. The descriptor's own fields are those of the most
   * restrictive one (the denied one with the longest wait, else the one with
   * the fewest tokens left). Absent for a single limit.
   */
  limitStatuses?: readonly DescriptorStatus[];
  /** An overdraft limit at or below zero: whole tokens owed, rounded up (HTTP statuses carry it as `debt`). */
  debt?: number;
  /** Inspect only: whole tokens leases held out of the bucket (BucketOutcome.leased; the admin API's `leased`). */
  leased?: number;
}

/**
 * Who decided a request: the store (Redis, or the memory store), the Redis
 * store's local mirror of what Redis last reported (a denial without a call),
 * this sidecar's local leases of busy buckets (docs/leases.md), or the
 * store-failure policy (it decided some or all of the request's limits).
 */
export type DecidedBy = 'store' | 'mirror' | 'lease' | 'policy';

export interface Decision {
  overallCode: Code;
  decidedBy: DecidedBy;
  statuses: DescriptorStatus[];
  /** Set when the store failed and the failure policy decided. */
  storeFailure: 'allow' | 'deny' | 'local' | undefined;
  /** Whether any status was only allowed because of shadow mode. */
  shadowOverLimit: boolean;
  /** Charges recorded whatever the decision (token budgets, reports); absent when none. */
  charges?: DecisionCharges;
}

/** What a decision charged that is recorded whatever it decided (metrics only). */
export interface DecisionCharges {
  /** Tokens asked by charges on budgets (overdraft limits) and by a report on any limit. */
  tokens: number;
  /** Charges that left a budget at or below zero. */
  intoDebt: number;
}

/** Which API asked: a metric label; /v1/check and /v1/report refuse over-long values, the proxy-facing APIs digest them. */
export type Api = 'http_check' | 'http_auth' | 'http_auth_nginx' | 'grpc_rls' | 'grpc_authz' | 'http_report';
