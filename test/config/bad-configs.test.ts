// Each file in fixtures/bad is named for how it fails; the message is the
// contract operators read at start-up and from `check-config`.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const BAD = join(import.meta.dirname, 'fixtures', 'bad');

const EXPECTED: Record<string, string> = {
  'burst-with-fixed-window.yaml': 'descriptors[0].rate_limit.burst: applies only to token_bucket limits (this limit uses fixed_window)',
  'burst-with-zero-rate.yaml': 'descriptors[0].rate_limit.burst: must be 0 or absent when requests_per_unit is 0 (such a limit denies every request)',
  'descriptor-not-a-mapping.yaml': 'descriptors[0]: expected a mapping, got "api_key"',
  'duplicate-key-only.yaml': 'descriptors[2]: duplicate descriptor: key "api_key" without a value is already defined at index 0',
  'duplicate-key-value.yaml': 'descriptors[0].descriptors[2]: duplicate descriptor: key "method" with value "GET" is already defined at index 0',
  'duplicate-yaml-key.yaml': 'invalid YAML at line 6, column 7: Map keys must be unique',
  'empty-action-list.yaml': 'http.descriptors[0]: must not be empty (an empty action list produces no descriptor)',
  'empty-domain.yaml': 'domain: must not be empty',
  'empty-file.yaml': 'the file is empty (expected a mapping with domain and descriptors)',
  'empty-key.yaml': 'descriptors[0].descriptors[0].key: must not be empty',
  'empty-value.yaml': 'descriptors[0].value: expected a string, got nothing (null)',
  'envoy-actions-wrapper.yaml': 'http.descriptors[0]: expected a list of actions (write the list itself, without "actions:")',
  'fractional-requests-per-unit.yaml': 'descriptors[0].rate_limit.requests_per_unit: expected a whole number of requests, 0 or more, got 2.5',
  'huge-requests-per-unit.yaml': 'descriptors[0].rate_limit.requests_per_unit: expected a whole number of requests, 0 or more, got 100000000000000000000',
  'invalid-yaml.yaml': 'invalid YAML at line 3, column 1: Missing closing "quote',
  'mask-too-long.yaml': 'http.descriptors[0][0].masked_remote_address.v4_prefix_mask_len: expected a whole number from 0 to 32, got 33',
  'missing-domain.yaml': 'domain: is required',
  'missing-header-name.yaml': 'http.descriptors[0][0].request_headers.header_name: is required',
  'missing-requests-per-unit.yaml': 'descriptors[0].rate_limit.requests_per_unit: is required',
  'missing-unit.yaml': 'descriptors[0].rate_limit.unit: is required (or set unlimited: true)',
  'misspelled-action-key.yaml': 'http.descriptors[0][0].query_parameters.query_param_name: unknown key (did you mean "query_parameter_name"?)',
  'misspelled-key.yaml': 'descriptors[0].ratelimit: unknown key (did you mean "rate_limit"?)',
  'misspelled-rate-limit-key.yaml': 'descriptors[0].rate_limit.requestsPerUnit: unknown key (did you mean "requests_per_unit"?)',
  'negative-requests-per-unit.yaml': 'descriptors[0].rate_limit.requests_per_unit: expected a whole number of requests, 0 or more, got -1',
  'not-a-mapping.yaml': 'expected a mapping with domain and descriptors, got a list',
  'quoted-requests-per-unit.yaml': 'descriptors[0].rate_limit.requests_per_unit: expected a whole number of requests, 0 or more, got "10"',
  'remote-address-with-keys.yaml': 'http.descriptors[0][0].remote_address.header: unknown key (this mapping takes no keys: write {})',
  'replaces-empty-name.yaml': 'descriptors[0].rate_limit.replaces[0].name: must not be empty',
  'replaces-self.yaml': 'descriptors[0].rate_limit.replaces[0].name: a limit cannot replace itself ("per-key" is this limit\'s own name)',
  'share-threshold.yaml': 'descriptors[0].share_threshold: true is not supported yet (all values matching the wildcard would need one shared bucket; giving each its own bucket instead would admit more than configured)',
  'sliding-window-not-supported.yaml': 'algorithm: "sliding_window" is not supported yet (expected token_bucket or fixed_window)',
  'two-action-types.yaml': 'http.descriptors[0][0]: an action has exactly one type, found remote_address and generic_key (make them separate actions in the list)',
  'unit-outside-rate-limit.yaml': 'descriptors[0].unit: not allowed here (it belongs inside rate_limit)',
  'unknown-action.yaml': 'http.descriptors[1][0].header_value_match: unknown action (supported: request_headers, remote_address, masked_remote_address, generic_key, query_parameters)',
  'unknown-algorithm.yaml': 'descriptors[0].rate_limit.algorithm: unknown algorithm "leaky_bucket" (expected token_bucket or fixed_window)',
  'unknown-unit.yaml': 'descriptors[2].rate_limit.unit: unknown unit "fortnight" (expected second, minute, hour, day, week, month or year)',
  'unlimited-with-unit.yaml': 'descriptors[0].rate_limit.unit: must not be set when unlimited is true',
  'unrepresentable-limit.yaml': 'descriptors[0].rate_limit: cannot be computed exactly in integers: burst 9007199254740991 is too large for a year unit (lower burst or requests_per_unit, or use a shorter unit)',
  'zero-burst.yaml': 'descriptors[0].rate_limit.burst: must be at least 1 (a bucket that holds no token denies every request; use requests_per_unit: 0 for that)',
};

t.test('every bad fixture has an expected message', async (t) => {
  t.same(readdirSync(BAD).sort(), Object.keys(EXPECTED).sort());
});

for (const [name, problem] of Object.entries(EXPECTED)) {
  t.test(`${name} is rejected`, async (t) => {
    const file = join(BAD, name);
    const error = t.throws(() => loadConfig(file)) as unknown;
    t.ok(error instanceof ConfigError, 'throws ConfigError');
    if (!(error instanceof ConfigError)) return;
    t.equal(error.message, `${file}: ${problem}`);
    t.equal(error.code, 'RL_ERR_CONFIG');
    t.equal(error.file, file);
  });
}

t.test('a misspelling is suggested even with swapped letters or other case', async (t) => {
  const { closestKey } = await import('../../src/config/describe-issue.js');
  t.equal(closestKey('unti', ['unit', 'name']), 'unit');
  t.equal(closestKey('Shadow-Mode', ['shadow_mode', 'key']), 'shadow_mode');
  t.equal(closestKey('colour', ['unit', 'name']), undefined);
});
