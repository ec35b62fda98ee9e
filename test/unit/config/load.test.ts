import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkConfig, loadConfig } from '../../../src/config/load.js';
import { exactKey, type CompiledRule, type RuleNode } from '../../../src/core/rules.js';
import { compileLimit } from '../../../src/core/limit.js';
import { ConfigError } from '../../../src/errors.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const EXAMPLE = join(ROOT, 'examples', 'openclaw.yaml');
const FULL = join(import.meta.dirname, 'fixtures', 'good', 'full-format.yaml');

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'rl-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function child(node: RuleNode, key: string, value?: string): RuleNode {
  const found = value === undefined ? node.keyOnly.get(key) : node.exact.get(exactKey(key, value));
  if (found === undefined) throw new Error(`no child ${key}=${value ?? '(any)'}`);
  return found;
}

function ruleOf(node: RuleNode): CompiledRule {
  if (node.rule === undefined) throw new Error('node has no rule');
  return node.rule;
}

const MINIMAL = 'domain: shop\ndescriptors:\n  - key: api_key\n    rate_limit: { unit: second, requests_per_unit: 5 }\n';

t.test('the SPEC example compiles into the expected rule tree', async (t) => {
  const config = loadConfig(EXAMPLE);
  t.equal(config.source, EXAMPLE);
  t.same([...config.domains.keys()], ['openclaw']);
  const domain = config.domains.get('openclaw')!;
  t.equal(domain.name, 'openclaw');
  t.equal(domain.source, EXAMPLE);
  t.equal(domain.algorithm, 'token_bucket');
  const root = domain.root;
  t.equal(root.rule, undefined, 'the root has no rule');
  t.same([...root.keyOnly.keys()], ['api_key', 'remote_address', 'health']);
  t.same([...root.exact.keys()], [exactKey('api_key', 'vip-key'), exactKey('path', '/rating')]);
  t.same(root.wildcards, []);

  const perKey = ruleOf(child(root, 'api_key'));
  const perKeyLimit = compileLimit({ requestsPerUnit: 10, unit: 'second', burst: 20, algorithm: 'token_bucket' });
  t.same(perKey, {
    id: 'api_key',
    limits: [{
      spec: perKeyLimit,
      keyPrefix: '8:openclaw:tb10sb20',
      policyName: 'api_key',
      policy: { item: '"api_key"', policy: '"api_key";q=20;w=2' },
      reported: { requestsPerUnit: 10, unit: 'second', name: undefined, burst: 20 },
    }],
    unlimited: false,
    quotaMode: false,
    shadow: false,
    detailedMetric: false,
    replaces: [],
    sharedValues: undefined,
  });
  const vip = ruleOf(child(root, 'api_key', 'vip-key'));
  t.equal(vip.id, 'api_key_vip-key');
  t.equal(vip.limits[0]?.spec.requestsPerUnit, 1000);
  t.equal(vip.limits[0]?.spec.burst, 1000, 'burst defaults to requests_per_unit');
  t.equal(vip.limits[0]?.keyPrefix, '8:openclaw:tb1000sb1000');

  const perAddress = ruleOf(child(root, 'remote_address'));
  t.equal(perAddress.limits[0]?.spec.unit, 'minute');
  t.equal(perAddress.limits[0]?.spec.requestsPerUnit, 600);

  const rating = child(root, 'path', '/rating');
  t.equal(rating.rule, undefined, 'a node without rate_limit has no rule');
  const ratingPerKey = ruleOf(child(rating, 'api_key'));
  t.equal(ratingPerKey.id, 'path_/rating.api_key');
  t.equal(ratingPerKey.shadow, true);
  t.equal(ratingPerKey.limits[0]?.spec.requestsPerUnit, 5);

  const health = ruleOf(child(root, 'health'));
  t.equal(health.limits[0], undefined, 'unlimited has no limit');
  t.equal(health.unlimited, true);

  t.same(domain.httpDescriptors, [
    [{ type: 'request_headers', headerName: 'x-api-key', descriptorKey: 'api_key', skipIfAbsent: false }],
    [{ type: 'remote_address' }],
    [
      { type: 'request_headers', headerName: ':path', descriptorKey: 'path', skipIfAbsent: false },
      { type: 'request_headers', headerName: 'x-api-key', descriptorKey: 'api_key', skipIfAbsent: false },
    ],
  ]);
  const document = domain.document as { domain: string; descriptors: { rate_limit?: unknown }[] };
  t.equal(document.domain, 'openclaw');
  t.same(document.descriptors[0]?.rate_limit, { unit: 'second', requests_per_unit: 10, burst: 20 });
});

t.test('what loadConfig returns is frozen', async (t) => {
  const config = loadConfig(EXAMPLE);
  const domain = config.domains.get('openclaw')!;
  t.ok(Object.isFrozen(config));
  t.ok(Object.isFrozen(domain));
  t.ok(Object.isFrozen(domain.root));
  t.ok(Object.isFrozen(child(domain.root, 'api_key').rule));
  t.ok(Object.isFrozen(domain.httpDescriptors[0]));
  t.ok(Object.isFrozen(domain.document));
  t.throws(() => { (domain.document as { domain: string }).domain = 'x'; });
});

t.test('every accepted field compiles as documented', async (t) => {
  const domain = loadConfig(FULL).domains.get('store')!;
  t.equal(domain.algorithm, 'fixed_window');
  const root = domain.root;

  const status = ruleOf(child(root, 'status', '200'));
  t.equal(status.id, 'status_200', 'a numeric value is matched as its text');
  t.equal(status.limits[0]?.spec.unit, 'minute', 'units are case-insensitive');
  t.equal(status.limits[0]?.spec.algorithm, 'fixed_window', 'the domain default applies');
  t.equal(status.limits[0]?.keyPrefix, '5:store:fw60m');

  const version = ruleOf(child(root, 'version', '1.50'));
  t.equal(version.limits[0]?.spec.name, 'version-limit', 'merge keys fill in the anchored fields');
  t.equal(version.limits[0]?.spec.requestsPerUnit, 60);

  const apiKey = ruleOf(child(root, 'api_key'));
  t.equal(apiKey.limits[0]?.spec.algorithm, 'token_bucket', 'a limit overrides the domain algorithm');
  t.equal(apiKey.limits[0]?.spec.burst, 25);
  t.same(apiKey.replaces, ['version-limit']);

  t.equal(ruleOf(child(root, 'blocked')).limits[0]?.spec.requestsPerUnit, 0, 'requests_per_unit 0 is valid');
  t.equal(ruleOf(child(root, 'internal')).limits[0], undefined);

  t.same(root.wildcards.map((w) => [w.key, w.parts]), [['path', ['/files/', '']], ['path', ['', '.png']], ['user_agent', ['bot-', '']]],
    'wildcards are split on * and kept in config order');
  t.equal(root.wildcards[0]?.node.rule?.detailedMetric, true);
  t.equal(root.wildcards[0]?.node.rule?.id, 'path_/files/*');
  t.equal(ruleOf(child(root, 'path')).limits[0]?.spec.requestsPerUnit, 3000, 'an empty value means key only');

  const bots = root.wildcards.find((w) => w.key === 'user_agent')!.node.rule!;
  t.same(bots.sharedValues, ['bot-*'], 'share_threshold: the wildcard stands for the value in bucket keys');
  t.equal(bots.limits[0]?.spec.algorithm, 'sliding_window');
  t.equal(bots.limits[0]?.spec.unitMultiplier, 5);
  t.equal(bots.limits[0]?.keyPrefix, '5:store:sw100/5m', 'the multiplier is part of the fingerprint');
  t.same(bots.limits[0]?.reported, { requestsPerUnit: 100, unit: 'minute', unitMultiplier: 5, name: undefined, burst: 100 });
  t.equal(bots.limits[0]?.policy.policy, '"user_agent_bot-*";q=100;w=300', 'policy name: the rule path when the limit has no name');
  t.equal(ruleOf(child(root, 'api_key')).quotaMode, true);
  t.equal(ruleOf(child(root, 'api_key')).sharedValues, undefined);
  const client = ruleOf(child(root, 'client'));
  t.same(client.limits.map((limit) => [limit.policyName, limit.keyPrefix]),
    [['client-burst', '5:store:tb20sb40'], ['client-daily', '5:store:fw10000d']], 'rate_limit first, then rate_limits, each its own bucket');

  t.equal(child(root, 'placeholder').rule, undefined, 'an empty descriptors: is no nodes');
  t.equal(child(root, 'placeholder').keyOnly.size, 0);

  const tenant = child(root, 'tenant', 'acme');
  t.equal(ruleOf(tenant).limits[0]?.spec.unit, 'week', 'a node has a rule and children at once');
  const user = child(tenant, 'user');
  t.equal(ruleOf(user).limits[0]?.spec.unit, 'month');
  t.equal(ruleOf(user).id, 'tenant_acme.user');
  const deleteAction = ruleOf(child(user, 'action', 'delete'));
  t.equal(deleteAction.id, 'tenant_acme.user.action_delete');
  t.equal(deleteAction.shadow, true);
  t.equal(deleteAction.limits[0]?.spec.burst, 1, 'a burst below the rate is allowed (smoothing)');
  t.equal(deleteAction.limits[0]?.spec.unit, 'year');

  t.same(domain.httpDescriptors, [
    [
      { type: 'request_headers', headerName: 'x-api-key', descriptorKey: 'api_key', skipIfAbsent: true },
      { type: 'query_parameters', queryParameterName: 'version', descriptorKey: 'version', skipIfAbsent: false },
    ],
    [{ type: 'masked_remote_address', v4PrefixMaskLen: 24, v6PrefixMaskLen: 128 }],
    [{ type: 'masked_remote_address', v4PrefixMaskLen: 32, v6PrefixMaskLen: 128 }],
    [{ type: 'masked_remote_address', v4PrefixMaskLen: 32, v6PrefixMaskLen: 128 }],
    [{ type: 'remote_address' }],
    [
      { type: 'generic_key', descriptorKey: 'generic_key', descriptorValue: 'everyone' },
      { type: 'generic_key', descriptorKey: 'tenant', descriptorValue: 'tenant-a' },
      { type: 'query_parameters', queryParameterName: 'q', descriptorKey: 'q', skipIfAbsent: true },
    ],
  ]);
  const document = domain.document as { descriptors: { value?: unknown; metadata?: unknown }[] };
  t.equal(document.descriptors[1]?.value, '1.50', 'the document keeps values as written');
  t.same(document.descriptors[2]?.metadata, { owner: 'team-a', tags: ['x', 'y'] });
});

t.test('the envoyproxy/ratelimit-style example loads', async (t) => {
  const domain = loadConfig(join(ROOT, 'examples', 'envoy-ratelimit-compat.yaml')).domains.get('edge-proxy')!;
  const premium = ruleOf(child(domain.root, 'user_tier', 'premium'));
  t.same(premium.replaces, ['per-user']);
  t.equal(domain.root.wildcards.length, 2);
  t.same(domain.httpDescriptors, [], 'no http section: no descriptors from HTTP requests');
});

t.test('the examples directory loads as one config', async (t) => {
  t.same(checkConfig(join(ROOT, 'examples')).domains, ['edge-proxy', 'llm', 'openclaw']);
});

t.test('a file without descriptors is a domain with no limits', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), 'domain: empty\n');
  const domain = loadConfig(join(dir, 'a.yaml')).domains.get('empty')!;
  t.equal(domain.root.keyOnly.size + domain.root.exact.size + domain.root.wildcards.length, 0);
});

t.test('a directory loads every *.yaml and *.yml file, one domain each', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'shop.yaml'), MINIMAL);
  writeFileSync(join(dir, 'billing.YML'), MINIMAL.replace('shop', 'billing'));
  writeFileSync(join(dir, 'README.md'), 'not config');
  writeFileSync(join(dir, '.editor-backup.yaml'), 'domain: [broken');
  mkdirSync(join(dir, 'nested.yaml'));
  const config = loadConfig(dir);
  t.equal(config.source, dir);
  t.same([...config.domains.keys()].sort(), ['billing', 'shop']);
  t.equal(config.domains.get('shop')?.source, join(dir, 'shop.yaml'));
  t.same(checkConfig(dir), { source: dir, domains: ['billing', 'shop'] });
});

t.test('a Kubernetes ConfigMap mount (..data symlinks) loads', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, '..2024_01_01_00_00_00.1'));
  writeFileSync(join(dir, '..2024_01_01_00_00_00.1', 'shop.yaml'), MINIMAL);
  symlinkSync('..2024_01_01_00_00_00.1', join(dir, '..data'));
  symlinkSync(join('..data', 'shop.yaml'), join(dir, 'shop.yaml'));
  t.same([...loadConfig(dir).domains.keys()], ['shop']);
});

t.test('the same domain in two files is an error naming both', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), MINIMAL);
  writeFileSync(join(dir, 'b.yaml'), MINIMAL);
  const problem = `duplicate domain "shop" (already defined in ${join(dir, 'a.yaml')}; --merge-domains joins such files)`;
  t.throws(() => loadConfig(dir), new ConfigError([{ file: join(dir, 'b.yaml'), path: 'domain', problem, line: 1, column: 1 }]));
  t.throws(() => loadConfig(dir), { message: `${join(dir, 'b.yaml')}:1:1: domain: ${problem}` });
});

t.test('an error in one file of a directory names that file', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), MINIMAL);
  writeFileSync(join(dir, 'b.yaml'), MINIMAL.replace('shop', 'other').replace('second', 'sec'));
  t.throws(() => loadConfig(dir), {
    message: `${join(dir, 'b.yaml')}:4:19: descriptors[0].rate_limit.unit: unknown unit "sec" (expected second, minute, hour, day, week, month or year)`,
  });
});

t.test('every problem of every file is reported, each naming its file', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), 'domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: sec, requests_per_unit: -1 }\n');
  writeFileSync(join(dir, 'b.yaml'), 'domain: b\nalgorithm: fixed_window\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, burst: 2 }\n');
  writeFileSync(join(dir, 'c.yaml'), MINIMAL);
  writeFileSync(join(dir, 'd.yaml'), MINIMAL);
  const error = t.throws(() => loadConfig(dir)) as ConfigError;
  t.same(error.problems, [
    { file: join(dir, 'a.yaml'), path: 'descriptors[0].rate_limit.unit', problem: 'unknown unit "sec" (expected second, minute, hour, day, week, month or year)', line: 4, column: 19 },
    { file: join(dir, 'a.yaml'), path: 'descriptors[0].rate_limit.requests_per_unit', problem: 'expected a whole number of requests, 0 or more, got -1', line: 4, column: 30 },
    { file: join(dir, 'd.yaml'), path: 'domain', problem: `duplicate domain "shop" (already defined in ${join(dir, 'c.yaml')}; --merge-domains joins such files)`, line: 1, column: 1 },
    { file: join(dir, 'b.yaml'), path: 'descriptors[0].rate_limit.burst', problem: 'applies only to token_bucket limits (this limit uses fixed_window)', line: 5, column: 55 },
  ]);
  t.equal(error.message.split('\n').length, 4, 'one line per problem');
  t.equal(error.file, join(dir, 'a.yaml'));
});

t.test('--merge-domains: files of one domain are joined; a descriptor defined twice is still an error', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), `${MINIMAL}http:\n  descriptors:\n    - [ { remote_address: {} } ]\n`);
  writeFileSync(join(dir, 'b.yaml'), [
    'domain: shop', 'algorithm: fixed_window', 'descriptors:',
    '  - key: remote_address', '    rate_limit: { unit: minute, requests_per_unit: 60 }',
    '  - key: path', '    value: /x*', '    rate_limit: { unit: minute, requests_per_unit: 6 }',
    'http:', '  descriptors:', '    - [ { generic_key: { descriptor_value: all } } ]', '',
  ].join('\n'));
  const domain = loadConfig(dir, { mergeDomains: true }).domains.get('shop')!;
  t.equal(domain.source, `${join(dir, 'a.yaml')}, ${join(dir, 'b.yaml')}`);
  t.same([...domain.root.keyOnly.keys()], ['api_key', 'remote_address']);
  t.equal(ruleOf(child(domain.root, 'api_key')).limits[0]?.spec.algorithm, 'token_bucket', 'each file\'s algorithm is its own default');
  t.equal(ruleOf(child(domain.root, 'remote_address')).limits[0]?.spec.algorithm, 'fixed_window');
  t.equal(domain.root.wildcards.length, 1);
  t.same(domain.httpDescriptors.map((actions) => actions[0]?.type), ['remote_address', 'generic_key'], 'http descriptors in file order');
  t.match(domain.document, { domain: 'shop', merged_from: [{ file: join(dir, 'a.yaml') }, { file: join(dir, 'b.yaml') }] });
  writeFileSync(join(dir, 'c.yaml'), MINIMAL);
  t.throws(() => loadConfig(dir, { mergeDomains: true }), {
    message: `${join(dir, 'c.yaml')}:3:5: descriptors[0]: duplicate descriptor: key "api_key" without a value is already defined in ${join(dir, 'a.yaml')} at descriptors[0]`,
  });
  t.throws(() => loadConfig(dir), { message: /duplicate domain "shop"/ }, 'without the option a duplicate domain stays an error');
});

t.test('a directory without config files is an error', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'notes.txt'), 'x');
  t.throws(() => loadConfig(dir), { message: `${dir}: no *.yaml or *.yml files in this directory` });
});

t.test('a missing path is an error', async (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'nope.yaml');
  t.throws(() => loadConfig(missing), { message: `${missing}: cannot read: no such file or directory` });
  t.throws(() => checkConfig(missing), ConfigError);
});
