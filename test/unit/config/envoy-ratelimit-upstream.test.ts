// envoyproxy/ratelimit's own YAML files (its test/ and examples/ folders),
// read from a checkout given by RL_ENVOY_RATELIMIT_DIR, never copied here:
// every config valid for envoyproxy/ratelimit must load, every config it
// refuses must be refused, and every YAML file must be classified (so a new
// upstream file is noticed). Without the variable the test says why it is
// skipped. Our own committed equivalents are in fixtures/envoy-format.
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import t from 'tap';
import { loadConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';

const ROOT = process.env['RL_ENVOY_RATELIMIT_DIR'];

/** Valid for envoyproxy/ratelimit (its config_test.go and integration tests load them). */
const VALID = [
  'examples/ratelimit/config/config.yaml',
  'examples/ratelimit/config/example.yaml',
  'test/config/basic_config.yaml',
  'test/config/duplicate_domain.yaml',
  'test/config/merge_domain_key1.yaml',
  'test/config/merge_domain_key2.yaml',
  'test/config/metadata.yaml',
  'test/config/shadowmode_config.yaml',
  'test/config/share_threshold.yaml',
  'test/config/wildcard.yaml',
  'test/integration/runtime/current/ratelimit/config/another.yaml',
  'test/integration/runtime/current/ratelimit/config/basic.yaml',
  'test/integration/runtime/current/ratelimit/config/share_threshold.yaml',
  'test/integration/runtime/current/ratelimit/reload.yaml',
];

/** Refused by envoyproxy/ratelimit (config_test.go expects a panic); what we say instead. */
const INVALID: Record<string, RegExp> = {
  'test/config/bad_limit_unit.yaml': /rate_limit\.unit: unknown unit "foo"/,
  'test/config/bad_yaml.yaml': /:2:\d+: invalid YAML: /,
  'test/config/duplicate_key.yaml': /duplicate descriptor: key "key1" with value "value1"/,
  'test/config/empty_domain.yaml': /domain: is required/,
  'test/config/empty_key.yaml': /descriptors\[0\]\.key: is required/,
  'test/config/misspelled_key.yaml': /ratelimit: unknown key \(did you mean "rate_limit"\?\)/,
  'test/config/misspelled_key2.yaml': /requestsperunit: unknown key \(did you mean "requests_per_unit"\?\)/,
  'test/config/non_map_list.yaml': /descriptors\[0\]: expected a mapping, got "a"/,
  'test/config/non_string_key.yaml': /0\.25: unknown key/,
  'test/config/replaces_empty.yaml': /replaces\[0\]\.name: expected a string, got nothing/,
  'test/config/replaces_self.yaml': /a limit cannot replace itself/,
  'test/config/unlimited_with_unit.yaml': /unit: must not be set when unlimited is true/,
};

/** YAML files that are not rate-limit configs (Envoy, collector and exporter configs of the examples). */
const NOT_RATE_LIMIT_CONFIGS = [
  'examples/envoy/mock.yaml',
  'examples/envoy/proxy.yaml',
  'examples/otlp-collector/config.yaml',
  'examples/prom-statsd-exporter/conf.yaml',
];

function yamlFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(name) ? [path] : [];
  });
}

if (ROOT === undefined || ROOT === '') {
  t.test('envoyproxy/ratelimit\'s own configs', {
    skip: 'RL_ENVOY_RATELIMIT_DIR is not set: point it at a checkout of envoyproxy/ratelimit to check its test and example configs',
  }, async () => {});
} else {
  const root = ROOT;
  t.test('every YAML file of its test/ and examples/ is classified', async (t) => {
    const found = [...yamlFiles(join(root, 'test')), ...yamlFiles(join(root, 'examples'))].map((file) => relative(root, file)).sort();
    t.ok(found.length > 0, `${found.length} files found under ${root}`);
    t.same(found, [...VALID, ...Object.keys(INVALID), ...NOT_RATE_LIMIT_CONFIGS].sort());
  });

  for (const file of VALID) {
    t.test(`${file} loads`, async (t) => {
      t.doesNotThrow(() => loadConfig(join(root, file)));
    });
  }

  for (const [file, problem] of Object.entries(INVALID)) {
    t.test(`${file} is refused, as upstream`, async (t) => {
      const error = t.throws(() => loadConfig(join(root, file))) as unknown;
      t.ok(error instanceof ConfigError);
      t.match((error as Error).message, problem);
    });
  }

  t.test('merge_domain_key1 + key2: one domain with --merge-domains, a duplicate domain without (TestDomainMerge)', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rl-upstream-merge-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    copyFileSync(join(root, 'test/config/merge_domain_key1.yaml'), join(dir, 'a.yaml'));
    copyFileSync(join(root, 'test/config/merge_domain_key2.yaml'), join(dir, 'b.yaml'));
    t.throws(() => loadConfig(dir), { message: /duplicate domain "test-domain"/ });
    t.same([...loadConfig(dir, { mergeDomains: true }).domains.keys()], ['test-domain']);
    copyFileSync(join(root, 'test/config/merge_domain_key1.yaml'), join(dir, 'b.yaml'));
    t.throws(() => loadConfig(dir, { mergeDomains: true }), { message: /duplicate descriptor: key "key1" with value "value1" is already defined in/ },
      'the same file twice: a duplicate descriptor (TestDuplicateKeyDomainMerge)');
    copyFileSync(join(root, 'test/config/basic_config.yaml'), join(dir, 'a.yaml'));
    copyFileSync(join(root, 'test/config/duplicate_domain.yaml'), join(dir, 'b.yaml'));
    t.throws(() => loadConfig(dir), { message: /b\.yaml:\d+:\d+: domain: duplicate domain "test-domain"/ });
  });
}
