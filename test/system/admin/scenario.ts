// The operator's way through inspect and reset, run against every store: a
// real server (`node dist/main.js serve`) and the real CLI (`node
// dist/main.js inspect|reset`), as a user runs them. npm test builds dist/.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { MAIN, spawnServer, type ServerProcess } from '../../helpers/process.js';
import { freePort } from '../../helpers/redis.js';

/** api_key: 10/hour; user: 10/hour and 6/day sliding; ip: a fixed window of 8 per year (no boundary crossed in a test). */
const CONFIG = `domain: admin
descriptors:
  - key: api_key
    rate_limit: { unit: hour, requests_per_unit: 10 }
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 10 }
    rate_limits:
      - { unit: day, requests_per_unit: 6, algorithm: sliding_window }
  - key: ip
    rate_limit: { unit: year, requests_per_unit: 8, algorithm: fixed_window }
`;

/** Six clients (their keys spread over a Cluster's masters), a user with two limits, an ip, and a descriptor no limit matches. */
const CLIENTS = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'];
const ARGS = [...CLIENTS.map((c) => `api_key=${c}`), 'user=u1', 'ip=1.2.3.4', 'nope=x'];
const BODY = {
  descriptors: ARGS.map((arg) => {
    const [key, value] = arg.split('=') as [string, string];
    return { entries: [{ key, value }] };
  }),
};
/** Buckets the body matches: six clients, the user's two limits, the ip. */
const BUCKETS = CLIENTS.length + 2 + 1;

interface Status {
  code: string;
  limit: { requests_per_unit: number } | null;
  key?: string;
  limit_remaining: number;
  duration_until_reset_ms: number;
  limits?: Status[];
}
export interface InspectAnswer {
  domain: string;
  statuses: Status[];
}

export interface Answer {
  status: number;
  json: unknown;
}

export async function post(url: string, body: unknown): Promise<Answer> {
  const response = await fetch(url, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: response.status, json: await response.json() };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node dist/main.js <args>` without any RL_* variable of ours; killed (and failed) if it hangs. */
export function runCli(args: string[], guardMs = 60_000): Promise<CliResult> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('RL_')));
  const child = spawn(process.execPath, [MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`hung: openclaw-ratelimit ${args.join(' ')}\n${stderr}`));
    }, guardMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function writeConfig(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'rl-admin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'admin.yaml');
  writeFileSync(path, CONFIG);
  return path;
}

export async function startServer(t: Test, config: string, storeArgs: string[]): Promise<ServerProcess & { adminUrl: string }> {
  // --admin-port 0 turns the listener off: give it a free port.
  // A generous start-up guard: the machine is shared, a start is not what is measured here.
  const server = await spawnServer(['--config', config, '--admin-port', String(await freePort()), ...storeArgs], {}, 60_000);
  t.teardown(() => server.stop());
  return { ...server, adminUrl: `http://127.0.0.1:${server.adminPort}` };
}

function remaining(answer: InspectAnswer): number[] {
  return answer.statuses.map((s) => s.limit_remaining);
}

/** What the body's buckets hold after `taken` requests took one token each: clients, user (its sliding window), ip, nope. */
function after(taken: number): number[] {
  return [...CLIENTS.map(() => 10 - taken), 6 - taken, 8 - taken, 0];
}

export interface ScenarioOptions {
  /** The store flags of serve and of the CLI. */
  storeArgs: string[];
  /** The CLI reads the server's buckets (Redis), or only its own empty ones (memory). */
  shared: boolean;
  /** Told the keys of the body's buckets (a Cluster checks they live on several masters). */
  keys?: (keys: string[]) => Promise<void>;
}

/**
 * Take, inspect (twice: nothing taken), deny, reset, inspect (full), admit
 * again; through the admin listener and through the CLI.
 */
export async function inspectAndReset(t: Test, options: ScenarioOptions): Promise<void> {
  const config = writeConfig(t);
  const server = await startServer(t, config, options.storeArgs);
  const check = (body: unknown): Promise<Answer> => post(`${server.httpUrl}/v1/check`, body);
  const inspect = async (body: unknown = BODY): Promise<InspectAnswer> => {
    const answer = await post(`${server.adminUrl}/v1/inspect`, body);
    t.equal(answer.status, 200, 'inspect answers 200');
    return answer.json as InspectAnswer;
  };
  const cli = (command: 'inspect' | 'reset', extra: string[] = []): Promise<CliResult> =>
    runCli([command, '--config', config, ...options.storeArgs, ...extra, ...ARGS]);

  for (let i = 0; i < 3; i++) t.equal((await check(BODY)).status, 200, `take ${i + 1}`);
  const first = await inspect();
  t.equal(first.domain, 'admin');
  t.same(remaining(first), after(3), 'inspect shows what 3 requests left');
  t.same(first.statuses.map((s) => s.code), ARGS.map(() => 'OK'));
  for (const status of first.statuses.slice(0, -1)) {
    t.type(status.key, 'string', 'a matched bucket names its key');
    t.ok(status.duration_until_reset_ms > 0, 'and when it is full again');
  }
  const user = first.statuses[CLIENTS.length]!;
  t.same(user.limits?.map((l) => l.limit_remaining), [7, 3], 'each of the user\'s limits');
  t.equal(user.key, user.limits?.[1]?.key, 'the descriptor names the most restrictive limit\'s bucket');
  const nope = first.statuses[ARGS.length - 1]!;
  t.equal(nope.limit, null, 'no limit matched');
  t.notOk('key' in nope, 'and no key');
  const keys = first.statuses.flatMap((s) => s.limits?.map((l) => l.key!) ?? (s.key === undefined ? [] : [s.key]));
  t.equal(keys.length, BUCKETS);
  await options.keys?.(keys);

  const again = await inspect();
  t.same(remaining(again), after(3), 'inspecting again: the same, inspect took nothing');
  t.same(again.statuses.map((s) => s.key), first.statuses.map((s) => s.key));

  const cliInspect = await cli('inspect');
  t.equal(cliInspect.code, 0, `CLI inspect exits 0 (${cliInspect.stderr})`);
  const fromCli = JSON.parse(cliInspect.stdout) as InspectAnswer;
  t.same(fromCli.statuses.map((s) => s.key), first.statuses.map((s) => s.key), 'the CLI finds the same buckets');
  t.same(remaining(fromCli), options.shared ? after(3) : after(0), options.shared ? 'and reads what the store holds' : 'its own buckets: full');
  if (!options.shared) t.match(cliInspect.stderr, /memory store lives inside a server process/);
  t.same(remaining(await inspect()), after(3), 'the CLI took nothing either');

  // Spend c0's bucket: denied (with Redis, the second denial comes from the sidecar's mirror).
  t.equal((await check({ descriptors: [BODY.descriptors[0]], hits_addend: 7 })).status, 200);
  for (let i = 0; i < 2; i++) t.equal((await check({ descriptors: [BODY.descriptors[0]] })).status, 429, `c0 denied (${i + 1})`);
  const spent = await inspect({ descriptors: [BODY.descriptors[0]] });
  t.equal(spent.statuses[0]!.code, 'OVER_LIMIT', 'inspect says why: over the limit');
  t.equal(spent.statuses[0]!.limit_remaining, 0);

  const reset = await post(`${server.adminUrl}/v1/reset`, BODY);
  t.same(reset, { status: 200, json: { reset: BUCKETS } }, 'reset deletes every matched bucket');
  const full = await inspect();
  t.same(remaining(full), after(0), 'inspect after reset: full');
  t.same(full.statuses[CLIENTS.length]!.limits?.map((l) => l.limit_remaining), [10, 6]);
  const admitted = await check({ descriptors: [BODY.descriptors[0]] });
  t.equal(admitted.status, 200, '/v1/check admits c0 again (its cached denial went with the reset)');
  t.same(await post(`${server.adminUrl}/v1/reset`, BODY), { status: 200, json: { reset: 1 } }, 'a second reset finds only what was taken since');

  // The same through the CLI.
  t.equal((await check(BODY)).status, 200);
  const cliReset = await cli('reset');
  t.equal(cliReset.code, 0, `CLI reset exits 0 (${cliReset.stderr})`);
  t.same(JSON.parse(cliReset.stdout), { reset: options.shared ? BUCKETS : 0 });
  t.match(cliReset.stderr, options.shared ? /running sidecars .* keep denying from their local copy .* admin listener/ : /memory store lives inside a server process/,
    'stderr says what the CLI reset does not reach');
  t.same(remaining(await inspect()), options.shared ? after(0) : after(1), options.shared ? 'the server sees the reset' : 'a memory store is the server\'s own');
  if (options.shared) {
    const cliFull = await cli('inspect');
    t.same(remaining(JSON.parse(cliFull.stdout) as InspectAnswer), after(0), 'CLI inspect: full');
    t.equal((await check(BODY)).status, 200, 'and /v1/check admits');
  }

  for (const path of ['/v1/inspect', '/v1/reset']) {
    t.equal((await post(`${server.httpUrl}${path}`, BODY)).status, 404, `the public port does not serve ${path}`);
  }
}

/** Bad bodies: 400 naming the field; bad command lines: exit 2. */
export async function badInput(t: Test, options: { storeArgs: string[] }): Promise<void> {
  const config = writeConfig(t);
  const server = await startServer(t, config, options.storeArgs);
  const cases: [string, unknown, string][] = [
    ['not json', 'not json', 'body'],
    ['no descriptors', { domain: 'admin' }, 'descriptors'],
    ['a value that is no string', { descriptors: [{ entries: [{ key: 'api_key', value: 7 }] }] }, 'descriptors[0].entries[0].value'],
    ['an unknown field', { descriptors: [], debt: 1 }, 'debt'],
    ['an unknown domain', { domain: 'nope', descriptors: [{ entries: [{ key: 'api_key', value: 'k' }] }] }, 'domain'],
    ['an empty descriptor list', { descriptors: [] }, 'descriptors'],
  ];
  for (const path of ['/v1/inspect', '/v1/reset']) {
    for (const [what, body, field] of cases) {
      const answer = await post(`${server.adminUrl}${path}`, body);
      t.equal(answer.status, 400, `${path}: ${what} → 400`);
      t.equal((answer.json as { error: { field: string } }).error.field, field, `naming ${field}`);
    }
  }
  const get = await fetch(`${server.adminUrl}/v1/inspect`);
  t.equal(get.status, 405, 'GET /v1/inspect → 405');
  t.equal(get.headers.get('allow'), 'POST');
  t.equal((await post(`${server.adminUrl}/v1/check`, {})).status, 404, 'the admin port serves only inspect and reset');

  const commandLines: [string, string[], RegExp][] = [
    ['a descriptor that is not key=value', ['inspect', '--config', config, ...options.storeArgs, 'api_key'], /"api_key" is not key=value/],
    ['no descriptor', ['reset', '--config', config, ...options.storeArgs], /give one key=value/],
    ['an unknown domain', ['inspect', '--config', config, ...options.storeArgs, '--domain', 'nope', 'api_key=k'], /"nope" is not a loaded domain/],
    ['an unknown flag', ['inspect', '--config', config, '--nope', 'api_key=k'], /unknown flag --nope/],
    ['a bad flag value', ['reset', '--config', config, '--redis-timeout-ms', 'soon', 'api_key=k'], /--redis-timeout-ms/],
    ['no config', ['inspect', ...options.storeArgs, 'api_key=k'], /--config/],
  ];
  for (const [what, args, message] of commandLines) {
    const result = await runCli(args);
    t.equal(result.code, 2, `${what}: exit 2`);
    t.match(result.stderr, message);
    t.equal(result.stdout, '', 'nothing on stdout');
  }
}

/** The store cannot be reached: exit 1, naming it, bounded by the connect wait. */
export async function unreachable(t: Test, deadStoreArgs: string[]): Promise<void> {
  const config = writeConfig(t);
  for (const command of ['inspect', 'reset']) {
    const result = await runCli([command, '--config', config, ...deadStoreArgs, '--redis-connect-wait-ms', '1000', 'api_key=k']);
    t.equal(result.code, 1, `${command}: exit 1`);
    t.match(result.stderr, /store unreachable|unreachable/, 'names the cause');
    t.equal(result.stdout, '');
  }
}
