/**
 * Shared pieces of the multi-process scenarios: real `node dist/main.js serve`
 * children (test/helpers/process.ts) against real redis-server processes
 * (test/helpers/redis.ts), talked to over HTTP on loopback. No mocks.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnServer, type ServerProcess } from '../../helpers/process.js';
import { sleep, type RedisClusterHandle, type RedisNode } from '../../helpers/redis.js';

export { sleep };

/** What the scenarios need from a tap test. */
export interface TestLike {
  teardown(fn: () => unknown): void;
}

const DOMAIN = 'scenario';

/**
 * One domain for every scenario:
 * - `api_key` (flat) 10/hour — scenarios 1, 2, 3, 5, 7
 * - `path=/rating` → `api_key` (nested) 3/hour — scenario 2
 * - `short` 5/second, burst 5 — scenario 4 (key expiry)
 * - `small` 5/hour — scenario 6 (local fallback), and "fresh key" checks
 * - `busy` 200/second — load that keeps reaching Redis (scenarios 5, 7): a denial is
 *   remembered by the sidecar's over-limit cache and answered without Redis until a
 *   token is back, so a load on an exhausted 10/hour key would never touch Redis.
 */
const CONFIG_YAML = [
  `domain: ${DOMAIN}`,
  'descriptors:',
  '  - key: api_key',
  '    rate_limit: { unit: hour, requests_per_unit: 10 }',
  '  - key: path',
  '    value: /rating',
  '    descriptors:',
  '      - key: api_key',
  '        rate_limit: { unit: hour, requests_per_unit: 3 }',
  '  - key: short',
  '    rate_limit: { unit: second, requests_per_unit: 5, burst: 5 }',
  '  - key: small',
  '    rate_limit: { unit: hour, requests_per_unit: 5 }',
  '  - key: busy',
  '    rate_limit: { unit: second, requests_per_unit: 200 }',
  'http:',
  '  descriptors:',
  '    - [ { request_headers: { header_name: x-api-key, descriptor_key: api_key } } ]',
  '    - [ { request_headers: { header_name: ":path", descriptor_key: path } },',
  '        { request_headers: { header_name: x-api-key, descriptor_key: api_key } } ]',
  '',
].join('\n');

/** Writes the config into a fresh temp dir (removed on teardown); returns its path. */
export function writeConfig(t: TestLike, yaml = CONFIG_YAML): string {
  const dir = mkdtempSync(join(tmpdir(), 'rl-scenarios-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, `${DOMAIN}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

export type Policy = 'local' | 'allow' | 'deny';

export interface Sidecar {
  name: string;
  proc: ServerProcess;
  url: string;
}

/**
 * Starts one `serve` process against the cluster (`cluster.seeds`) or a single
 * node (`redis.url`), waits until it listens, and stops it on teardown.
 */
export async function startSidecar(t: TestLike, options: {
  name: string;
  config: string;
  cluster?: RedisClusterHandle;
  redis?: RedisNode;
  policy?: Policy;
  extra?: string[];
}): Promise<Sidecar> {
  const args = ['--config', options.config, '--on-store-failure', options.policy ?? 'local'];
  if (options.cluster !== undefined) args.push('--redis-cluster', options.cluster.seeds);
  if (options.redis !== undefined) args.push('--redis', options.redis.url);
  args.push(...(options.extra ?? []));
  const proc = await spawnServer(args);
  t.teardown(() => proc.stop('SIGTERM'));
  return { name: options.name, proc, url: proc.httpUrl };
}

interface Entry { key: string; value: string }
export interface Descriptor { entries: Entry[]; hits_addend?: number }

export interface CheckStatus {
  code: string;
  limit: { requests_per_unit: number; unit: string; burst?: number } | null;
  limit_remaining: number;
  duration_until_reset_ms: number;
}

export interface Answer {
  /** HTTP status, or 0 when the request failed (connection error, client timeout). */
  status: number;
  ms: number;
  body: unknown;
  error?: string;
}

/** POST /v1/check with the given descriptors; never throws (a failure is status 0). */
export async function check(sidecar: Sidecar, descriptors: Descriptor[], timeoutMs = 5_000): Promise<Answer> {
  const started = performance.now();
  try {
    const response = await fetch(`${sidecar.url}/v1/check`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ domain: DOMAIN, descriptors }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // keep the text
    }
    return { status: response.status, ms: performance.now() - started, body };
  } catch (error: unknown) {
    return { status: 0, ms: performance.now() - started, body: undefined, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
  }
}

/** One flat descriptor `[(key, value)]`. */
export function flat(key: string, value: string, hitsAddend?: number): Descriptor {
  return hitsAddend === undefined ? { entries: [{ key, value }] } : { entries: [{ key, value }], hits_addend: hitsAddend };
}

export function statuses(answer: Answer): CheckStatus[] {
  const body = answer.body as { statuses?: CheckStatus[] } | undefined;
  return body?.statuses ?? [];
}

export async function getText(sidecar: Sidecar, path: string, timeoutMs = 2_000): Promise<{ status: number; text: string }> {
  const response = await fetch(`${sidecar.url}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: response.status, text: await response.text() };
}

export async function readyz(sidecar: Sidecar): Promise<number> {
  try {
    return (await getText(sidecar, '/readyz')).status;
  } catch {
    return 0;
  }
}

/** The value of an unlabelled metric on /metrics (NaN when absent). */
export async function metric(sidecar: Sidecar, name: string): Promise<number> {
  const { text } = await getText(sidecar, '/metrics');
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
}

/**
 * Hangs `redis` (SIGSTOP: its sockets stay open, it answers nothing) and
 * resolves with the function that resumes it (SIGCONT); teardown resumes it
 * if the test did not.
 */
export async function hang(t: TestLike, redis: RedisNode): Promise<() => Promise<void>> {
  await redis.kill('SIGSTOP');
  let resumed = false;
  t.teardown(async () => {
    if (!resumed) await redis.kill('SIGCONT');
  });
  return async () => {
    await redis.kill('SIGCONT');
    resumed = true;
  };
}

/** Two sidecars `a` and `b` on one Redis at the defaults, once both are ready. */
export async function startPair(t: TestLike, config: string, redis: RedisNode): Promise<{ a: Sidecar; b: Sidecar }> {
  const a = await startSidecar(t, { name: 'a', config, redis });
  const b = await startSidecar(t, { name: 'b', config, redis });
  await until('both sidecars ready', async () => (await readyz(a)) === 200 && (await readyz(b)) === 200, 15_000);
  return { a, b };
}

/** One labelled counter summed over `sidecars` and over its series whose line `match` matches (e.g. /decided_by="policy"/). */
export async function labelledSum(sidecars: readonly Sidecar[], name: string, match: RegExp): Promise<number> {
  let sum = 0;
  for (const sidecar of sidecars) {
    const { text } = await getText(sidecar, '/metrics');
    for (const line of text.split('\n')) {
      if (line.startsWith(`${name}{`) && match.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

/** Polls until `condition` is true; throws after `timeoutMs` naming `what`. Returns the elapsed ms. */
export async function until(what: string, condition: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 100): Promise<number> {
  const started = performance.now();
  const deadline = started + timeoutMs;
  for (;;) {
    try {
      if (await condition()) return performance.now() - started;
    } catch {
      // retry until the deadline
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Counts answers by HTTP status (0 = request failed). */
export function tally(answers: readonly Answer[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of answers) counts[String(a.status)] = (counts[String(a.status)] ?? 0) + 1;
  return counts;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Every `rl:*` key on the current masters whose name contains `needle`, with the master's port. */
export async function findKeys(cluster: RedisClusterHandle, needle: string): Promise<{ key: string; port: number }[]> {
  const found: { key: string; port: number }[] = [];
  const masters = (await cluster.topology()).filter((n) => n.role === 'master' && n.node.running);
  for (const { node } of masters) {
    const out = await node.cli('--scan', '--pattern', 'rl:*');
    for (const key of out.split('\n').map((k) => k.trim()).filter((k) => k !== '' && k.includes(needle))) {
      found.push({ key, port: node.port });
    }
  }
  return found;
}

/** Sends `count` requests for one fresh flat key, spread over `sidecars`, all at once. */
export async function burst(sidecars: readonly Sidecar[], descriptors: Descriptor[], count: number): Promise<Answer[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => check(sidecars[i % sidecars.length]!, descriptors)));
}

/** A few requests per sidecar on throw-away keys: JIT, connections, first EVALSHA. */
export async function warmUp(sidecars: readonly Sidecar[], prefix = 'warm'): Promise<void> {
  for (const sidecar of sidecars) {
    for (let i = 0; i < 10; i++) await check(sidecar, [flat('api_key', `${prefix}-${sidecar.name}-${i}`)]);
  }
}
