// Each file in fixtures/bad is named for how it fails; the message is the
// contract operators read at start-up and from `check-config`: one line per
// problem, every problem of the file (a list where a fixture has several),
// each `file:line:column: path: problem` (no line where the file has none).
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';

const BAD = join(import.meta.dirname, 'fixtures', 'bad');

const EXPECTED: Record<string, string | string[]> = {
  'burst-with-fixed-window.yaml': '5:57: descriptors[0].rate_limit.burst: applies only to token_bucket limits (this limit uses fixed_window)',
  'burst-with-sliding-window.yaml': '7:48: descriptors[0].rate_limits[1].burst: applies only to token_bucket limits (this limit uses sliding_window)',
  'overdraft-not-a-flag.yaml': '4:55: descriptors[0].rate_limit.overdraft: expected true or false, got "yes"',
  'overdraft-with-fixed-window.yaml': '4:82: descriptors[0].rate_limit.overdraft: applies only to token_bucket limits (this limit uses fixed_window)',
  'overdraft-with-sliding-window.yaml': '7:48: descriptors[0].rate_limits[1].overdraft: applies only to token_bucket limits (this limit uses sliding_window)',
  'overdraft-with-zero-rate.yaml': '4:53: descriptors[0].rate_limit.overdraft: needs requests_per_unit above 0 (refills pay the debt)',
  'burst-with-zero-rate.yaml': '4:55: descriptors[0].rate_limit.burst: must be 0 or absent when requests_per_unit is 0 (such a limit denies every request)',
  'descriptor-not-a-mapping.yaml': [
    '3:5: descriptors[0]: expected a mapping, got "api_key"',
    '4:5: descriptors[1]: expected a mapping, got "remote_address"',
  ],
  'duplicate-key-only.yaml': '8:5: descriptors[2]: duplicate descriptor: key "api_key" without a value is already defined at index 0',
  'duplicate-key-value.yaml': '12:9: descriptors[0].descriptors[2]: duplicate descriptor: key "method" with value "GET" is already defined at index 0',
  'duplicate-yaml-key.yaml': '6:7: invalid YAML: Map keys must be unique',
  'empty-action-list.yaml': '5:7: http.descriptors[0]: must not be empty (an empty action list produces no descriptor)',
  'empty-domain.yaml': '1:1: domain: must not be empty',
  'empty-file.yaml': 'the file is empty (expected a mapping with domain and descriptors)',
  'empty-key.yaml': '6:9: descriptors[0].descriptors[0].key: must not be empty',
  'empty-value.yaml': '4:5: descriptors[0].value: expected a string, got nothing (null)',
  'envoy-actions-wrapper.yaml': '5:7: http.descriptors[0]: expected a list of actions (write the list itself, without "actions:")',
  'fractional-requests-per-unit.yaml': '4:33: descriptors[0].rate_limit.requests_per_unit: expected a whole number of requests, 0 or more, got 2.5',
  'huge-requests-per-unit.yaml': '4:33: descriptors[0].rate_limit.requests_per_unit: expected a whole number of requests, 0 or more, at most 9007199254740991 (2^53 − 1), got a larger number',
  'invalid-yaml.yaml': '3:1: invalid YAML: Missing closing "quote',
  'mask-too-long.yaml': '5:36: http.descriptors[0][0].masked_remote_address.v4_prefix_mask_len: expected a whole number from 0 to 32, got 33',
  'missing-domain.yaml': '1:1: domain: is required',
  'missing-header-name.yaml': '5:11: http.descriptors[0][0].request_headers.header_name: is required',
  'missing-requests-per-unit.yaml': '4:5: descriptors[0].rate_limit.requests_per_unit: is required',
  'missing-unit.yaml': '4:5: descriptors[0].rate_limit.unit: is required (or set unlimited: true)',
  'misspelled-action-key.yaml': '5:31: http.descriptors[0][0].query_parameters.query_param_name: unknown key (did you mean "query_parameter_name"?)',
  'misspelled-key-in-rate-limits.yaml': '5:11: descriptors[0].rate_limits[0].unti: unknown key (did you mean "unit"?)',
  'misspelled-key.yaml': '4:5: descriptors[0].ratelimit: unknown key (did you mean "rate_limit"?)',
  'misspelled-rate-limit-key.yaml': '6:7: descriptors[0].rate_limit.requestsPerUnit: unknown key (did you mean "requests_per_unit"?)',
  'multiple-documents.yaml': '5:1: holds 2 YAML documents (a "---" line starts another one); write one domain per file',
  'negative-requests-per-unit.yaml': '4:33: descriptors[0].rate_limit.requests_per_unit: expected a whole number of requests, 0 or more, got -1',
  'not-a-mapping.yaml': '1:1: expected a mapping with domain and descriptors, got a list',
  'quoted-boolean.yaml': '6:5: descriptors[0].shadow_mode: expected true or false, got "yes"',
  'quoted-requests-per-unit.yaml': '4:33: descriptors[0].rate_limit.requests_per_unit: expected a whole number of requests, 0 or more, got "10"',
  'rate-limits-duplicate.yaml': '7:9: descriptors[0].rate_limits[1]: duplicate limit: the same numbers as rate_limit (the two would share one bucket)',
  'rate-limits-empty.yaml': '4:5: descriptors[0].rate_limits: must list at least one limit (or be left out)',
  'rate-limits-next-to-unlimited.yaml': '5:5: descriptors[0].rate_limits: must not be set next to rate_limit: { unlimited: true } (an unlimited descriptor has no limits)',
  'rate-limits-unlimited.yaml': '6:11: descriptors[0].rate_limits[1].unlimited: not allowed in rate_limits (write rate_limit: { unlimited: true } alone)',
  'remote-address-with-keys.yaml': '5:29: http.descriptors[0][0].remote_address.header: unknown key (this mapping takes no keys: write {})',
  'replaces-empty-name.yaml': '9:11: descriptors[0].rate_limit.replaces[0].name: must not be empty',
  'replaces-own-descriptor.yaml': '6:62: descriptors[0].rate_limits[1].replaces[0].name: "burst" is a limit of this same descriptor (replaces drops limits of other descriptors)',
  'replaces-self.yaml': '9:11: descriptors[0].rate_limit.replaces[0].name: a limit cannot replace itself ("per-key" is this limit\'s own name)',
  'schema-problems-hide-nothing.yaml': [
    '7:5: descriptors[0].ratelimit: unknown key (did you mean "rate_limit"?)',
    '25:11: http.descriptors[0][0].no_such_action: unknown action (supported: request_headers, remote_address, masked_remote_address, generic_key, query_parameters)',
    '9:19: descriptors[1].rate_limit.unit: unknown unit "fortnight" (expected second, minute, hour, day, week, month or year)',
    '15:5: descriptors[3]: duplicate descriptor: key "path" without a value is already defined at index 2',
    '12:59: descriptors[1].descriptors[0].rate_limit.burst: applies only to token_bucket limits (this limit uses fixed_window)',
    '18:55: descriptors[4].rate_limit.burst: applies only to token_bucket limits (this limit uses fixed_window)',
    '22:9: descriptors[5].rate_limits[0]: duplicate limit: the same numbers as rate_limit (the two would share one bucket)',
  ],
  'several-compile-problems.yaml': [
    '6:56: descriptors[0].rate_limit.burst: applies only to token_bucket limits (this limit uses fixed_window)',
    '10:9: descriptors[1].rate_limits[1]: duplicate limit: the same numbers as rate_limits[0] (the two would share one bucket)',
    '12:5: descriptors[2].rate_limit: cannot be computed exactly in integers: burst 9007199254740991 is too large for a year unit (lower burst or requests_per_unit, or use a shorter unit)',
  ],
  'several-problems.yaml': [
    '7:5: descriptors[1].ratelimit: unknown key (did you mean "rate_limit"?)',
    '5:19: descriptors[0].rate_limit.unit: unknown unit "fortnight" (expected second, minute, hour, day, week, month or year)',
    '5:36: descriptors[0].rate_limit.requests_per_unit: expected a whole number of requests, 0 or more, got -1',
    '10:25: descriptors[2].rate_limits[0].requests_per_unit: expected a whole number of requests, 0 or more, got 2.5',
    '11:47: descriptors[2].rate_limits[1].unit_multiplier: expected a whole number, 1 or more, got 0',
    '14:11: http.descriptors[0][0].request_headers.descriptor_key: is required',
  ],
  'share-threshold-without-wildcard.yaml': '5:5: descriptors[0].share_threshold: needs a wildcard value (one containing *): it makes every value matching the wildcard share one bucket',
  'sliding-window-too-large.yaml': '4:5: descriptors[0].rate_limit: cannot be computed exactly in integers: requests_per_unit 100000000000 is too large for a sliding window of 10y (lower requests_per_unit, or use a shorter period)',
  'two-action-types.yaml': '5:9: http.descriptors[0][0]: an action has exactly one type, found remote_address and generic_key (make them separate actions in the list)',
  'unit-multiplier-fractional.yaml': '4:33: descriptors[0].rate_limit.unit_multiplier: expected a whole number, 1 or more, got 2.5',
  'unit-multiplier-too-long.yaml': '4:31: descriptors[0].rate_limit.unit_multiplier: makes a period of 51 years; at most 50 years is supported',
  'unit-multiplier-with-unlimited.yaml': '4:36: descriptors[0].rate_limit.unit_multiplier: must not be set when unlimited is true',
  'unit-multiplier-zero.yaml': '4:33: descriptors[0].rate_limit.unit_multiplier: expected a whole number, 1 or more, got 0',
  'unit-outside-rate-limit.yaml': '4:5: descriptors[0].unit: not allowed here (it belongs inside rate_limit)',
  'unknown-action.yaml': '8:11: http.descriptors[1][0].header_value_match: unknown action (supported: request_headers, remote_address, masked_remote_address, generic_key, query_parameters)',
  'unknown-algorithm.yaml': '4:57: descriptors[0].rate_limit.algorithm: unknown algorithm "leaky_bucket" (expected token_bucket, fixed_window or sliding_window)',
  'unknown-unit-in-anchor.yaml': [
    '6:7: descriptors[0].rate_limit.unit: unknown unit "fortnight" (expected second, minute, hour, day, week, month or year)',
    '6:7: descriptors[1].rate_limit.unit: unknown unit "fortnight" (expected second, minute, hour, day, week, month or year)',
  ],
  'unknown-unit.yaml': '9:7: descriptors[2].rate_limit.unit: unknown unit "fortnight" (expected second, minute, hour, day, week, month or year)',
  'unlimited-with-unit.yaml': '6:7: descriptors[0].rate_limit.unit: must not be set when unlimited is true',
  'unrepresentable-limit.yaml': '4:5: descriptors[0].rate_limit: cannot be computed exactly in integers: burst 9007199254740991 is too large for a year unit (lower burst or requests_per_unit, or use a shorter unit)',
  'zero-burst.yaml': '4:56: descriptors[0].rate_limit.burst: must be at least 1 (a bucket that holds no token denies every request; use requests_per_unit: 0 for that)',
};

t.test('every bad fixture has an expected message', async (t) => {
  t.same(readdirSync(BAD).sort(), Object.keys(EXPECTED).sort());
});

for (const [name, expected] of Object.entries(EXPECTED)) {
  t.test(`${name} is rejected`, async (t) => {
    const file = join(BAD, name);
    const problems = typeof expected === 'string' ? [expected] : expected;
    const error = t.throws(() => loadConfig(file)) as unknown;
    t.ok(error instanceof ConfigError, 'throws ConfigError');
    if (!(error instanceof ConfigError)) return;
    const located = (problem: string): string => (/^\d+:\d+: /.test(problem) ? `${file}:${problem}` : `${file}: ${problem}`);
    t.equal(error.message, problems.map(located).join('\n'));
    t.equal(error.code, 'RL_ERR_CONFIG');
    t.equal(error.file, file);
    t.equal(error.problems.length, problems.length, 'one problem per line');
    t.ok(error.problems.every((problem) => problem.file === file), 'each problem names the file');
  });
}

t.test('a misspelling is suggested even with swapped letters or other case', async (t) => {
  const { closestKey } = await import('../../../src/config/describe-issue.js');
  t.equal(closestKey('unti', ['unit', 'name']), 'unit');
  t.equal(closestKey('Shadow-Mode', ['shadow_mode', 'key']), 'shadow_mode');
  t.equal(closestKey('colour', ['unit', 'name']), undefined);
});
