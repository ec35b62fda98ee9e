import t from 'tap';
import { StoreUnavailableError } from '../../../src/errors.js';
import { createLogger } from '../../../src/telemetry/logger.js';
import { Metrics } from '../../../src/telemetry/metrics.js';
import { storeEventsTelemetry } from '../../../src/telemetry/store-events.js';
import { startRedis, unlessHung, waitFor } from '../../helpers/redis.js';
import { OpFactory, uniquePrefix } from '../../helpers/store-contract.js';
import { redisStoreFor } from '../store/redis-helper.js';

// The two store-failure counters, on a real Redis store: ratelimit_store_errors_total
// counts script calls that failed, ratelimit_store_failure_decisions_total the
// decisions the failure policy took part in. While a breaker is open the policy
// decides with no call at all, so the two part ways.

const HANG_GUARD_MS = 5_000;

async function value(metrics: Metrics, name: string): Promise<number> {
  const line = (await metrics.localText()).split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
}

t.test('a hung Redis: three failed calls are three store errors; the refusal with the breaker open is a policy decision without one', async (t) => {
  const node = await startRedis({ t });
  const metrics = new Metrics({ processMetrics: false });
  const { store } = redisStoreFor(t, {
    redis: node.url,
    breaker: { failureThreshold: 3 },
    events: storeEventsTelemetry(metrics, createLogger('silent'), 'deny'),
  });
  await waitFor('redis store ready', () => store.health().ready);
  const op = new OpFactory(uniquePrefix('store-events')).op([['api_key', 'k']], { requestsPerUnit: 100, unit: 'hour' });
  await store.apply([op]);
  t.equal(await value(metrics, 'ratelimit_store_errors_total'), 0, 'a call Redis answered is no error');
  t.equal(await value(metrics, 'ratelimit_store_failure_decisions_total'), 0);

  // SIGSTOP: Redis answers only after SIGCONT, so each call ends at its deadline.
  await node.kill('SIGSTOP');
  t.teardown(() => node.kill('SIGCONT'));
  for (let i = 0; i < 3; i++) {
    await t.rejects(unlessHung(Promise.resolve(store.apply([op])), 'a call to the hung Redis', HANG_GUARD_MS), StoreUnavailableError);
  }
  t.match(store.health(), { ready: false }, 'the breaker is open');
  await t.rejects(unlessHung(Promise.resolve(store.apply([op])), 'a refusal', HANG_GUARD_MS), /circuit open/);

  t.equal(await value(metrics, 'ratelimit_store_errors_total'), 3, 'the three calls that missed their deadline');
  t.equal(await value(metrics, 'ratelimit_redis_timeouts_total'), 3);
  t.equal(await value(metrics, 'ratelimit_store_failure_decisions_total'), 4, 'the three, and the refusal sent no call');
  await node.kill('SIGCONT');
});
