import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  httpUrl: string;
  httpPort: number;
  grpcPort: number;
  /** The admin listener's port (spawnServer binds it to a free one). */
  adminPort: number;
  output(): string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/** Runs `node dist/main.js serve ...` (built by `npm test`), waits until it listens; ports 0 = free ports. */
export async function spawnServer(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 15_000): Promise<ServerProcess> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first`);
  const child = spawn(process.execPath, [MAIN, 'serve', '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--admin-port', '0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout!.on('data', (chunk: Buffer) => { text += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => { text += chunk.toString(); });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const listening = await new Promise<{ httpPort: number; grpcPort: number; adminPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Nobody gets a handle on a server that did not start: kill it here or it outlives the test.
      child.kill('SIGKILL');
      reject(new Error(`server did not start in ${timeoutMs} ms (killed):\n${text}`));
    }, timeoutMs);
    const poll = setInterval(() => {
      const line = text.split('\n').find((l) => l.includes('"openclaw-ratelimit listening"'));
      if (line !== undefined) {
        clearInterval(poll);
        clearTimeout(timer);
        const parsed = JSON.parse(line) as { httpPort: number; grpcPort: number; adminPort?: number };
        resolve({ httpPort: parsed.httpPort, grpcPort: parsed.grpcPort, adminPort: parsed.adminPort ?? 0 });
      }
    }, 20);
    void exited.then((code) => {
      clearInterval(poll);
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before listening:\n${text}`));
    });
  });
  return {
    child,
    ...listening,
    httpUrl: `http://127.0.0.1:${listening.httpPort}`,
    output: () => text,
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export { waitFor } from './wait.js';
