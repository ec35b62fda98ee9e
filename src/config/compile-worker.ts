// The reload worker (a worker_threads entry): for each request, reads the
// config files, parses, validates and compiles them off the event loop, and
// answers with what compile-off-thread.ts adopts. Every problem is found
// here, with its file:line:column; the event loop only rebuilds a config
// already known to be good.
import { parentPort } from 'node:worker_threads';
import { ConfigError, errorMessage } from '../errors.js';
import type { CompileRequest, CompileReply } from './compile-off-thread.js';
import { readConfigSources, sourcesSignature, validateSources, type ConfigSource } from './load.js';
import { packValidated } from './transfer.js';

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
