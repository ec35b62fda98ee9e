// Servers under test, each one node process started as a child: ours
// (dist/main.js, built by `npm run bench`), the bare baselines and the peer.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts, sleep, spawnChild, stopChild, waitForPort, type Child } from './procs.js';

export interface ServerUnderTest {
  readonly name: string;
  readonly kind: 'baseline' | 'ours' | 'peer';
  readonly httpPort?: number;
  readonly grpcPort?: number;
  readonly pid: number | undefined;
  exited(): boolean;
  output(): string;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 20000;

/** BENCH_SERVER_ARGS: extra flags for our server (e.g. "--workers 2"), split on spaces. */
export const EXTRA_SERVER_ARGS = (process.env.BENCH_SERVER_ARGS ?? '').split(' ').filter((a) => a !== '');
/** BENCH_SERVER_NODE_ARGS: flags for node itself when it runs our server (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"). */
const SERVER_NODE_ARGS = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

function wrap(child: Child, kind: ServerUnderTest['kind'], ports: { httpPort?: number; grpcPort?: number }): ServerUnderTest {
  return {
    name: child.name,
    kind,
    ...ports,
    pid: child.proc.pid,
    exited: () => child.exited(),
    output: () => child.output(),
    stop: () => stopChild(child, 12000),
  };
}

/** `node dist/main.js serve` on free loopback ports; resolves once /readyz answers 200. */
export async function startOurServer(root: string, storeArgs: string[]): Promise<ServerUnderTest> {
  const [httpPort, grpcPort] = await freePorts(2);
  if (httpPort === undefined || grpcPort === undefined) throw new Error('no free ports');
  const child = spawnChild('openclaw-ratelimit', process.execPath, [
    ...SERVER_NODE_ARGS, join(root, 'dist', 'main.js'), 'serve',
    '--config', join(root, 'bench', 'bench.yaml'),
    '--host', '127.0.0.1', '--http-port', String(httpPort), '--grpc-port', String(grpcPort), '--admin-port', '0',
    '--log-level', 'warn',
    ...storeArgs,
    ...EXTRA_SERVER_ARGS,
  ], { cwd: root });
  const server = wrap(child, 'ours', { httpPort, grpcPort });
  try {
    await waitForPort(httpPort, START_TIMEOUT_MS, child);
    await waitForPort(grpcPort, START_TIMEOUT_MS, child);
    await waitReady(httpPort, child);
  } catch (error: unknown) {
    await server.stop();
    throw error;
  }
  return server;
}

async function waitReady(httpPort: number, child: Child): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    if (child.exited()) throw new Error(`${child.name} exited:\n${child.output()}`);
    try {
      const response = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
      last = `${response.status} ${await response.text()}`;
      if (response.status === 200) return;
    } catch (error: unknown) {
      last = String(error);
    }
    await sleep(100);
  }
  throw new Error(`/readyz not 200 after ${START_TIMEOUT_MS} ms (last: ${last})\n${child.output()}`);
}

/** A bench/servers/<name>.ts process (bare fastify, bare grpc-js, peer) on a free port. */
export async function startBareServer(name: 'bare-fastify' | 'bare-grpc' | 'peer-rlf', protocol: 'http' | 'grpc', extraArgs: string[] = []): Promise<ServerUnderTest> {
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error('no free port');
  const script = fileURLToPath(new URL(`./servers/${name}.ts`, import.meta.url));
  const child = spawnChild(name, process.execPath, ['--import', 'tsx', script, '--port', String(port), ...extraArgs]);
  const server = wrap(child, name === 'peer-rlf' ? 'peer' : 'baseline', protocol === 'http' ? { httpPort: port } : { grpcPort: port });
  try {
    await waitForPort(port, START_TIMEOUT_MS, child);
  } catch (error: unknown) {
    await server.stop();
    throw error;
  }
  return server;
}
