// Shared scaffolding of the deploy tests: free loopback ports, bounded polling,
// child processes that are always stopped, and the built server.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTool } from '../../helpers/tools.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const SERVER_ENTRY = join(REPO_ROOT, 'dist', 'main.js');

/** Why a test cannot run, or undefined. Missing dist/main.js is a failure the caller reports. */
export function missingServerBuild(): string | undefined {
  return existsSync(SERVER_ENTRY)
    ? undefined
    : `${SERVER_ENTRY} is missing: run "npm run build" first (npm test does)`;
}

/**
 * Whether an external tool (nginx, kubectl, promtool) is installed, found on
 * PATH (test/helpers/tools.ts). Under `npm run test:all` (RL_REQUIRE_TOOLS=1,
 * which installs them) and in CI (CI=true) a missing tool is a failure, so a
 * machine without it cannot pass silently; a bare `npm test` skips the test
 * with the reason.
 */
export function toolAvailability(name: string): { ok: true; path: string } | { ok: false; reason: string; fail: boolean } {
  const path = findTool(name);
  if (path !== undefined) return { ok: true, path };
  return {
    ok: false,
    reason: `${name} is not installed (not on PATH; scripts/install-test-tools.sh installs it)`,
    fail: process.env.CI === 'true' || process.env.RL_REQUIRE_TOOLS === '1',
  };
}

export function makeTempDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export { waitFor } from '../../helpers/wait.js';
import { waitFor } from '../../helpers/wait.js';

/** fetch with a deadline, so no test hangs on a stuck peer. */
export async function get(url: string, headers: Record<string, string> = {}, timeoutMs = 5_000): Promise<Response> {
  return fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
}

export interface Child {
  process: ChildProcess;
  output: () => string;
  /** Sends `signal`, waits up to `timeoutMs`, then SIGKILL. Resolves with the exit code (null if killed). */
  stop: (signal?: NodeJS.Signals, timeoutMs?: number) => Promise<number | null>;
  exited: Promise<number | null>;
}

/** Spawns a child whose stdout+stderr are kept (last 64 KiB) for failure messages. */
export function startChild(command: string, args: string[], env: NodeJS.ProcessEnv = process.env, cwd = REPO_ROOT): Child {
  const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-65_536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((done) => {
    if (child.exitCode !== null) done(child.exitCode);
    child.on('exit', (code) => done(code));
    child.on('error', () => done(null));
  });
  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 5_000): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  return { process: child, output: () => output, stop, exited };
}

/** Environment for the server without any RL_* variable of the caller's shell. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('RL_')) env[name] = value;
  }
  return { ...env, ...extra };
}

export interface RunningServer extends Child {
  httpPort: number;
  grpcPort: number;
  base: string;
}

/** Starts `node dist/main.js serve` with `configYaml` on free loopback ports and waits for /readyz. */
export async function startRateLimitServer(
  configDir: string,
  configYaml: string,
  extraArgs: string[] = [],
): Promise<RunningServer> {
  const configPath = join(configDir, 'ratelimit.yaml');
  writeFileSync(configPath, configYaml);
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const child = startChild(process.execPath, [
    SERVER_ENTRY, 'serve',
    '--config', configPath,
    '--http-port', String(httpPort),
    '--grpc-port', String(grpcPort),
    '--admin-port', '0',
    '--host', '127.0.0.1',
    '--log-level', 'warn',
    ...extraArgs,
  ], cleanEnv());
  const base = `http://127.0.0.1:${httpPort}`;
  try {
    await waitFor(`openclaw-ratelimit on ${base}/readyz`, async () => {
      if (child.process.exitCode !== null) throw new Error(`server exited with ${child.process.exitCode}: ${child.output()}`);
      return (await get(`${base}/readyz`, {}, 1_000)).status === 200;
    }, 15_000);
  } catch (error: unknown) {
    await child.stop('SIGKILL');
    throw error;
  }
  return { ...child, httpPort, grpcPort, base };
}

/** Runs a command to completion with a deadline. */
export function run(command: string, args: string[], timeoutMs = 60_000): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(command, args, { cwd: REPO_ROOT, encoding: 'utf8', timeout: timeoutMs });
  return {
    status: result.status,
    stdout: result.stdout ?? '',
    stderr: (result.stderr ?? '') + (result.error === undefined ? '' : String(result.error)),
  };
}
