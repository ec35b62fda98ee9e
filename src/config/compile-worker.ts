// The reload worker (a worker_threads entry): for each request, reads the
// config files, parses, validates and compiles them off the event loop, and
// answers with what compile-off-thread.ts adopts. Every problem is found
// here, with its file:line:column; the event loop only rebuilds a config
// already known to be good.
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import type { CompileRequest, CompileReply } from './compile-off-thread.js';
import type { ConfigSource } from './load.js';

/**
 * Decisions come first: on a busy machine the kernel should run the event
 * loop before this thread. Linux keeps a nice value per thread
 * (/proc/thread-self names this one); elsewhere the thread keeps the
 * process's priority. Set before the parser and schema are loaded (below):
 * loading them is a few hundred milliseconds of CPU at every worker start.
 */
const LOWER_PRIORITY = 10;
try {
  const threadId = Number(readlinkSync('/proc/thread-self').split('/').at(-1));
  if (Number.isSafeInteger(threadId) && threadId > 0) setPriority(threadId, LOWER_PRIORITY);
} catch {
  // not Linux, or not allowed: the compile runs at the process's priority
}

const [{ ConfigError, errorMessage }, { readConfigSources, sourcesSignature, validateSources }, { packValidated }] =
  await Promise.all([import('../errors.js'), import('./load.js'), import('./transfer.js')]);

function answer(request: CompileRequest): CompileReply {
  let sources: ConfigSource[];
  try {
    sources = readConfigSources(request.path);
  } catch (error: unknown) {
    const signature = `unreadable:${errorMessage(error)}`;
    if (signature === request.skipIfSignature) return { kind: 'unchanged' };
    if (error instanceof ConfigError) return { kind: 'invalid', signature, problems: [...error.problems] };
    return { kind: 'failed', message: errorMessage(error) };
  }
  const signature = sourcesSignature(sources);
  if (signature === request.skipIfSignature) return { kind: 'unchanged' };
  try {
    return { kind: 'checked', signature, domains: packValidated(validateSources(request.path, sources, request.options)) };
  } catch (error: unknown) {
    if (error instanceof ConfigError) return { kind: 'invalid', signature, problems: [...error.problems] };
    return { kind: 'failed', message: errorMessage(error) };
  }
}

parentPort?.on('message', (request: CompileRequest) => parentPort?.postMessage(answer(request)));
