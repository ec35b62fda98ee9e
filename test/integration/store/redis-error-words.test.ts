// What a client is told about a Redis failure is in our words, never
// ioredis's (issue 21: "store unavailable: Stream isn't writeable and
// enableOfflineQueue options is false" in deny answers and /readyz).
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { StoreCallError } from '../../../src/errors.js';
import { redisErrorWords } from '../../../src/store/redis/error-words.js';
import { startRedis, waitFor } from '../../helpers/redis.js';
import { startServer } from '../../helpers/server.js';

/** Phrases of ioredis (and Node's socket errors) that must not reach a client. */
const IOREDIS_WORDING = /Stream isn't writeable|enableOfflineQueue|Connection is closed|ECONNREFUSED|max retries|slots cache|startup nodes/i;

const withCode = (message: string, code: string): Error => Object.assign(new Error(message), { code });

t.test('each kind of Redis failure has its own words', async (t) => {
  const cases: Array<[unknown, string]> = [
    [new Error("Stream isn't writeable and enableOfflineQueue options is false"), 'redis unreachable (not connected)'],
    [withCode('connect ECONNREFUSED 127.0.0.1:6379', 'ECONNREFUSED'), 'redis unreachable (connection refused)'],
    [withCode('getaddrinfo ENOTFOUND redis.example', 'ENOTFOUND'), 'redis unreachable (host not found)'],
    [withCode('connect ETIMEDOUT', 'ETIMEDOUT'), 'redis timed out'],
    [new Error('Connection is closed.'), 'redis connection closed'],
    [withCode('read ECONNRESET', 'ECONNRESET'), 'redis connection closed'],
    [new Error('WRONGPASS invalid username-password pair or user is disabled.'), 'redis rejected our credentials (wrong password, or an unknown or disabled ACL user): check --redis-password and --redis-username'],
    [new Error('NOAUTH Authentication required.'), 'redis requires a password and none was given (--redis-password)'],
    [new Error("NOPERM this user has no permissions to run the 'evalsha' command"), 'the redis ACL user may not run scripts: grant it EVALSHA and EVAL (+evalsha +eval, or +@scripting)'],
    [new Error('NOPERM this user has no permissions to access one of the keys used as arguments'), 'the redis ACL user may not read and write the rate-limit keys: grant it the key pattern of --redis-key-prefix (e.g. ~rl:*)'],
    [new Error("ERR The user executing the script can't run this command or subcommand script: bd31, on @user_script:1."), 'the redis ACL user may not run a command the rate-limit script needs (TIME, GET, SET, DEL, PEXPIRE, HGET, HSET, HDEL, HGETALL, ZADD, ZCARD, ZREMRANGEBYSCORE)'],
    [new Error("ERR unknown command 'evalsha', with args beginning with: 'abc' "), 'redis has no Lua scripting (EVALSHA/EVAL are unknown commands: a build without Lua, or the commands renamed); the Redis store needs it'],
    [new Error('LOADING Redis is loading the dataset in memory'), 'redis is loading its data set'],
    [new Error('CLUSTERDOWN The cluster is down'), 'redis cluster is down'],
    [new Error('Failed to refresh slots cache.'), 'redis cluster unreachable'],
    [new Error('Reached the max retries per request limit (which is 0). Refer to "maxRetriesPerRequest" option for details.'), 'redis unreachable (not connected)'],
    [new Error('ERR unknown command'), 'redis answered with an error (ERR)'],
    [new Error('something nobody foresaw'), 'redis call failed'],
    ['not even an Error', 'redis call failed'],
  ];
  for (const [error, words] of cases) t.equal(redisErrorWords(error), words, String(error));
  const ours = new StoreCallError('redis: EVALSHA not answered within its 50 ms deadline', { timedOut: true });
  t.equal(redisErrorWords(ours), ours.message, 'our own errors keep their words');
});

t.test('regression: a stopped Redis under --on-store-failure deny: the 503 and /readyz say so in our words', async (t) => {
  const redis = await startRedis({ t });
  const config = fileURLToPath(new URL('../../fixtures/shop.yaml', import.meta.url));
  const app = await startServer({ config, redis: redis.url, 'on-store-failure': 'deny' });
  t.teardown(() => app.stop());
  const check = () => fetch(`${app.url}/v1/check`, {
    method: 'POST',
    body: JSON.stringify({ domain: 'shop', descriptors: [{ entries: [{ key: 'api_key', value: 'w1' }] }] }),
  });
  await waitFor('a decision from Redis', async () => (await check()).status === 200, 10_000);

  await redis.stop();
  let denied: { error: { code: string; message: string } } | undefined;
  await waitFor('a 503 from the deny policy', async () => {
    const response = await check();
    if (response.status !== 503) return false;
    denied = await response.json() as typeof denied;
    return true;
  }, 10_000);
  t.equal(denied?.error.code, 'RL_ERR_STORE_UNAVAILABLE');
  t.match(denied?.error.message, /^store unavailable: redis /);
  t.notMatch(denied?.error.message, IOREDIS_WORDING, `no ioredis wording: ${denied?.error.message}`);

  let readiness: { status: string; detail: string } | undefined;
  await waitFor('/readyz to name the last error', async () => {
    const response = await fetch(`${app.url}/readyz`);
    readiness = await response.json() as typeof readiness;
    return response.status === 503 && /last error: /.test(readiness?.detail ?? '');
  }, 10_000);
  t.match(readiness?.detail, /last error: redis (unreachable|connection closed)/);
  t.notMatch(readiness?.detail, IOREDIS_WORDING, `no ioredis wording: ${readiness?.detail}`);
});
