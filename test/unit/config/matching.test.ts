// envoyproxy/ratelimit's matching semantics, through the tree the loader builds.
import t from 'tap';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import { matchRule } from '../../../src/core/rules.js';
import type { Entry } from '../../../src/core/types.js';

const root = loadConfig(join(import.meta.dirname, 'fixtures', 'good', 'matching.yaml')).domains.get('matching')!.root;

function matched(...pairs: [string, string][]): string | undefined {
  const entries: Entry[] = pairs.map(([key, value]) => ({ key, value }));
  return matchRule(root, entries)?.id;
}

t.test('an exact value beats a wildcard, which beats key only', async (t) => {
  t.equal(matched(['api_key', 'vip']), 'api_key_vip');
  t.equal(matched(['api_key', 'test-1']), 'api_key_test-*');
  t.equal(matched(['api_key', 'anyone']), 'api_key');
});

t.test('wildcards are tried in config order', async (t) => {
  t.equal(matched(['api_key', 'test-1']), 'api_key_test-*', 'both match; the first wins');
  t.equal(matched(['api_key', 'team']), 'api_key_te*');
});

t.test('a wildcard may sit anywhere in the value and appear more than once', async (t) => {
  t.equal(matched(['path', '/v1/shop/items/42.json']), 'path_/v1/*/items/*.json');
  t.equal(matched(['path', '/v1//items/.json']), 'path_/v1/*/items/*.json', '* matches the empty string');
  t.equal(matched(['path', '/v1/shop/items/42.xml']), undefined);
  t.equal(matched(['path', '/v2/shop/items/42.json']), undefined);
});

t.test('a limit applies only at the level of the last entry', async (t) => {
  t.equal(matched(['path', '/rating']), undefined, 'the parent node has no limit of its own');
  t.equal(matched(['path', '/rating'], ['api_key', 'k1']), 'path_/rating.api_key');
  t.equal(matched(['tenant', 'acme']), undefined);
  t.equal(matched(['tenant', 'acme'], ['user', 'root']), 'tenant.user_root');
  t.equal(matched(['region', 'eu']), 'region_eu', 'a node with a limit and children matches at its own level');
  t.equal(matched(['region', 'eu'], ['zone', 'a']), 'region_eu.zone');
});

t.test('a descriptor deeper than the tree matches nothing', async (t) => {
  t.equal(matched(['api_key', 'vip'], ['extra', 'x']), undefined);
  t.equal(matched(['path', '/rating'], ['api_key', 'k1'], ['method', 'GET']), undefined);
});

t.test('an unknown key or a non-matching value matches nothing', async (t) => {
  t.equal(matched(['country', 'fr']), undefined);
  t.equal(matched(['tenant', 'acme'], ['user', 'alice']), undefined);
  t.equal(matched(['region', 'us']), undefined);
  t.equal(matched(), undefined, 'an empty descriptor matches nothing');
});

t.test('once an exact value matched, deeper levels do not fall back to key only', async (t) => {
  // As envoyproxy/ratelimit: the walk follows the best child at each level and never backtracks.
  t.equal(matched(['region', 'us'], ['city', 'paris']), 'region.city');
  t.equal(matched(['region', 'eu'], ['city', 'paris']), undefined, 'region=eu has no city child');
});
