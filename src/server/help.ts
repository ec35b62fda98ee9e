// The text of `--help`, generated from the flag table (settings.ts FLAGS and
// FLAG_GROUPS) so it cannot drift from the flags; every line fits 80 columns.
import { FLAG_GROUPS, FLAGS, envName, type FlagSpec } from './settings.js';

const WIDTH = 80;
/** Where help text starts; a longer flag puts its text on the next line. */
const TEXT_COLUMN = 30;

/** Splits `text` into lines of at most `width` characters, at spaces (a longer word gets a line of its own). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** `  --name VALUE` then the text, wrapped and indented to TEXT_COLUMN. */
function entry(shown: string, text: string): string[] {
  const head = `  ${shown}`;
  const body = wrap(text, WIDTH - TEXT_COLUMN);
  const indent = ' '.repeat(TEXT_COLUMN);
  if (head.length + 2 > TEXT_COLUMN) return [head, ...body.map((line) => indent + line)];
  return body.map((line, i) => (i === 0 ? head.padEnd(TEXT_COLUMN) : indent) + line);
}

/** Value names that say more than the generic ones below. */
const PLACEHOLDERS: Readonly<Record<string, string>> = {
  config: 'PATH', host: 'ADDRESS', redis: 'URL', 'redis-cluster': 'HOST:PORT,...', 'trusted-proxies': 'CIDR,...',
  'default-domain': 'DOMAIN', region: 'NAME', regions: 'LIST', 'redis-tls-servername': 'NAME', 'log-level': 'LEVEL',
  store: 'memory|redis', 'on-store-failure': 'local|allow|deny', 'fallback-divisor': 'auto|N', 'header-style': 'STYLE',
};

/** What a flag's value is: `--http-port PORT`, `--redis-timeout-ms MS`. */
function placeholder(name: string, spec: FlagSpec): string {
  if (spec.type === 'boolean') return '';
  const known = PLACEHOLDERS[name];
  if (known !== undefined) return ` ${known}`;
  if (name.endsWith('-ms')) return ' MS';
  if (name.endsWith('-port')) return ' PORT';
  if (name.endsWith('-bytes')) return ' BYTES';
  if (/(^|-)(ca|cert|key)$/.test(name)) return ' FILE';
  if (/^(max-|memory-max-|local-cache-|workers$|http-max-)/.test(name)) return ' N';
  return ' VALUE';
}

function flagEntry(name: string): string[] {
  const spec = (FLAGS as Record<string, FlagSpec>)[name]!;
  const text = `${spec.help} (${spec.default === undefined ? '' : `default ${spec.default}; `}${envName(name)})`;
  return entry(`--${name}${placeholder(name, spec)}`, text);
}

/** `openclaw-ratelimit --help` and `serve --help`. */
export function usage(): string {
  const lines = [
    'openclaw-ratelimit — rate-limit decision server for Envoy and NGINX',
    '',
    'Usage:',
    '  openclaw-ratelimit serve --config PATH [flags]',
    '  openclaw-ratelimit check-config [--merge-domains] PATH...',
    '  openclaw-ratelimit check-config --help   (what check-config checks, its flags)',
    '  openclaw-ratelimit inspect|reset --config PATH [store flags] [--domain D]',
    '                                   key=value[,key=value...] ...',
    '  openclaw-ratelimit inspect --help        (what inspect and reset do)',
    '',
    ...wrap('Flags of serve, each with its default and the environment variable it also reads (RL_ + its name in upper snake case); a flag wins over its variable.', WIDTH),
  ];
  const grouped = new Set<string>();
  const groups = [...FLAG_GROUPS];
  const other = Object.keys(FLAGS).filter((name) => !FLAG_GROUPS.some((group) => (group.flags as readonly string[]).includes(name)));
  if (other.length > 0) groups.push({ title: 'Other', flags: other as (keyof typeof FLAGS)[] });
  for (const { title, flags } of groups) {
    lines.push('', `${title}:`);
    for (const name of flags) {
      if (grouped.has(name)) continue;
      grouped.add(name);
      lines.push(...flagEntry(name));
    }
  }
  return lines.join('\n');
}

/** `check-config --help`. */
export function checkConfigUsage(): string {
  return [
    'Usage: openclaw-ratelimit check-config [--merge-domains] PATH...',
    '',
    ...wrap('Validates rule files as serve would load them: each PATH is a file or a directory of *.yaml/*.yml (one domain per file). '
      + 'Prints "PATH: OK (...)" for each valid one; every problem of every file goes to stderr as file:line:column: path: problem.', WIDTH),
    '',
    ...entry('--merge-domains', `join files that name the same domain into one, as serve --merge-domains (${envName('merge-domains')})`),
    ...entry('-h, --help', 'this text'),
    '',
    ...wrap('Exit status: 0 all valid; 2 a problem in a file, or a usage error; 1 an unexpected failure.', WIDTH),
  ].join('\n');
}

/** `inspect --help` and `reset --help`. */
export function adminUsage(): string {
  return [
    'Usage: openclaw-ratelimit inspect --config PATH [store flags] [--domain D]',
    '                                  key=value[,key=value...] ...',
    '       openclaw-ratelimit reset   --config PATH [store flags] [--domain D]',
    '                                  key=value[,key=value...] ...',
    '',
    ...wrap('One argument per descriptor, its entries in order (a value may not hold a comma). The config and the store are '
      + "those of serve's flags and RL_* variables (--redis, --redis-cluster, --redis-sentinel, their credentials and TLS, "
      + '--redis-key-prefix, --region, --regions), so in a sidecar\'s container the commands need no flags but the descriptors.', WIDTH),
    '',
    ...wrap('inspect prints, per descriptor, the bucket as the store holds it now, taking nothing: '
      + '{"domain", "statuses": [{"code", "limit", "key", "limit_remaining", "duration_until_reset_ms"}]}. '
      + 'reset deletes the state of every bucket the descriptors match (each is full again) and prints {"reset":N}, '
      + 'N the buckets that held state. A running server answers the same on its admin listener (POST /v1/inspect, /v1/reset '
      + 'on --admin-port); with the memory store only there, as its buckets live in the server.', WIDTH),
    '',
    ...entry('--domain D', 'the domain (default: --default-domain, else the only loaded one)'),
    ...entry('-h, --help', 'this text'),
    '',
    ...wrap('Exit status: 0 done; 1 the store could not be reached or did not answer in time; 2 bad flags, config or descriptors.', WIDTH),
  ].join('\n');
}
