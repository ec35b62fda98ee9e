// The shape of the code, checked: imports run one way (core ← store/config/
// telemetry ← service ← transport ← server), the core is pure, no source file
// outgrows one concern, and each test sits in the tier that says what it starts.
// A new import that breaks a rule fails here with the file and the import.
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SRC = join(ROOT, 'src');
const MAX_SOURCE_LINES = 400;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every module a file names: static imports, re-exports and dynamic import(). */
function importsOf(text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*'([^']+)'|(?:^|\n)\s*import\s*'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/g)) {
    found.push((match[1] ?? match[2] ?? match[3])!);
  }
  return found;
}

/** Where a module sits: "core", "store", … for folders, "app.ts" for a top-level file, "pkg:x" for packages. */
function areaOf(file: string, specifier: string): string {
  if (!specifier.startsWith('.')) {
    if (specifier.startsWith('node:')) return 'node:';
    const parts = specifier.split('/');
    return `pkg:${specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]}`;
  }
  const target = relative(SRC, resolve(dirname(file), specifier)).replace(/\.js$/, '.ts');
  return target.includes('/') ? target.split('/')[0]! : target;
}

/**
 * What each layer may import. server/ (the command line, the composition
 * root, workers, settings) and main.ts (the executable) compose the program
 * and may import anything; nothing listed may import them.
 */
const ALLOWED: Record<string, readonly string[]> = {
  'errors.ts': [],
  core: ['core', 'errors.ts', 'pkg:ipaddr.js'],
  store: ['store', 'core', 'errors.ts', 'node:', 'pkg:ioredis'],
  config: ['config', 'core', 'errors.ts', 'node:', 'pkg:zod', 'pkg:yaml'],
  telemetry: ['telemetry', 'core', 'errors.ts', 'node:', 'pkg:pino', 'pkg:prom-client'],
  service: ['service', 'core', 'errors.ts', 'telemetry'],
  transport: ['transport', 'core', 'errors.ts', 'service', 'telemetry', 'node:', 'pkg:@grpc/grpc-js', 'pkg:@grpc/proto-loader', 'pkg:fastify'],
};

const files = sourceFiles(SRC);

t.test('imports run from the edges to the core, never back', async (t) => {
  const violations: string[] = [];
  for (const file of files) {
    const rel = relative(SRC, file);
    const area = rel.includes('/') ? rel.split('/')[0]! : rel;
    const allowed = ALLOWED[area];
    if (allowed === undefined) continue;
    for (const specifier of importsOf(readFileSync(file, 'utf8'))) {
      const target = areaOf(file, specifier);
      if (!allowed.includes(target)) violations.push(`src/${rel} imports '${specifier}' (${target})`);
    }
  }
  t.same(violations, [], 'no import outside its layer');
});

t.test('the core is pure: no node:*, no Redis client, no metrics, no clock of its own', async (t) => {
  for (const file of files.filter((f) => relative(SRC, f).startsWith('core/'))) {
    const text = readFileSync(file, 'utf8');
    t.notMatch(text, /\bDate\.now\(\)|performance\.now\(\)|process\.hrtime/, `${relative(ROOT, file)} reads no clock (it is passed in)`);
    t.notMatch(text, /\bprocess\./, `${relative(ROOT, file)} touches no process state`);
  }
});

t.test(`no file in src/ is over ${MAX_SOURCE_LINES} lines`, async (t) => {
  const long = files
    .map((file) => ({ file: relative(ROOT, file), lines: readFileSync(file, 'utf8').split('\n').length }))
    .filter(({ lines }) => lines > MAX_SOURCE_LINES);
  t.same(long, [], 'each file one concern');
});

t.test('the import reader sees every form of import (so the rules above cannot pass vacuously)', async (t) => {
  const sample = [
    "import t from 'tap';",
    "import type { A } from './a.js';",
    "import {\n  b,\n  c,\n} from '../b.js';",
    "export { d } from './d.js';",
    "export type { E } from './e.js';",
    "import 'side-effect';",
    "const f = await import('./f.js');",
  ].join('\n');
  t.same(importsOf(sample), ['tap', './a.js', '../b.js', './d.js', './e.js', 'side-effect', './f.js']);
  t.ok(files.length > 40, `found the sources (${files.length} files)`);
});

// The test tiers (docs/development.md, "Tests"): the folder a test is in says
// what it may start, so `npm run test:unit` stays fast and needs nothing
// installed, and `npm run test:integration` needs no build.
const TEST = join(ROOT, 'test');
const TIERS = ['unit', 'integration', 'system', 'fuzz'];
const testFiles = sourceFiles(TEST).filter((file) => file.endsWith('.test.ts')).map((file) => relative(TEST, file));

t.test('every test is in one tier and starts no more than its tier allows', async (t) => {
  t.same(testFiles.filter((file) => !TIERS.includes(file.split('/')[0]!)), [], `every test is under test/{${TIERS.join(',')}}`);
  const inTier = (tier: string, starts: (specifier: string) => boolean, calls: RegExp) => testFiles.filter((file) => {
    const text = readFileSync(join(TEST, file), 'utf8');
    return file.startsWith(`${tier}/`) && (importsOf(text).some(starts) || calls.test(text));
  });
  const SOCKET_OR_PROCESS = /^node:(child_process|net|http|http2|worker_threads)$|\/helpers\/(redis|process|server|delay-proxy|tls|http1|raw-http2)\.js$|\/app-harness\.js$/;
  t.same(inTier('unit', (specifier) => SOCKET_OR_PROCESS.test(specifier), /\bstartHarness\(/), [],
    'a unit test opens no socket and starts no process (no Redis, no server, no child)');
  t.same(inTier('integration', (specifier) => specifier.endsWith('/helpers/process.js'), /dist\/main\.js/), [],
    'an integration test starts no node dist/main.js (the system tier does)');
  t.ok(testFiles.length > 90, `found the tests (${testFiles.length} files)`);
});
