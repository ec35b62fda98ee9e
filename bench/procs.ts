// Child processes of the bench: spawned here, all stopped at the end, on
// Ctrl-C and on a crash, so no redis-server or server outlives a run.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /** Last lines of stdout+stderr, for failure messages. */
  output(): string;
  /** True once the process has exited. */
  exited(): boolean;
}

const OUTPUT_TAIL_CHARS = 4000;
const children = new Set<Child>();

/** Spawns a tracked child; its output is kept (tail only) rather than printed. */
export function spawnChild(name: string, command: string, args: string[], options: SpawnOptions = {}): Child {
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let tail = '';
  let done = false;
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const child: Child = { name, proc, output: () => tail, exited: () => done };
  proc.on('exit', () => {
    done = true;
    children.delete(child);
  });
  proc.on('error', (error: Error) => {
    tail += `\nspawn error: ${error.message}`;
    done = true;
    children.delete(child);
  });
  children.add(child);
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child is gone. */
export async function stopChild(child: Child, graceMs = 3000): Promise<void> {
  if (child.exited() || child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.proc.once('exit', () => resolve()));
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
}

/** Stops every child still running (in parallel). */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((child) => stopChild(child)));
}

const tempDirs = new Set<string>();

/** A fresh directory under the OS temp dir, removed by removeTempDir or at exit. */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** Last-resort synchronous kill, for process 'exit' where nothing async runs. */
function killAllNow(): void {
  for (const child of children) {
    try {
      child.proc.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}

let installed = false;

/** Stop children on Ctrl-C / SIGTERM / uncaught errors, then exit. */
export function installCleanup(onSignal: () => Promise<void>): void {
  if (installed) return;
  installed = true;
  const bail = (reason: string, code: number): void => {
    process.stderr.write(`\nbench: ${reason}; stopping child processes\n`);
    void onSignal().finally(() => process.exit(code));
    setTimeout(() => {
      killAllNow();
      process.exit(code);
    }, 8000).unref();
  };
  process.once('SIGINT', () => bail('interrupted', 130));
  process.once('SIGTERM', () => bail('terminated', 143));
  process.on('uncaughtException', (error: unknown) => bail(`uncaught ${String(error)}`, 1));
  process.on('unhandledRejection', (error: unknown) => bail(`unhandled rejection ${String(error)}`, 1));
  process.on('exit', killAllNow);
}

/** A loopback TCP port that was free a moment ago. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** `count` distinct free ports (and, for Redis Cluster, port+10000 free too). */
export async function freePorts(count: number, withBusPort = false): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < count) {
    const port = await freePort();
    if (ports.includes(port)) continue;
    if (withBusPort && (port + 10000 > 65535 || !(await isFree(port + 10000)))) continue;
    ports.push(port);
  }
  return ports;
}

async function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Resolves once something accepts TCP on the port; throws after `timeoutMs` or if `child` dies. */
export async function waitForPort(port: number, timeoutMs: number, child?: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child?.exited() === true) {
      throw new Error(`${child.name} exited before listening on ${port}:\n${child.output()}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) {
      throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms${child ? `; ${child.name} said:\n${child.output()}` : ''}`);
    }
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs a command to completion; resolves with its exit code and output. */
export async function runCommand(command: string, args: string[], timeoutMs = 30000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8'); });
    proc.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('error', (error: Error) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: stderr + error.message });
    });
    proc.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
