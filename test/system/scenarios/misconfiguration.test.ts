/**
 * Misconfiguration is not an outage (issue 20 item 3, issue 21): a wrong
 * password, an ACL user without scripting or without our keys, and a Redis
 * without Lua make real sidecars NOT ready under every failure policy, named
 * in our words in /readyz, in one error log line and in
 * ratelimit_redis_misconfigured; their decisions are refused (503), never
 * admitted locally or openly. Before: /readyz 200 "ready; deciding with:
 * store" for an ACL user without scripts, and 3 sidecars x 15 requests on a
 * 10/hour key admitted 30 with a wrong password under `local`.
 */
import tap, { type Test } from 'tap';
import { startRedis, type RedisNode } from '../../helpers/redis.js';
import { check, flat, getText, tally, until, writeConfig, type Answer, type Policy, type Sidecar } from './lib.js';
import { spawnServer } from '../../helpers/process.js';

tap.setTimeout(240_000);

/** Phrases of ioredis and of Redis's replies that must not reach a client. */
const LIBRARY_WORDING = /Stream isn't writeable|enableOfflineQueue|Connection is closed|ECONNREFUSED|NOPERM|WRONGPASS|NOAUTH|unknown command '/i;
const POLICIES: readonly Policy[] = ['local', 'allow', 'deny'];
const HANG_GUARD_MS = 20_000;

async function sidecar(t: Test, name: string, config: string, redis: RedisNode, policy: Policy, extra: string[]): Promise<Sidecar> {
  const proc = await spawnServer(['--config', config, '--on-store-failure', policy, '--redis', redis.url, ...extra]);
  t.teardown(() => proc.stop('SIGTERM'));
  return { name, proc, url: proc.httpUrl };
}

/** One labelled series' value on /metrics (NaN when absent). */
async function series(s: Sidecar, name: string, labels: string): Promise<number> {
  const { text } = await getText(s, '/metrics');
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

function logLines(s: Sidecar): { level: number; msg: string }[] {
  return s.proc.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string });
}

interface Case {
  cause: string;
  words: RegExp;
  redis: () => RedisNode;
  extra: string[];
}

await tap.test('each misconfiguration: not ready under local, allow and deny, named, counted, logged once, decisions refused', async (t) => {
  const config = writeConfig(t);
  const acl = await startRedis({ t });
  await acl.cli('ACL', 'SETUSER', 'good', 'on', '>pw', '~*', '+@all');
  await acl.cli('ACL', 'SETUSER', 'noscript', 'on', '>pw', '~*', '+@all', '-@scripting');
  await acl.cli('ACL', 'SETUSER', 'nokeys', 'on', '>pw', '~other:*', '+@all');
  // "No scripting": EVALSHA and EVAL renamed away, as a Valkey or Redis built without Lua answers them.
  const noLua = await startRedis({ t, args: ['--rename-command', 'EVALSHA', 'hidden-evalsha', '--rename-command', 'EVAL', 'hidden-eval'] });
  const cases: Case[] = [
    { cause: 'wrong_password', words: /redis rejected our credentials/, redis: () => acl, extra: ['--redis-username', 'good', '--redis-password', 'wrong'] },
    { cause: 'acl_scripting', words: /ACL user may not run scripts/, redis: () => acl, extra: ['--redis-username', 'noscript', '--redis-password', 'pw'] },
    { cause: 'acl_keys', words: /ACL user may not read and write the rate-limit keys/, redis: () => acl, extra: ['--redis-username', 'nokeys', '--redis-password', 'pw'] },
    { cause: 'no_scripting', words: /redis has no Lua scripting/, redis: () => noLua, extra: [] },
  ];
  for (const c of cases) {
    await t.test(c.cause, async (t) => {
      const redis = c.redis();
      const node = `127.0.0.1:${redis.port}`;
      const sidecars: Sidecar[] = [];
      for (const policy of POLICIES) sidecars.push(await sidecar(t, policy, config, redis, policy, c.extra));
      for (const s of sidecars) {
        let last = '';
        await until(`${s.name}: /readyz names the misconfiguration`, async () => {
          const { status, text } = await getText(s, '/readyz');
          last = `${status} ${text}`;
          return status === 503 && c.words.test(text);
        }, HANG_GUARD_MS).catch((error: unknown) => { throw new Error(`${String(error)}; last /readyz: ${last}`); });
        t.match(last, /^503 .*misconfigured: 127\.0\.0\.1:\d+: .*deciding with: none/, `${s.name}: not ready, the cause in our words: ${last}`);
        t.notMatch(last, LIBRARY_WORDING, `${s.name}: /readyz has none of the library's wording`);
        t.equal(await series(s, 'ratelimit_redis_misconfigured', `node="${node}",cause="${c.cause}"`), 1, `${s.name}: ratelimit_redis_misconfigured{cause="${c.cause}"} 1`);
      }
      // 3 sidecars x 15 requests on one 10/hour key: nothing admitted, every answer a 503 in our words.
      const answers: Answer[] = [];
      for (let i = 0; i < 15; i++) {
        answers.push(...await Promise.all(sidecars.map((s) => check(s, [flat('api_key', `misconfigured-${c.cause}`)]))));
      }
      t.same(tally(answers), { 503: 45 }, '45 requests, 45 refusals: no sidecar admits anything (no silent fail-open)');
      const messages = new Set(answers.map((a) => (a.body as { error?: { message?: string } }).error?.message ?? ''));
      for (const message of messages) {
        t.match(message, c.words, `the refusal names the cause: ${message}`);
        t.notMatch(message, LIBRARY_WORDING, 'and none of the library\'s wording');
      }
      for (const s of sidecars) {
        const lines = logLines(s);
        const errors = lines.filter((l) => l.level >= 50);
        t.equal(errors.length, 1, `${s.name}: one error line: ${errors.map((l) => l.msg).join(' | ')}`);
        t.match(errors[0]?.msg, /is misconfigured/);
        const storeWarnings = lines.filter((l) => l.level === 40 && /redis/.test(l.msg));
        t.same(storeWarnings.map((l) => l.msg), [], `${s.name}: no warn lines about Redis besides it`);
      }
    });
  }

  await t.test('an ACL fixed on the server: ready again without a restart, and deciding with Redis', async (t) => {
    const s = await sidecar(t, 'local', config, acl, 'local', ['--redis-username', 'noscript', '--redis-password', 'pw']);
    await until('not ready: may not run scripts', async () => (await getText(s, '/readyz')).status === 503, HANG_GUARD_MS);
    await acl.cli('ACL', 'SETUSER', 'noscript', '+@scripting');
    let last = '';
    await until('ready once the ACL allows scripts', async () => {
      const { status, text } = await getText(s, '/readyz');
      last = text;
      return status === 200 && text.includes('deciding with: store"');
    }, HANG_GUARD_MS).catch((error: unknown) => { throw new Error(`${String(error)}; last /readyz: ${last}`); });
    t.ok(Number.isNaN(await series(s, 'ratelimit_redis_misconfigured', `node="127.0.0.1:${acl.port}",cause="acl_scripting"`)), 'the misconfigured series is gone');
    const answers = [];
    for (let i = 0; i < 12; i++) answers.push(await check(s, [flat('api_key', 'fixed-acl')]));
    t.same(tally(answers), { 200: 10, 429: 2 }, 'Redis decides: 10 of 12 on a 10/hour key');
    t.equal(logLines(s).filter((l) => /is no longer misconfigured/.test(l.msg)).length, 1, 'one line says it is fixed');
  });
});
