/**
 * Open-loop load for the multi-region lab, and the summaries its assertions
 * need. Requests are scheduled by time (region r sends every 1 / (totalRps ×
 * share_r) seconds), not by answers: a slow answer never lowers the offered
 * rate. Concurrency is bounded; a request due while the bound is reached is
 * not sent and is recorded as `skipped` (status -1), so a test can assert the
 * offered load was really offered. Each request is POST /v1/check on a
 * keep-alive connection (node:http), to the region's sidecars in turn.
 */
import { Agent, request } from 'node:http';
import type { Descriptor } from '../scenarios/lib.js';

export const LAB_DOMAIN = 'lab';
const DEFAULT_MAX_IN_FLIGHT = 256;
const DEFAULT_TIMEOUT_MS = 2_000;
/** A guard against a typo in rps × duration filling memory. */
const MAX_REQUESTS = 2_000_000;

export interface CheckAnswer {
  /** HTTP status; 0 = failed (connection error, timeout). */
  status: number;
  ms: number;
  body: unknown;
  error?: string;
}

/** Where a load sends: the /v1/check base URLs of each region's sidecars. */
export interface LoadTargets {
  urls(region: string): readonly string[];
}

/**
 * POST /v1/check with node:http; never throws (a failure is status 0) and
 * never waits longer than `timeoutMs`.
 */
export function postCheck(url: string, body: string, options: { agent?: Agent; timeoutMs?: number } = {}): Promise<CheckAnswer> {
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (answer: Omit<CheckAnswer, 'ms'>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...answer, ms: performance.now() - started });
    };
    const req = request(`${url}/v1/check`, {
      method: 'POST',
      agent: options.agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // keep the text
        }
        finish({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on('error', (error: Error) => finish({ status: 0, body: undefined, error: `${error.name}: ${error.message}` }));
    });
    const timer = setTimeout(() => {
      req.destroy(new Error(`no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (error: Error) => finish({ status: 0, body: undefined, error: `${error.name}: ${error.message}` }));
    req.end(body);
  });
}

export function checkBody(descriptors: readonly Descriptor[], domain = LAB_DOMAIN): string {
  return JSON.stringify({ domain, descriptors });
}

export interface LoadRecord {
  region: string;
  /** Index of the sidecar within its region. */
  sidecar: number;
  /** ms since the load started (performance.now based) it was due. */
  scheduledAt: number;
  /** ms since the load started it was sent (>= scheduledAt; equal when not sent). */
  sentAt: number;
  /** ms since the load started its answer (or failure) came; NaN when not sent. */
  answeredAt: number;
  latencyMs: number;
  /** 200 allowed, 429 denied, other HTTP statuses as they came, 0 failed, -1 skipped (concurrency bound). */
  status: number;
  error?: string;
}

export interface ConstantLoadOptions {
  lab: LoadTargets;
  /** Share of the total rate per region, e.g. { a: 0.7, b: 0.2, c: 0.1 } (normalised to sum 1). */
  perRegion: Record<string, number>;
  totalRps: number;
  durationMs: number;
  /** The same for every request, or built per request (e.g. keys per region). */
  descriptors: readonly Descriptor[] | ((region: string, seq: number) => readonly Descriptor[]);
  domain?: string;
  /** Most requests in flight at once, every region together (default 256). */
  maxInFlight?: number;
  /** Per request (default 2000 ms). */
  timeoutMs?: number;
}

export interface LoadResult {
  records: LoadRecord[];
  /** Date.now() when the load started (records count from it). */
  startedAtEpochMs: number;
  durationMs: number;
  /** How late the generator sent, worst case (its own event loop lag). */
  maxSendLagMs: number;
}

/** Sends an open-loop constant load; resolves when every sent request has an answer or failed. */
export async function constantLoad(options: ConstantLoadOptions): Promise<LoadResult> {
  const { totalRps, durationMs } = options;
  if (!(totalRps > 0) || !(durationMs > 0)) throw new Error('constantLoad: totalRps and durationMs must be > 0');
  const shares = Object.entries(options.perRegion).filter(([, share]) => share > 0);
  const shareSum = shares.reduce((sum, [, share]) => sum + share, 0);
  if (shares.length === 0 || !Number.isFinite(shareSum)) throw new Error('constantLoad: perRegion needs a share > 0');
  const expected = Math.ceil((totalRps * durationMs) / 1000) + shares.length;
  if (expected > MAX_REQUESTS) throw new Error(`constantLoad: ${expected} requests is more than ${MAX_REQUESTS}`);
  const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const domain = options.domain ?? LAB_DOMAIN;

  // The schedule: region r's k-th request at (k + 0.5) / rate_r, every region merged in time order.
  const schedule: { at: number; region: string; seq: number }[] = [];
  for (const [region, share] of shares) {
    const urls = options.lab.urls(region);
    if (urls.length === 0) throw new Error(`constantLoad: region ${region} has no sidecar`);
    const intervalMs = 1000 / ((totalRps * share) / shareSum);
    for (let seq = 0; (seq + 0.5) * intervalMs < durationMs; seq++) schedule.push({ at: (seq + 0.5) * intervalMs, region, seq });
  }
  schedule.sort((x, y) => x.at - y.at);

  const fixedBody = typeof options.descriptors === 'function' ? undefined : checkBody(options.descriptors, domain);
  const bodyFor = (region: string, seq: number): string => fixedBody
    ?? checkBody((options.descriptors as (region: string, seq: number) => readonly Descriptor[])(region, seq), domain);
  const agent = new Agent({ keepAlive: true, maxSockets: maxInFlight, scheduling: 'fifo' });
  const records: LoadRecord[] = [];
  const pending: Promise<void>[] = [];
  const nextSidecar = new Map<string, number>();
  let inFlight = 0;
  let maxSendLagMs = 0;
  const startedAtEpochMs = Date.now();
  const start = performance.now();
  try {
    let next = 0;
    while (next < schedule.length) {
      const now = performance.now() - start;
      const item = schedule[next]!;
      if (item.at > now) {
        await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.floor(item.at - now))));
        continue;
      }
      next++;
      const urls = options.lab.urls(item.region);
      const sidecar = (nextSidecar.get(item.region) ?? 0) % urls.length;
      nextSidecar.set(item.region, sidecar + 1);
      const record: LoadRecord = {
        region: item.region, sidecar, scheduledAt: item.at, sentAt: now, answeredAt: Number.NaN, latencyMs: Number.NaN, status: -1,
      };
      records.push(record);
      maxSendLagMs = Math.max(maxSendLagMs, now - item.at);
      if (inFlight >= maxInFlight) {
        record.sentAt = item.at;
        record.error = `skipped: ${maxInFlight} requests in flight`;
        continue;
      }
      inFlight++;
      pending.push(postCheck(urls[sidecar]!, bodyFor(item.region, item.seq), { agent, timeoutMs }).then((answer) => {
        inFlight--;
        record.status = answer.status;
        record.latencyMs = answer.ms;
        record.answeredAt = record.sentAt + answer.ms;
        if (answer.error !== undefined) record.error = answer.error;
      }));
    }
    await Promise.all(pending);
  } finally {
    agent.destroy();
  }
  return { records, startedAtEpochMs, durationMs, maxSendLagMs };
}

// ---- summaries -------------------------------------------------------------

export interface RegionTally {
  /** Requests due (sent + skipped). */
  due: number;
  allowed: number;
  denied: number;
  /** Failed requests and unexpected statuses. */
  failed: number;
  skipped: number;
}

/** Outcomes per region, plus `all`. */
export function tallyByRegion(records: readonly LoadRecord[]): Record<string, RegionTally> {
  const result: Record<string, RegionTally> = {};
  const add = (key: string, record: LoadRecord): void => {
    const tally = result[key] ??= { due: 0, allowed: 0, denied: 0, failed: 0, skipped: 0 };
    tally.due++;
    if (record.status === 200) tally.allowed++;
    else if (record.status === 429) tally.denied++;
    else if (record.status === -1) tally.skipped++;
    else tally.failed++;
  };
  for (const record of records) {
    add(record.region, record);
    add('all', record);
  }
  return result;
}

/** What went wrong with requests that got neither 200 nor 429, by kind (status or error), most frequent first: for failure messages. */
export function failureKinds(records: readonly LoadRecord[], region?: string): string {
  const kinds = new Map<string, number>();
  for (const record of records) {
    if (record.status === 200 || record.status === 429 || (region !== undefined && record.region !== region)) continue;
    const kind = record.status === -1 ? 'skipped (in-flight bound)' : record.error ?? `HTTP ${record.status}`;
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  if (kinds.size === 0) return 'none';
  return [...kinds].sort((x, y) => y[1] - x[1]).slice(0, 4).map(([kind, n]) => `${n}× ${kind.slice(0, 80)}`).join('; ');
}

/** Allowed requests per region (regions with none are 0). */
export function allowedByRegion(records: readonly LoadRecord[]): Record<string, number> {
  const result: Record<string, number> = {};
  for (const record of records) {
    result[record.region] = (result[record.region] ?? 0) + (record.status === 200 ? 1 : 0);
  }
  return result;
}

export interface WindowOptions {
  /**
   * Which instant stands for the decision: `answer` (default; a decision is
   * taken before its answer leaves, and the answer travels loopback only) or
   * `send`. Either differs from the decision instant by at most the request's
   * latency: a strict bound over T holds over T + max latency of the other.
   */
  by?: 'answer' | 'send';
  /** Only these regions (default all). */
  regions?: readonly string[];
  /** Only requests whose instant lies in [fromMs, toMs). */
  fromMs?: number;
  toMs?: number;
}

function allowedInstants(records: readonly LoadRecord[], options: WindowOptions): number[] {
  const by = options.by ?? 'answer';
  const from = options.fromMs ?? Number.NEGATIVE_INFINITY;
  const to = options.toMs ?? Number.POSITIVE_INFINITY;
  const instants: number[] = [];
  for (const record of records) {
    if (record.status !== 200) continue;
    if (options.regions !== undefined && !options.regions.includes(record.region)) continue;
    const at = by === 'answer' ? record.answeredAt : record.sentAt;
    if (at >= from && at < to) instants.push(at);
  }
  return instants.sort((x, y) => x - y);
}

/**
 * The most requests allowed within any interval of length `windowMs`, every
 * region together (or `regions`), and where that interval starts. For "the
 * regions together allow at most burst + rate × T over any interval T".
 */
export function maxAllowedInWindow(records: readonly LoadRecord[], windowMs: number, options: WindowOptions = {}): { count: number; startMs: number } {
  const instants = allowedInstants(records, options);
  let best = { count: 0, startMs: Number.NaN };
  let end = 0;
  // The busiest window can be taken to start at an allowed request.
  for (let begin = 0; begin < instants.length; begin++) {
    while (end < instants.length && instants[end]! <= instants[begin]! + windowMs) end++;
    if (end - begin > best.count) best = { count: end - begin, startMs: instants[begin]! };
  }
  return best;
}

/** Allowed requests between two instants (see WindowOptions). */
export function allowedBetween(records: readonly LoadRecord[], fromMs: number, toMs: number, options: Omit<WindowOptions, 'fromMs' | 'toMs'> = {}): number {
  return allowedInstants(records, { ...options, fromMs, toMs }).length;
}

/** Allowed requests per `bucketMs` interval from 0, per region: for plots and steady-state shares. */
export function allowedSeries(records: readonly LoadRecord[], bucketMs: number, options: Omit<WindowOptions, 'regions'> = {}): Record<string, number[]> {
  const series: Record<string, number[]> = {};
  const by = options.by ?? 'answer';
  for (const record of records) {
    if (record.status !== 200) continue;
    const at = by === 'answer' ? record.answeredAt : record.sentAt;
    const index = Math.floor(at / bucketMs);
    const list = series[record.region] ??= [];
    while (list.length <= index) list.push(0);
    list[index]!++;
  }
  return series;
}

/** Nearest-rank percentile; NaN for no values. */
function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Latency of answered requests (any HTTP status) per region, plus `all`. */
export function latencyByRegion(records: readonly LoadRecord[], options: { fromMs?: number; toMs?: number } = {}): Record<string, LatencySummary> {
  const byRegion: Record<string, number[]> = { all: [] };
  for (const record of records) {
    if (record.status <= 0) continue;
    if (record.sentAt < (options.fromMs ?? Number.NEGATIVE_INFINITY) || record.sentAt >= (options.toMs ?? Number.POSITIVE_INFINITY)) continue;
    (byRegion[record.region] ??= []).push(record.latencyMs);
    byRegion['all']!.push(record.latencyMs);
  }
  const result: Record<string, LatencySummary> = {};
  for (const [region, values] of Object.entries(byRegion)) {
    result[region] = {
      count: values.length,
      p50: percentile(values, 50),
      p90: percentile(values, 90),
      p99: percentile(values, 99),
      p999: percentile(values, 99.9),
      max: values.length === 0 ? Number.NaN : values.reduce((max, value) => Math.max(max, value), Number.NEGATIVE_INFINITY),
    };
  }
  return result;
}
