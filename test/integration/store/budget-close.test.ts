/**
 * Closing the Redis store writes back what it owes (docs/budgets.md "No
 * charge lost"): token-budget charges the `local` policy recorded while
 * their master was down stay owed while its circuit breaker is open (the
 * background write-back waits for the breaker); close() must send them
 * anyway, within its bound, before it quits.
 */
import { Redis } from 'ioredis';
import t from 'tap';
import { parseStoredState } from '../../../src/core/algorithms/algorithm.js';
import { startRedis, waitFor } from '../../helpers/redis.js';
import { OpFactory, uniquePrefix } from '../../helpers/store-contract.js';
import { redisStoreFor } from './redis-helper.js';

t.setTimeout(60_000);

t.test('close() writes back budget charges owed to a master whose breaker is still open', async (t) => {
  const redis = await startRedis({ t });
  // The breaker opens at the first failure; its first probe comes after close() is called.
  const { store } = redisStoreFor(t, { redis: redis.url, policy: 'local', breaker: { failureThreshold: 1 } });
  await waitFor('store ready', () => store.health().ready);
  const f = new OpFactory(uniquePrefix('close'));
  const charge = f.op([['tenant', 't1']], { requestsPerUnit: 3600, unit: 'hour', overdraft: true }, 1000);
  t.equal((await store.apply([charge])).fallback, undefined, 'the first charge is decided by Redis');

  await redis.kill('SIGSTOP');
  let resumed = false;
  t.teardown(async () => {
    if (!resumed) await redis.kill('SIGCONT');
  });
  const during = [];
  for (let i = 0; i < 6; i++) during.push(await store.apply([charge]));
  t.ok(during.every((d) => d.fallback === 'local'), 'the local policy records 6 × 1000 while Redis hangs');
  t.notOk(store.health().ready, 'the breaker is open');
  await redis.kill('SIGCONT');
  resumed = true;
  await store.close();

  const client = new Redis({ host: redis.host, port: redis.port });
  t.teardown(() => client.quit());
  const state = parseStoredState(await client.get(charge.key));
  t.ok(state !== null, 'the budget has a state in Redis');
  // 7000 charged on 3600: 3400 owed, less one token a second (levelPerToken µ-units: 1e6 per token).
  const owed = -state![0]! / charge.limit.levelPerToken;
  t.comment(`Redis holds a debt of ${owed.toFixed(3)} tokens; 3400 charged past zero`);
  t.ok(owed <= 3400, `nothing counted twice: ${owed.toFixed(3)} ≤ 3400`);
  t.ok(owed >= 3400 - 10, `every charge is in Redis: ${owed.toFixed(3)} ≥ 3390`);
});
