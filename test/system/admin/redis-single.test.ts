// Inspect and reset on a single Redis (a real redis-server): the admin
// listener and the CLI read and delete what Redis holds; a reset clears the
// resetting sidecar's mirror, while another sidecar's cached denial lasts at
// most until the Retry-After it announced (docs/operations.md).
import t from 'tap';
import { freePort, startRedis } from '../../helpers/redis.js';
import { badInput, inspectAndReset, post, startServer, unreachable, writeConfig } from './scenario.js';

// A hang guard for the whole file (real servers, Redis and CLI processes on a shared machine), not a timing assertion.
t.setTimeout(600_000);

await t.test('single Redis: take, inspect twice, deny, reset, full, admit; through the admin listener and the CLI', async (t) => {
  const redis = await startRedis({ t });
  await inspectAndReset(t, { storeArgs: ['--redis', redis.url, '--redis-key-prefix', 'single:'], shared: true });
});

await t.test('single Redis: bad bodies are 400 naming the field, bad command lines exit 2', async (t) => {
  const redis = await startRedis({ t });
  await badInput(t, { storeArgs: ['--redis', redis.url] });
});

await t.test('single Redis unreachable: inspect and reset exit 1; the admin listener answers 503 in our words', async (t) => {
  await unreachable(t, ['--redis', `redis://127.0.0.1:${await freePort()}`]);
  const redis = await startRedis({ t });
  const server = await startServer(t, writeConfig(t), ['--redis', redis.url]);
  await redis.stop();
  const body = { descriptors: [{ entries: [{ key: 'api_key', value: 'k' }] }] };
  for (const path of ['/v1/inspect', '/v1/reset']) {
    const answer = await post(`${server.adminUrl}${path}`, body);
    t.equal(answer.status, 503, `${path} → 503`);
    const message = (answer.json as { error: { message: string } }).error.message;
    t.match(message, /redis (unreachable|connection closed)/, 'says what is wrong');
    t.notMatch(message, /Stream isn't writeable|enableOfflineQueue/, 'in our words, not ioredis\'s');
  }
});

await t.test('a reset clears the mirror of the sidecar it went through; another sidecar denies from its own until its Retry-After', async (t) => {
  const redis = await startRedis({ t });
  const config = writeConfig(t);
  const storeArgs = ['--redis', redis.url];
  const a = await startServer(t, config, storeArgs);
  const b = await startServer(t, config, storeArgs);
  const c0 = { descriptors: [{ entries: [{ key: 'api_key', value: 'c0' }] }] };
  const check = async (url: string): Promise<{ status: number; retryAfter: number }> => {
    const response = await fetch(`${url}/v1/check`, { method: 'POST', body: JSON.stringify(c0) });
    await response.arrayBuffer();
    return { status: response.status, retryAfter: Number(response.headers.get('retry-after') ?? 0) };
  };
  t.equal((await post(`${a.httpUrl}/v1/check`, { ...c0, hits_addend: 10 })).status, 200, 'A spends the bucket');
  const before = await check(a.httpUrl);
  t.equal(before.status, 429, 'A denies');
  t.equal((await check(b.httpUrl)).status, 429, 'B denies (Redis says so, and B remembers it)');

  t.same(await post(`${b.adminUrl}/v1/reset`, c0), { status: 200, json: { reset: 1 } }, 'reset through B');
  t.equal((await check(b.httpUrl)).status, 200, 'B admits at once: its mirror forgot the bucket');
  const cached = await check(a.httpUrl);
  t.equal(cached.status, 429, 'A still denies from its mirror, without asking Redis');
  t.ok(cached.retryAfter >= 1 && cached.retryAfter <= before.retryAfter, `for at most the Retry-After it announced (${cached.retryAfter} s ≤ ${before.retryAfter} s)`);
  const redisView = await post(`${a.adminUrl}/v1/inspect`, c0);
  t.equal((redisView.json as { statuses: { limit_remaining: number }[] }).statuses[0]!.limit_remaining, 9, 'while A\'s admin listener reads Redis itself: B took one');

  t.same(await post(`${a.adminUrl}/v1/reset`, c0), { status: 200, json: { reset: 1 } }, 'a reset through A');
  t.equal((await check(a.httpUrl)).status, 200, 'clears A\'s mirror too');
});
