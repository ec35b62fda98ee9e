// A reload's compile, kept off the event loop: a worker thread
// (compile-worker.ts) reads, parses, validates and compiles the files (about
// a second for 10,000 descriptors), and hands back the validated files as
// short JSON texts (transfer.ts). The event loop then rebuilds and compiles
// them in slices of SLICE_MS, letting pending requests run between slices,
// so a decision waits at most about one slice for a reload. Nothing of the
// new config is visible until the caller swaps it in whole.
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { CompiledConfig } from '../core/config-model.js';
import { ConfigError, InternalError, errorMessage, type ConfigProblem } from '../errors.js';
import type { CompileSteps } from './compile-domain.js';
import { compileValidatedSteps, type LoadOptions } from './load.js';
import { unpackValidatedSteps, type TransferredFile } from './transfer.js';

/** What the worker is asked, one message per reload. */
export interface CompileRequest {
  path: string;
  options: LoadOptions;
  /** The signature of the sources last tried: the same again is answered 'unchanged' (file events). */
  skipIfSignature: string | undefined;
}

/** The worker's answer to one request. `signature` identifies what was read (sourcesSignature, or `unreadable:...`). */
export type CompileReply =
  | { kind: 'unchanged' }
  | { kind: 'checked'; signature: string; domains: TransferredFile[][] }
  | { kind: 'invalid'; signature: string; problems: ConfigProblem[] }
  | { kind: 'failed'; message: string };

export type CompileOutcome =
  | { kind: 'unchanged' }
  | { kind: 'cancelled' }
  | { kind: 'compiled'; signature: string; config: CompiledConfig }
  /** `signature` is undefined when the worker itself failed (nothing was read to compare). */
  | { kind: 'failed'; signature: string | undefined; error: unknown };

/**
 * The longest stretch the event loop spends on a reload before letting
 * pending I/O run. A step (one descriptor node, one JSON piece) takes
 * microseconds, so a slice overruns this by little.
 */
const SLICE_MS = 2;

/** Runs `steps` in slices of SLICE_MS with a turn of the event loop between; undefined once `signal` aborts. */
async function runInSlices<T>(steps: CompileSteps<T>, signal: AbortSignal): Promise<T | undefined> {
  for (;;) {
    const sliceEndMs = performance.now() + SLICE_MS;
    for (;;) {
      const step = steps.next();
      if (step.done === true) return step.value;
      if (performance.now() >= sliceEndMs) break;
    }
    await nextTurn();
    if (signal.aborted) return undefined;
  }
}

/**
 * The worker, started from this module's own kind of file: compile-worker.js
 * in the build. It gets none of the server's Node options: a preload (say,
 * instrumentation) is for the server, not for a compiler. Run from
 * TypeScript source (the tests, through tsx, a dev dependency), the worker
 * registers tsx itself: on Node 20 tsx registers its loader on the main
 * thread only.
 */
function startWorker(): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./compile-worker.js', here), { execArgv: [] });
  const entry = new URL('./compile-worker.ts', here).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const script = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(script, { eval: true, execArgv: [] });
}

/**
 * How long a worker waits for the next reload before it is stopped: a worker
 * that compiled a large config holds on to the memory it grew (hundreds of MB
 * for 10,000 descriptors); one that reloads again soon (queued reloads, a
 * burst of edits) is spared starting again.
 */
const WORKER_IDLE_MS = 2_000;

/**
 * Compiles reloads of one watcher, one at a time, each in a worker thread:
 * started by the first reload (it loads the parser and schema first, a few
 * hundred milliseconds), kept for the next one within WORKER_IDLE_MS, stopped
 * after. A worker that died is replaced at the next reload. Never keeps the
 * process alive.
 */
export class OffThreadCompiler {
  private worker: Worker | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  /**
   * Compiles `request.path` as compileSources would, without holding the
   * event loop for more than about SLICE_MS at a time. Never rejects: a bad
   * config is a 'failed' outcome whose error is the ConfigError compileSources
   * would have thrown. Once `signal` aborts, the outcome is 'cancelled'. One
   * call at a time.
   */
  async compile(request: CompileRequest, signal: AbortSignal): Promise<CompileOutcome> {
    if (this.closed || signal.aborted) return { kind: 'cancelled' };
    clearTimeout(this.idleTimer);
    const reply = await this.ask(request, signal);
    if (!this.closed) {
      this.idleTimer = setTimeout(() => this.stopWorker(), WORKER_IDLE_MS);
      this.idleTimer.unref();
    }
    if (reply === undefined || signal.aborted) return { kind: 'cancelled' };
    switch (reply.kind) {
      case 'unchanged':
        return reply;
      case 'invalid':
        return { kind: 'failed', signature: reply.signature, error: new ConfigError(reply.problems) };
      case 'failed':
        return { kind: 'failed', signature: undefined, error: new InternalError(reply.message) };
      case 'checked':
        break;
    }
    const { path } = request;
    try {
      const config = await runInSlices((function* build(): CompileSteps<CompiledConfig> {
        return yield* compileValidatedSteps(path, yield* unpackValidatedSteps(reply.domains));
      })(), signal);
      return config === undefined ? { kind: 'cancelled' } : { kind: 'compiled', signature: reply.signature, config };
    } catch (error: unknown) {
      return { kind: 'failed', signature: reply.signature, error };
    }
  }

  /** Stops the worker; compile() answers 'cancelled' from now on. */
  close(): void {
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.stopWorker();
  }

  private stopWorker(): void {
    void this.worker?.terminate();
    this.worker = undefined;
  }

  /** The worker's answer (undefined once `signal` aborts); a worker that fails or exits is a 'failed' reply. */
  private ask(request: CompileRequest, signal: AbortSignal): Promise<CompileReply | undefined> {
    return new Promise((resolve) => {
      let worker: Worker;
      try {
        worker = this.worker ?? startWorker();
      } catch (error: unknown) {
        resolve({ kind: 'failed', message: `cannot start the config compile worker: ${errorMessage(error)}` });
        return;
      }
      if (this.worker === undefined) {
        this.worker = worker;
        worker.unref();
        worker.once('exit', () => {
          if (this.worker === worker) this.worker = undefined;
        });
      }
      const settle = (reply: CompileReply | undefined): void => {
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        signal.removeEventListener('abort', onAbort);
        resolve(reply);
      };
      const onMessage = (reply: CompileReply): void => settle(reply);
      const onError = (error: unknown): void => settle({ kind: 'failed', message: `the config compile worker failed: ${errorMessage(error)}` });
      const onExit = (code: number): void => settle({ kind: 'failed', message: `the config compile worker exited (code ${code}) without an answer` });
      const onAbort = (): void => {
        this.close();
        settle(undefined);
      };
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
      signal.addEventListener('abort', onAbort, { once: true });
      worker.postMessage(request);
    });
  }
}
