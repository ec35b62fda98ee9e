// The benchmark is its own package (bench/package.json, an npm workspace):
// it reaches the product only through what the product ships (dist/main.js,
// proto/, lua/, found by path at run time) and the shared test support in
// test/helpers/, never through src/. Every package it imports is its own
// declared dependency, and its load tools are none of the product's.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const BENCH = join(ROOT, 'bench');

function benchFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : benchFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every module a file names: static imports, re-exports, side-effect imports, dynamic import() and reference paths. */
function importsOf(text: string): string[] {
  const found: string[] = [];
  const forms = /(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*'([^']+)'|(?:^|\n)\s*import\s*'([^']+)'|\bimport\(\s*'([^']+)'\s*\)|\/\/\/\s*<reference path="([^"]+)"/g;
  for (const match of text.matchAll(forms)) found.push((match[1] ?? match[2] ?? match[3] ?? match[4])!);
  return found;
}

function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

const files = benchFiles(BENCH);
const benchPackage = JSON.parse(readFileSync(join(BENCH, 'package.json'), 'utf8')) as { devDependencies?: Record<string, string>; dependencies?: Record<string, string> };
const productPackage = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string>; dependencies: Record<string, string>; workspaces?: string[] };

t.test('bench/ imports its own files and test/helpers/, nothing of src/', async (t) => {
  const outside: string[] = [];
  for (const file of files) {
    for (const specifier of importsOf(readFileSync(file, 'utf8')).filter((s) => s.startsWith('.'))) {
      const target = relative(ROOT, resolve(dirname(file), specifier));
      if (!target.startsWith('bench/') && !target.startsWith('test/helpers/')) outside.push(`${relative(ROOT, file)} imports '${specifier}'`);
    }
  }
  t.same(outside, [], 'no import outside bench/ and test/helpers/');
});

t.test('every package bench/ imports is declared in bench/package.json', async (t) => {
  const declared = new Set(Object.keys({ ...benchPackage.dependencies, ...benchPackage.devDependencies }));
  const undeclared = new Set<string>();
  for (const file of files) {
    for (const specifier of importsOf(readFileSync(file, 'utf8'))) {
      if (specifier.startsWith('.') || specifier.startsWith('node:')) continue;
      if (!declared.has(packageOf(specifier))) undeclared.add(`${relative(ROOT, file)}: ${specifier}`);
    }
  }
  t.same([...undeclared], []);
  t.same(productPackage.workspaces, ['bench'], 'the root installs bench/ as its workspace');
});

t.test('the product\'s package.json lists none of the packages only the bench uses', async (t) => {
  const product = new Set(Object.keys({ ...productPackage.dependencies, ...productPackage.devDependencies }));
  const used = new Set(files.flatMap((file) => importsOf(readFileSync(file, 'utf8'))).filter((s) => !s.startsWith('.') && !s.startsWith('node:')).map(packageOf));
  for (const load of ['autocannon', 'hpack.js', 'rate-limiter-flexible']) {
    t.ok(used.has(load), `the bench uses ${load}`);
    t.notOk(product.has(load), `the product does not list ${load}`);
  }
});

t.test('the import reader sees every form of import (so the rules above cannot pass vacuously)', async (t) => {
  const sample = [
    '/// <reference path="./a.d.ts" />',
    "import t from 'tap';",
    "import type { A } from './a.js';",
    "import {\n  b,\n  c,\n} from '../b.js';",
    "export { d } from './d.js';",
    "import 'side-effect';",
    "const f = await import('./f.js');",
  ].join('\n');
  t.same(importsOf(sample), ['./a.d.ts', 'tap', './a.js', '../b.js', './d.js', 'side-effect', './f.js']);
  t.ok(files.length > 25, `found the bench's files (${files.length})`);
});
