// The error registry (src/errors.ts) is the whole list: every code is pinned,
// every code is produced somewhere, every throw in src/ throws a coded class,
// and each protocol maps every code in one function.
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import t from 'tap';
import * as errors from '../../../src/errors.js';
import { ERROR_CODES, RateLimitError, type ErrorCode } from '../../../src/errors.js';
import { httpError } from '../../../src/transport/http/server.js';
import { toGrpcError } from '../../../src/transport/grpc/grpc-errors.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SRC = join(ROOT, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const sources = sourceFiles(SRC).map((file) => ({ file: relative(ROOT, file), text: readFileSync(file, 'utf8') }));
const registryText = sources.find((s) => s.file === 'src/errors.ts')!.text;
const registryBlock = registryText.slice(registryText.indexOf('export const ERROR_CODES'), registryText.indexOf('} as const;'));

t.test('the list of codes is pinned (adding or removing one is a deliberate change here, in docs/api.md "Error codes" and in clients)', async (t) => {
  t.same(Object.keys(ERROR_CODES).sort(), [
    'RL_ERR_BAD_HTTP',
    'RL_ERR_BODY_TOO_LARGE',
    'RL_ERR_CONFIG',
    'RL_ERR_HEADERS_TOO_LARGE',
    'RL_ERR_INTERNAL',
    'RL_ERR_INVALID_REQUEST',
    'RL_ERR_LIMIT_SPEC',
    'RL_ERR_MALFORMED_MESSAGE',
    'RL_ERR_METHOD_NOT_ALLOWED',
    'RL_ERR_NOT_FOUND',
    'RL_ERR_REQUEST_TIMEOUT',
    'RL_ERR_SETTINGS',
    'RL_ERR_STORE_CALL',
    'RL_ERR_STORE_UNAVAILABLE',
    'RL_ERR_TLS',
  ]);
  for (const [code, meaning] of Object.entries(ERROR_CODES)) t.ok(meaning.length > 20, `${code} says what it means`);
});

/** Error classes defined in src/ that carry a code: RateLimitError and everything extending it, in any file. */
function codedClasses(): Set<string> {
  const classes = new Set(['RateLimitError']);
  const extensions = sources.flatMap(({ text }) => [...text.matchAll(/class (\w+) extends (\w+)/g)].map((m) => [m[1]!, m[2]!] as const));
  for (let grew = true; grew; ) {
    grew = false;
    for (const [name, base] of extensions) {
      if (classes.has(base) && !classes.has(name)) {
        classes.add(name);
        grew = true;
      }
    }
  }
  return classes;
}

t.test('every code is produced somewhere in src/, not only listed', async (t) => {
  const classes = codedClasses();
  for (const code of Object.keys(ERROR_CODES)) {
    // Uses outside the registry block: a class constructor passing it, a transport answering with it.
    const uses = sources.flatMap(({ file, text }) => {
      const body = file === 'src/errors.ts' ? text.replace(registryBlock, '') : text;
      return [...body.matchAll(new RegExp(`'${code}'`, 'g'))].map((m) => ({ file, body, at: m.index }));
    });
    const produced = uses.some(({ file, body, at }) => {
      if (file !== 'src/errors.ts') return true;
      // In errors.ts: the code belongs to the class around it, which must be constructed somewhere (or subclassed).
      const owner = [...body.slice(0, at).matchAll(/class (\w+)/g)].at(-1)?.[1];
      return owner !== undefined && sources.some((s) => new RegExp(`new ${owner}\\(|extends ${owner}\\b`).test(s.text.replace(`class ${owner} `, '')));
    });
    t.ok(produced, `${code} is produced (${uses.map((u) => u.file).join(', ') || 'nowhere'})`);
  }
  t.ok(classes.size >= 10, `coded classes found: ${[...classes].join(', ')}`);
});

t.test('every throw in src/ throws a coded error class', async (t) => {
  const classes = codedClasses();
  const offenders: string[] = [];
  for (const { file, text } of sources) {
    for (const match of text.matchAll(/\bthrow new (\w+)\(/g)) {
      if (!classes.has(match[1]!)) offenders.push(`${file}: throw new ${match[1]}(`);
    }
  }
  t.same(offenders, [], 'no bare Error, TypeError or RangeError');
});

t.test('every exported error class carries a registered code', async (t) => {
  for (const [name, value] of Object.entries(errors)) {
    if (typeof value !== 'function' || !(value.prototype instanceof Error)) continue;
    t.ok(value === RateLimitError || value.prototype instanceof RateLimitError, `${name} is a RateLimitError`);
  }
});

const sample = (code: ErrorCode): RateLimitError => new RateLimitError(code, `sample ${code}`);

t.test('HTTP: every code has a status; 5xx other than 503 send no details', async (t) => {
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const { status: httpStatus, body } = httpError(sample(code));
    t.ok(httpStatus >= 400 && httpStatus < 600, `${code} → ${httpStatus}`);
    if (httpStatus >= 500 && httpStatus !== 503) t.same(body.error, { code: 'RL_ERR_INTERNAL', message: 'internal error' }, `${code} leaks nothing`);
    else t.same(body.error, { code, message: `sample ${code}` }, `${code} is sent with its message`);
  }
  t.equal(httpError(new errors.InvalidRequestError('descriptors[0].entries[1].value', 'must not be empty')).body.error.field,
    'descriptors[0].entries[1].value', 'a request error names its field');
  t.equal(httpError(new errors.InternalError('secret path /etc/x')).status, 500, 'an internal error is a 500, not a 400');
  t.equal(httpError(new Error('plain')).status, 500, 'an uncoded error is a 500');
});

t.test('gRPC: every code has a status; INTERNAL sends no details and is logged', async (t) => {
  const logged: unknown[] = [];
  const logger = { error: (fields: unknown) => void logged.push(fields), warn: () => undefined, info: () => undefined, debug: () => undefined };
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const before = logged.length;
    const answer = toGrpcError(sample(code), 'Check', logger as never);
    t.ok(answer.code !== status.OK && answer.code !== status.UNKNOWN, `${code} → ${status[answer.code]}`);
    if (answer.code === status.INTERNAL) {
      t.equal(answer.details, 'internal error', `${code} leaks nothing`);
      t.equal(logged.length, before + 1, `${code} is logged`);
    } else {
      t.equal(answer.details, `sample ${code}`, `${code} is sent with its message`);
    }
  }
  t.equal(toGrpcError(new errors.InvalidRequestError('domain', 'must not be empty'), 'ShouldRateLimit', logger as never).code, status.INVALID_ARGUMENT);
  t.equal(toGrpcError(new errors.StoreUnavailableError('redis down'), 'ShouldRateLimit', logger as never).code, status.UNAVAILABLE);
});
