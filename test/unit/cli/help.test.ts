// `--help` is generated from the flag table: every flag shown once, in a
// group, within 80 columns; `check-config --help` explains its own flags.
import t from 'tap';
import { adminUsage, checkConfigUsage, usage } from '../../../src/server/help.js';
import { FLAG_GROUPS, FLAGS, envName } from '../../../src/server/settings.js';

const WIDTH = 80;

t.test('serve --help fits 80 columns', async (t) => {
  const tooWide = usage().split('\n').filter((line) => line.length > WIDTH);
  t.same(tooWide, [], 'no line over 80 characters');
});

t.test('serve --help shows every flag exactly once, under its group', async (t) => {
  const text = usage();
  for (const name of Object.keys(FLAGS)) {
    const shown = text.split('\n').filter((line) => new RegExp(`^  --${name}( |$)`).test(line));
    t.equal(shown.length, 1, `--${name} is shown once`);
  }
  for (const { title } of FLAG_GROUPS) t.match(text, `\n${title}:\n`, `group "${title}"`);
  t.match(text, /--http-port PORT +HTTP port .*\s+\(default 8080; RL_HTTP_PORT\)/);
  t.match(text, /--on-store-failure local\|allow\|deny\n +local \| allow \| deny when Redis fails \(default\s+local;\s+RL_ON_STORE_FAILURE\)/);
  for (const name of Object.keys(FLAGS)) t.match(text, envName(name), `${envName(name)} is shown`);
});

t.test('every flag has a group, and one only (a new flag must be placed)', async (t) => {
  const grouped = FLAG_GROUPS.flatMap(({ flags }) => flags as readonly string[]);
  t.same([...grouped].sort(), Object.keys(FLAGS).sort());
  t.equal(new Set(grouped).size, grouped.length, 'no flag in two groups');
  t.notMatch(usage(), '\nOther:\n', 'no "Other" group while every flag is placed');
});

t.test('check-config --help explains --merge-domains, within 80 columns', async (t) => {
  const text = checkConfigUsage();
  t.same(text.split('\n').filter((line) => line.length > WIDTH), []);
  t.match(text, /--merge-domains +join files that name the same domain/);
  t.match(text, 'RL_MERGE_DOMAINS');
  t.match(text, /Exit status: 0/);
});

t.test('inspect/reset --help explains the descriptors, the JSON and the exit codes, within 80 columns', async (t) => {
  const text = adminUsage();
  t.same(text.split('\n').filter((line) => line.length > WIDTH), []);
  t.match(text, 'key=value[,key=value...]');
  t.match(text, /--domain D +the domain/);
  t.match(text, '"limit_remaining"');
  t.match(text, '{"reset":N}');
  t.match(text, /Exit status: 0 done; 1 the store could not be reached/);
  t.match(usage(), /openclaw-ratelimit inspect\|reset --config PATH/, 'the commands are in the main --help');
});
