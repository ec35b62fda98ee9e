// A reload checks the files in a worker and hands the event loop the validated
// files as JSON pieces; the event loop compiles them in steps. What it builds
// must be exactly what start-up builds from the same files.
import t, { type Test } from 'tap';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CompileSteps } from '../../../src/config/compile-domain.js';
import { compileSources, compileValidatedSteps, readConfigSources, validateSources, type LoadOptions } from '../../../src/config/load.js';
import { packValidated, unpackValidatedSteps } from '../../../src/config/transfer.js';
import type { CompiledConfig } from '../../../src/core/config-model.js';
import { LazyRuleNode, matchRule, type RuleNode } from '../../../src/core/rules.js';
import { bigConfigYaml } from '../../helpers/big-config.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'rl-transfer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs steps to the end; also says how many times they paused. */
function drain<T>(steps: CompileSteps<T>): { value: T; pauses: number } {
  let pauses = 0;
  for (;;) {
    const step = steps.next();
    if (step.done === true) return { value: step.value, pauses };
    pauses++;
  }
}

/** The reload's way: check, pack, cross a thread boundary (structured clone), unpack and compile in steps. */
function viaReload(path: string, options: LoadOptions = {}): { config: CompiledConfig; pauses: number } {
  const packed = structuredClone(packValidated(validateSources(path, readConfigSources(path), options)));
  const unpacked = drain(unpackValidatedSteps(packed));
  const compiled = drain(compileValidatedSteps(path, unpacked.value));
  return { config: compiled.value, pauses: unpacked.pauses + compiled.pauses };
}

/** A node as plain data, read through the RuleNode interface: a lazy node is compiled by the reading. */
function plainNode(node: RuleNode): unknown {
  const children = (map: ReadonlyMap<string, RuleNode>): Map<string, unknown> =>
    new Map([...map].map(([key, child]) => [key, plainNode(child)]));
  return {
    rule: node.rule,
    exact: children(node.exact),
    wildcards: node.wildcards.map(({ key, parts, node: child }) => ({ key, parts, node: plainNode(child) })),
    keyOnly: children(node.keyOnly),
  };
}

/** What a config holds, its load time aside, every node compiled. */
function withoutLoadTime(config: CompiledConfig): unknown {
  const domains = new Map([...config.domains].map(([name, domain]) => [name, { ...domain, root: plainNode(domain.root) }]));
  return { ...config, domains, loadedAtMs: 0 };
}

function frozenThroughout(value: unknown, path = 'document'): string[] {
  if (value === null || typeof value !== 'object') return [];
  const here = Object.isFrozen(value) ? [] : [path];
  return [...here, ...Object.entries(value).flatMap(([key, child]) => frozenThroughout(child, `${path}.${key}`))];
}

const goodFiles = [
  ...readdirSync(join(ROOT, 'examples')).filter((name) => name.endsWith('.yaml')).map((name) => join(ROOT, 'examples', name)),
  ...['good', 'envoy-format'].flatMap((dir) => readdirSync(join(import.meta.dirname, 'fixtures', dir))
    .filter((name) => name.endsWith('.yaml')).map((name) => join(import.meta.dirname, 'fixtures', dir, name))),
];

t.test('every good config builds the same through the reload path as at start-up', async (t) => {
  t.ok(goodFiles.length >= 6, `${goodFiles.length} files`);
  for (const file of goodFiles) {
    const { config } = viaReload(file);
    t.same(withoutLoadTime(config), withoutLoadTime(compileSources(file, readConfigSources(file))), file);
    for (const domain of config.domains.values()) t.same(frozenThroughout(domain.document), [], `${file}: the document is frozen`);
  }
});

t.test('merged domains (--merge-domains) build the same through the reload path', async (t) => {
  const dir = join(import.meta.dirname, 'fixtures', 'envoy-format', 'merge');
  const options = { mergeDomains: true };
  t.same(withoutLoadTime(viaReload(dir, options).config), withoutLoadTime(compileSources(dir, readConfigSources(dir), options)));
});

t.test('a document keeps what was written: empty and null descriptor lists, free-form metadata, key order', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), [
    'domain: shop',
    'descriptors:',
    '  - key: plan',
    '    value: free',
    '    descriptors:',
    '    metadata: { owner: team-a, tags: [x, y], nested: { n: 1 } }',
    '  - key: path',
    '    descriptors: []',
    '    rate_limit: { unit: minute, requests_per_unit: 3 }',
    '',
  ].join('\n'));
  const { config } = viaReload(dir);
  const document = config.domains.get('shop')!.document;
  t.same(document, compileSources(dir, readConfigSources(dir)).domains.get('shop')!.document);
  t.same(Object.keys((document as { descriptors: object[] }).descriptors[1]!), ['key', 'descriptors', 'rate_limit'], 'keys in the order written');
});

t.test('a large config is built in steps, one pause per top-level node, and its nodes compile on first use', async (t) => {
  const dir = tempDir(t);
  const count = 2_000;
  const path = join(dir, 'big.yaml');
  writeFileSync(path, bigConfigYaml(count));
  const { config, pauses } = viaReload(path);
  t.ok(pauses >= count, `${pauses} pauses for ${count} top-level nodes`);
  const root = config.domains.get('big')!.root;
  const top = [...root.exact.values()];
  t.equal(top.length, count);
  t.ok(top.every((node) => node instanceof LazyRuleNode && !node.isCompiled), 'no node compiled by the reload itself');
  const rule = matchRule(root, [{ key: 'api_key', value: 'key-5' }]);
  t.equal(rule?.limits[0]?.spec.requestsPerUnit, 55, 'a lookup compiles the node it reaches');
  t.equal(top.filter((node) => (node as LazyRuleNode).isCompiled).length, 1, 'and no other');
  const nested = matchRule(root, [{ key: 'tenant', value: 'tenant-10' }, { key: 'path', value: '/api/v1/items' }]);
  t.equal(nested?.limits[0]?.spec.requestsPerUnit, 110, 'nested nodes compile on the way down');
  t.same(withoutLoadTime(config), withoutLoadTime(compileSources(path, readConfigSources(path))));
});

t.test('one node with thousands of children crosses in many pieces', async (t) => {
  const dir = tempDir(t);
  const children = Array.from({ length: 3_000 }, (_, i) =>
    `      - key: user\n        value: user-${i}\n        rate_limit: { unit: hour, requests_per_unit: ${i + 1} }`);
  writeFileSync(join(dir, 'wide.yaml'), `domain: wide\ndescriptors:\n  - key: tenant\n    value: one\n    descriptors:\n${children.join('\n')}\n`);
  const path = join(dir, 'wide.yaml');
  const file = packValidated(validateSources(path, readConfigSources(path)))[0]![0]!;
  t.ok(file.pieces.length > 10, `${file.pieces.length} pieces`);
  t.ok(file.pieces.every((piece) => piece.length < 64 * 1024), 'each piece is short');
  t.same(withoutLoadTime(viaReload(path).config), withoutLoadTime(compileSources(path, readConfigSources(path))));
});
