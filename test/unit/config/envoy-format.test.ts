// Our own configs in envoyproxy/ratelimit's format (fixtures/envoy-format),
// covering the features its test configs use, loaded and decided through the
// limiter and the memory store. The check against envoyproxy/ratelimit's own
// files is test/unit/config/envoy-ratelimit-upstream.test.ts.
import { join } from 'node:path';
import t from 'tap';
import { loadConfig } from '../../../src/config/load.js';
import { Limiter } from '../../../src/core/limiter.js';
import { matchRule } from '../../../src/core/rules.js';
import type { CompiledConfig } from '../../../src/core/config-model.js';
import type { Decision, Descriptor, Entry } from '../../../src/core/types.js';
import { MemoryStore } from '../../../src/store/memory-store.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'envoy-format');
const entries = (...pairs: [string, string][]): Entry[] => pairs.map(([key, value]) => ({ key, value }));

function limiter(config: CompiledConfig, domain: string) {
  const now = 1_700_000_000_000_000;
  const store = new MemoryStore({ maxKeys: 1_000_000, clock: () => now, sweep: false });
  const instance = new Limiter({
    store, shadow: false, keyPrefix: 'rl:', digest: (x) => x,
  });
  return (...descriptors: Entry[][]): Promise<Decision> =>
    Promise.resolve(instance.decide(config, { domain, descriptors: descriptors.map((list): Descriptor => ({ entries: list })) }));
}

async function allowed(decide: () => Promise<Decision>, attempts: number): Promise<number> {
  let count = 0;
  for (let i = 0; i < attempts; i++) if ((await decide()).overallCode === 'OK') count++;
  return count;
}

t.test('basic: levels, defaults, units, replaces, shadow, quota, unlimited, metadata', async (t) => {
  const config = loadConfig(join(FIXTURES, 'basic.yaml'));
  const root = config.domains.get('catalog')!.root;
  const rule = (...pairs: [string, string][]) => matchRule(root, entries(...pairs));
  t.equal(rule(['tenant', 'acme'], ['user', 'u1'])?.limits[0]?.spec.requestsPerUnit, 5, 'key-only default at the second level');
  t.equal(rule(['tenant', 'acme'], ['user', 'admin'])?.limits[0]?.spec.requestsPerUnit, 50, 'an exact value overrides it');
  t.equal(rule(['tenant', 'acme']), undefined, 'the exact first level has no limit of its own (it wins over the key-only one)');
  t.equal(rule(['tenant', 'other'])?.limits[0]?.spec.requestsPerUnit, 20);
  t.equal(rule(['tenant', 'other'])?.detailedMetric, true);
  t.equal(rule(['sku', 's'])?.limits[0]?.spec.name, 'per-sku', 'merge keys fill the anchored limit');
  t.same(['plan', 'invoice', 'archive'].map((key) => rule([key, 'x'])?.limits[0]?.spec.unit), ['week', 'month', 'year']);
  t.equal(rule(['health', 'x'])?.unlimited, true);
  t.equal(rule(['empty_level', 'x']), undefined, 'an empty descriptors: list');

  const decide = limiter(config, 'catalog');
  const withBulk = await decide(entries(['sku', 's1']), entries(['sku_class', 'bulk']));
  t.match(withBulk.statuses, [{ limit: null }, { limit: { name: 'bulk' } }], 'replaces drops per-sku');
  t.equal(await allowed(() => decide(entries(['region', 'eu'])), 150), 150, 'shadow_mode never denies');
  t.equal(await allowed(() => decide(entries(['blocked', 'x'])), 3), 0, 'requests_per_unit 0 denies all');
  const quota = await decide(entries(['plan', 'p']), entries(['invoice', 'i']));
  t.match(quota.statuses, [{ quota: true, code: 'OK' }, { code: 'OK' }]);
  t.match((await decide(entries(['health', 'h']))).statuses, [{ code: 'OK', limitRemaining: 4_294_967_295, limit: null }]);
});

t.test('wildcards: trailing, middle and several *, nested; share_threshold shares one bucket', async (t) => {
  const config = loadConfig(join(FIXTURES, 'wildcards.yaml'));
  const root = config.domains.get('assets')!.root;
  const id = (...pairs: [string, string][]) => matchRule(root, entries(...pairs))?.id;
  t.equal(id(['path', '/img/logo.png']), 'path_/img/*');
  t.equal(id(['path', '/api/users/v1']), 'path_/api*v1');
  t.equal(id(['path', '/api/users/v2']), undefined);
  t.equal(id(['path', '/svc-a/ep-b/rpc']), 'path_/svc*/ep*/rpc');
  t.equal(id(['cluster', 'eu'], ['node', 'node-7']), 'cluster_eu.node_node-*');
  t.equal(id(['bucket', 'shared-special']), 'bucket_shared-special', 'an exact value wins over the shared wildcard');

  const decide = limiter(config, 'assets');
  t.equal(await allowed(() => decide(entries(['bucket', `shared-${Math.random()}`])), 5), 3, 'every shared-* value takes from one bucket of 3');
  t.equal(await allowed(() => decide(entries(['bucket', 'shared-special'])), 5), 5, 'the exact value has its own limit');
  t.equal(await allowed(() => decide(entries(['path', `/img/${Math.random()}`])), 40), 40, 'without share_threshold each value has its own bucket');
  // share_threshold on the ancestor org-*, not on repo-*: one bucket per (repo, action) across all orgs.
  const action = (org: string, repo: string) => decide(entries(['org', org], ['repo', repo], ['action', 'push']));
  t.equal((await action('org-a', 'repo-1')).overallCode, 'OK');
  t.equal((await action('org-b', 'repo-1')).overallCode, 'OK');
  t.equal((await action('org-c', 'repo-1')).overallCode, 'OVER_LIMIT', 'org-a, org-b and org-c share repo-1\'s bucket');
  t.equal((await action('org-c', 'repo-2')).overallCode, 'OK', 'repo-* does not share: repo-2 has its own');
});

t.test('one domain over two files loads with --merge-domains only', async (t) => {
  const dir = join(FIXTURES, 'merge');
  t.throws(() => loadConfig(dir), { message: /b\.yaml:1:1: domain: duplicate domain "split"/ });
  const root = loadConfig(dir, { mergeDomains: true }).domains.get('split')!.root;
  t.same([...root.keyOnly.keys()], ['reader', 'writer']);
});

t.test('YAML 1.1 booleans (yes/no, on/off, y/n) load in boolean fields; values spelled like them stay strings', async (t) => {
  const config = loadConfig(join(FIXTURES, 'yaml-1-1-booleans.yaml'));
  const domain = config.domains.get('legacy')!;
  const rule = (...pairs: [string, string][]) => matchRule(domain.root, entries(...pairs));
  t.match(rule(['region', 'yes']), { shadow: true, detailedMetric: true, limits: [{ spec: { requestsPerUnit: 10 } }] },
    'value: yes is the string "yes"; shadow_mode: yes and detailed_metric: On are true');
  t.match(rule(['region', 'on']), { shadow: false, quotaMode: false, limits: [{ spec: { requestsPerUnit: 20 } }] },
    'value: on is the string "on"; OFF and n are false');
  t.equal(rule(['region', 'true']), undefined, 'no value became "true"');
  t.equal(rule(['health', 'x'])?.unlimited, true, 'unlimited: YES');
  t.match(domain.httpDescriptors, [[{ skipIfAbsent: false }], [{ skipIfAbsent: true }]], 'skip_if_absent: no / True');
  t.match(domain.document, { descriptors: [{}, {}, { value_to_metric: true }, { share_threshold: true, metadata: { archived: 'no' } }] },
    'y and Yes are true; free-form metadata is left as parsed');
});
