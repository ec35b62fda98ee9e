// Fuzz: random and broken JSON bodies to POST /v1/check, random forward-auth
// requests to /v1/auth*, and raw HTTP/1.1 bytes, on a running server (real
// composition root, memory store, real sockets). Every answer must be 2xx or
// 4xx within its deadline; a valid request must be decided.
import * as http from 'node:http';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startServer } from '../helpers/server.js';
import { FUZZ_SECONDS, fuzz, mutateBytes, randomAscii, randomText, type Random } from './fuzz-kit.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const CALL_DEADLINE_MS = 5000;
const KEYS = ['api_key', 'remote_address', 'path', 'method', 'sku', 'health', 'key1', 'key2'];

interface HttpAnswer { status: number | undefined; body: string; error: string | undefined }

function request(agent: http.Agent, port: number, options: { method: string; path: string; headers: http.OutgoingHttpHeaders; body?: Buffer }): Promise<HttpAnswer> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (answer: HttpAnswer): void => {
      if (!settled) {
        settled = true;
        resolve(answer);
      }
    };
    let req: http.ClientRequest;
    try {
      req = http.request({ agent, host: '127.0.0.1', port, method: options.method, path: options.path, headers: options.headers, timeout: CALL_DEADLINE_MS });
    } catch (error: unknown) {
      // The client refused what we built (an invalid method or header): nothing was sent.
      done({ status: 0, body: '', error: `client refused: ${error instanceof Error ? error.message : String(error)}` });
      return;
    }
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => done({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8'), error: undefined }));
      res.on('error', (error) => done({ status: res.statusCode, body: '', error: error.message }));
    });
    req.on('timeout', () => {
      req.destroy(new Error('deadline'));
      done({ status: undefined, body: '', error: 'deadline' });
    });
    req.on('error', (error) => done({ status: undefined, body: '', error: error.message }));
    req.end(options.body);
  });
}

/** A JSON string literal holding random text (escaped by JSON.stringify, so the body is valid UTF-8 JSON). */
function jsonText(random: Random): string {
  return randomText(random, random.range(0, 10)).toString('utf8');
}

/** A /v1/check body the service must decide (200 or 429). */
function validCheckBody(random: Random): unknown {
  const descriptors = Array.from({ length: random.chance(0.03) ? 64 : random.range(1, 4) }, () => {
    const entries = Array.from({ length: random.range(1, 3) }, () => ({
      key: random.chance(0.8) ? random.pick(KEYS) : `k${randomAscii(random, 4)}`,
      value: random.chance(0.1) ? '' : jsonText(random).slice(0, 1000),
    }));
    return random.chance(0.2) ? { entries, hits_addend: random.int(5) } : { entries };
  });
  const body: Record<string, unknown> = { descriptors };
  // A domain that is not loaded is a 400 on our HTTP API: mutated bodies reach it.
  if (random.chance(0.7)) body['domain'] = random.pick(['fuzz', 'fuzz_window']);
  if (random.chance(0.3)) body['hits_addend'] = random.chance(0.8) ? random.int(4) : 4_294_967_295;
  return body;
}

/** Replaces a random node of a JSON value with something of another type or shape. */
function mutateJson(random: Random, value: unknown, depth = 0): unknown {
  if (depth > 0 && random.chance(0.3)) {
    return random.pick<unknown>([
      null, true, 0, -1, 1.5, 1e308, -0, 2 ** 53, 4_294_967_296, '', 'x', [], {}, [[[]]], { entries: null },
      '\u0000', '\ud800', Number.MAX_SAFE_INTEGER, '1', { key: 1, value: [] }, Array(100).fill('a'),
    ]);
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return [mutateJson(random, null, depth + 1)];
    const copy = [...value];
    const i = random.int(copy.length);
    copy[i] = mutateJson(random, copy[i], depth + 1);
    if (random.chance(0.1)) copy.push(mutateJson(random, copy[0], depth + 1));
    return copy;
  }
  if (typeof value === 'object' && value !== null) {
    const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    const keys = Object.keys(copy);
    if (keys.length === 0 || random.chance(0.15)) copy[random.pick(['domain', 'descriptors', 'hits_addend', 'entries', 'key', 'value', 'extra', '__proto__', 'constructor'])] = mutateJson(random, null, depth + 1);
    else {
      const key = random.pick(keys);
      if (random.chance(0.15)) delete copy[key];
      else copy[key] = mutateJson(random, copy[key], depth + 1);
    }
    return copy;
  }
  return mutateJson(random, random.pick<unknown>([[], {}, 'x', 1]), depth + 1);
}

function nested(random: Random): string {
  const depth = random.range(100, 5000);
  return random.chance(0.5) ? '['.repeat(depth) + ']'.repeat(depth) : `{"descriptors":${'['.repeat(depth)}${']'.repeat(depth)}}`;
}

/** Header value bytes an HTTP/1.1 client may send (latin1: no CR, LF or other control bytes). */
function headerValue(random: Random): string {
  const bytes = random.chance(0.5) ? Buffer.from(randomAscii(random, random.range(0, 20))) : randomText(random, random.range(1, 8));
  return Buffer.from(bytes.filter((b) => b === 0x09 || (b >= 0x20 && b !== 0x7f))).toString('latin1');
}

function address(random: Random): string {
  return random.pick([
    `${random.int(256)}.${random.int(256)}.${random.int(256)}.${random.int(256)}`, '::1', `2001:db8::${random.int(9999)}`,
    'unknown', '', ' , ,', '1.2.3.4, 5.6.7.8', '999.1.1.1', '[::1]:80', '127.0.0.1:8080', randomAscii(random, 12, '0123456789.:abcdef,[] '),
  ]);
}

/** A forward-auth request; `valid` ones must be decided (200, 429, or 403 on /v1/auth/nginx). */
function authRequest(random: Random, valid: boolean): { method: string; path: string; headers: http.OutgoingHttpHeaders } {
  const headers: http.OutgoingHttpHeaders = {};
  if (random.chance(0.7)) headers['x-api-key'] = headerValue(random);
  if (random.chance(0.3)) headers['x-real-ip'] = address(random);
  if (random.chance(0.3)) headers['x-forwarded-for'] = address(random);
  if (random.chance(0.3)) headers['x-original-uri'] = random.pick(['/rating', '/rating?sku=1', '/', '', '?sku=2&sku=3', `/${randomAscii(random, 8, 'abc/?&=%')}`]);
  if (random.chance(0.2)) headers['x-original-method'] = random.pick(['GET', 'DELETE', 'post', '']);
  if (random.chance(0.1)) headers['x-forwarded-uri'] = `/${randomAscii(random, 5)}`;
  if (random.chance(0.1)) headers['x-forwarded-method'] = 'DELETE';
  if (random.chance(0.1)) headers['x-forwarded-host'] = headerValue(random);
  if (random.chance(0.3)) headers['x-ratelimit-domain'] = random.pick(['fuzz', 'fuzz_window', '']);
  if (!valid) {
    if (random.chance(0.2)) headers['x-ratelimit-domain'] = 'no-such-domain';
    if (random.chance(0.3)) headers['x-ratelimit-domain'] = headerValue(random);
    if (random.chance(0.2)) headers[`x-${randomAscii(random, 6)}`] = headerValue(random);
    if (random.chance(0.05)) headers['x-api-key'] = 'k'.repeat(random.range(60_000, 70_000)); // sent on a connection of its own, see below
    if (random.chance(0.2)) headers['content-type'] = random.pick(['application/json', 'text/plain', 'multipart/form-data; boundary=x', '*/*']);
  }
  const method = random.pick(valid ? ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'] : ['GET', 'POST', 'PROPFIND', 'TRACE', 'M-SEARCH']);
  // A '%' not followed by two hex digits is a 400 from fastify's router (FST_ERR_BAD_URL): only in wild requests.
  const pathAlphabet = valid ? 'abc/?&=.~' : 'abc/%?&=.~';
  const path = random.pick(['/v1/auth', '/v1/auth/', '/v1/auth/nginx', '/v1/auth/rating', '/v1/auth/rating?sku=9', '/v1/auth?x=1', `/v1/auth/${randomAscii(random, 10, pathAlphabet)}`]);
  return { method, path, headers };
}

/** Raw HTTP/1.1: what the server answers (status line) or that it closed; never silence past the deadline. */
function rawHttp(port: number, bytes: Buffer): Promise<{ status: number | undefined; closed: boolean; timedOut: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    let finished = false;
    const finish = (timedOut: boolean): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(received);
      resolve({ status: match === null ? undefined : Number(match[1]), closed: !timedOut, timedOut });
    };
    const timer = setTimeout(() => finish(received === ''), 2000);
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      if (/\r\n\r\n/.test(received)) finish(false);
    });
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
    socket.end(bytes);
  });
}

/** A request as bytes, then mutated. CONNECT is here: node:http clients treat it specially. */
function rawRequest(random: Random): Buffer {
  const body = Buffer.from(JSON.stringify(validCheckBody(random)));
  const [method, path] = random.pick([['POST', '/v1/check'], ['GET', '/v1/auth/x'], ['CONNECT', '/v1/auth'], ['CONNECT', 'example.com:443'], ['POST', '/v1/auth/nginx']]);
  const head = Buffer.from(
    `${method} ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-api-key: ${headerValue(random)}\r\ncontent-length: ${body.length}\r\n\r\n`,
    'latin1',
  );
  return mutateBytes(random, Buffer.concat([head, body]));
}

t.test('fuzz: HTTP bodies and forward-auth requests', async (t) => {
  const app = await startServer({ config: FIXTURES, store: 'memory', 'default-domain': 'fuzz' });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  t.teardown(async () => {
    agent.destroy();
    await app.stop();
  });
  const port = app.httpPort;

  const judge = (answer: HttpAnswer, mustDecide: readonly number[] | undefined, what: string): string | undefined => {
    if (answer.error?.startsWith('client refused') === true) return undefined;
    if (answer.status === undefined) return `no answer (${answer.error}) to ${what}`;
    if (answer.status >= 500 || answer.status < 200 || (answer.status >= 300 && answer.status < 400)) return `HTTP ${answer.status} ${answer.body.slice(0, 300)} for ${what}`;
    if (mustDecide !== undefined && !mustDecide.includes(answer.status)) return `a valid request got ${answer.status} ${answer.body.slice(0, 300)} for ${what}`;
    return undefined;
  };
  const shown = (b: Buffer | string): string => {
    const text = typeof b === 'string' ? b : b.toString('latin1');
    return JSON.stringify(text.length <= 300 ? text : `${text.slice(0, 300)}... (${text.length} chars)`);
  };

  await fuzz(t, 'POST /v1/check', { seconds: FUZZ_SECONDS * 0.45, concurrency: 8 }, async (random) => {
    const roll = random.next();
    let body: Buffer;
    let mustDecide: readonly number[] | undefined;
    if (roll < 0.3) {
      body = Buffer.from(JSON.stringify(validCheckBody(random)));
      mustDecide = [200, 429];
    } else if (roll < 0.6) {
      body = Buffer.from(JSON.stringify(mutateJson(random, validCheckBody(random))));
    } else if (roll < 0.85) {
      body = mutateBytes(random, Buffer.from(JSON.stringify(validCheckBody(random))));
    } else if (roll < 0.9) {
      body = Buffer.from(nested(random));
    } else if (roll < 0.95) {
      body = random.chance(0.5) ? Buffer.alloc(random.range(65_000, 70_000), 0x20) : random.bytes(random.int(200));
    } else {
      body = Buffer.alloc(0);
    }
    const headers: http.OutgoingHttpHeaders = { 'content-length': body.length };
    if (random.chance(0.9)) headers['content-type'] = random.chance(0.8) ? 'application/json' : random.pick(['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'x/y']);
    const answer = await request(agent, port, { method: 'POST', path: random.chance(0.9) ? '/v1/check' : '/v1/check?x=1', headers, body });
    return judge(answer, mustDecide, `body ${shown(body)}`);
  });

  await fuzz(t, '/v1/auth*', { seconds: FUZZ_SECONDS * 0.35, concurrency: 8 }, async (random) => {
    const valid = random.chance(0.5);
    const req = authRequest(random, valid);
    const body = random.chance(0.2) ? random.bytes(random.int(100)) : undefined;
    if (body !== undefined) req.headers['content-length'] = body.length;
    // Headers over 64 KiB get Node's 431, which closes the connection without
    // `Connection: close`: a pooled socket would fail the next request sent on it.
    const big = String(req.headers['x-api-key'] ?? '').length > 60_000;
    const answer = await request(big ? new http.Agent({ keepAlive: false }) : agent, port, body === undefined ? req : { ...req, body });
    const decided = req.path.startsWith('/v1/auth/nginx') ? [200, 403] : [200, 429];
    return judge(answer, valid ? decided : undefined, `${req.method} ${req.path} ${shown(JSON.stringify(req.headers))}`);
  });

  await fuzz(t, 'raw HTTP/1.1 bytes', { seconds: FUZZ_SECONDS * 0.2, concurrency: 4 }, async (random) => {
    const bytes = random.chance(0.9) ? rawRequest(random) : random.bytes(random.int(300));
    const answer = await rawHttp(port, bytes);
    if (answer.timedOut) return `neither an answer nor a close within 2 s for ${shown(bytes)}`;
    if (answer.status !== undefined && answer.status >= 500) return `HTTP ${answer.status} for ${shown(bytes)}`;
    return undefined;
  });

  const health = await request(agent, port, { method: 'GET', path: '/healthz', headers: {} });
  t.equal(health.status, 200, '/healthz still answers');
});
