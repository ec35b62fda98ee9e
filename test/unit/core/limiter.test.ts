import t from 'tap';
import { configFromYaml, d } from '../../helpers/config.js';
import { Limiter, UNLIMITED_REMAINING } from '../../../src/core/limiter.js';
import type { Store, StoreDecision } from '../../../src/core/store.js';
import type { BucketOp, Decision, Descriptor } from '../../../src/core/types.js';
import { MemoryStore } from '../../../src/store/memory-store.js';

const CONFIG = `
domain: shop
descriptors:
  - key: api_key
    rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: api_key
    value: gold
    rate_limit: { unit: minute, requests_per_unit: 100, name: gold, replaces: [ { name: per_ip } ] }
  - key: remote_address
    rate_limit: { unit: minute, requests_per_unit: 3, name: per_ip }
  - key: path
    value: /rating
    descriptors:
      - key: api_key
        rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: path
    value: /beta
    descriptors:
      - key: api_key
        shadow_mode: true
        rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: health
    rate_limit: { unlimited: true }
  - key: blocked
    rate_limit: { unit: second, requests_per_unit: 0 }
`;

const config = configFromYaml(t, CONFIG);


/** The memory store, counting the calls that reach it. */
class CountingStore extends MemoryStore {
  calls = 0;
  override apply(ops: readonly BucketOp[]): StoreDecision {
    this.calls++;
    return super.apply(ops);
  }
}

function limiter(options: { store?: Store; shadow?: boolean } = {}) {
  let now = 1_700_000_000_000_000;
  const memory = new CountingStore({ maxKeys: 1_000, clock: () => now, sweep: false });
  const instance = new Limiter({
    store: options.store ?? memory,
    shadow: options.shadow ?? false,
    keyPrefix: 'rl:',
    digest: (text) => `digest-of-${text.length}`,
  });
  return {
    memory,
    decide: (descriptors: Descriptor[], hitsAddend?: number, domain = 'shop'): Promise<Decision> =>
      Promise.resolve(instance.decide(config, hitsAddend === undefined ? { domain, descriptors } : { domain, descriptors, hitsAddend })),
    advance: (us: number) => { now += us; },
  };
}

async function allowedCount(run: () => Promise<Decision>, attempts: number): Promise<number> {
  let allowed = 0;
  for (let i = 0; i < attempts; i++) if ((await run()).overallCode === 'OK') allowed++;
  return allowed;
}

t.test('an unknown domain is OK with an empty status per descriptor', async (t) => {
  const decision = await limiter().decide([d('api_key', 'a'), d('x', 'y')], undefined, 'nope');
  t.equal(decision.overallCode, 'OK');
  t.match(decision.statuses, [{ code: 'OK', limit: null }, { code: 'OK', limit: null }]);
});

t.test('statuses come in request order with limit, remaining and reset', async (t) => {
  const decision = await limiter().decide([d('nothing', 'here'), d('api_key', 'k1'), d('health', 'x')]);
  t.match(decision.statuses, [
    { code: 'OK', limit: null },
    { code: 'OK', limit: { requestsPerUnit: 5, unit: 'minute' }, limitRemaining: 4, durationUntilResetMs: 12_000 },
    { code: 'OK', limit: null, limitRemaining: UNLIMITED_REMAINING },
  ]);
});

t.test('nested and flat limits: a denial takes nothing from the other limit', async (t) => {
  const l = limiter();
  const both = () => l.decide([d('path', '/rating', 'api_key', 'k1'), d('api_key', 'k1')]);
  t.equal(await allowedCount(both, 5), 2, 'the nested 2/minute limit decides');
  // The flat 5/minute limit gave only the 2 allowed requests.
  t.match((await l.decide([{ ...d('api_key', 'k1'), hitsAddend: 0 }])).statuses, [{ limitRemaining: 3 }]);
  const denied = await both();
  t.equal(denied.overallCode, 'OVER_LIMIT');
  t.match(denied.statuses, [{ code: 'OVER_LIMIT', retryAfterS: 30 }, { code: 'OK', limitRemaining: 3 }]);
});

t.test('replaces: a matched limit drops the limit it names', async (t) => {
  const l = limiter();
  const gold = () => l.decide([d('api_key', 'gold'), d('remote_address', '10.0.0.1')]);
  t.equal(await allowedCount(gold, 10), 10, 'per_ip (3/minute) does not apply next to gold');
  t.match((await gold()).statuses[1], { code: 'OK', limit: null });
  const plain = () => l.decide([d('api_key', 'silver'), d('remote_address', '10.0.0.2')]);
  t.equal(await allowedCount(plain, 10), 3);
});

t.test('hits_addend: per-descriptor wins, 0 there only checks, request-level 0 means 1', async (t) => {
  const l = limiter();
  t.match((await l.decide([d('api_key', 'h')], 0)).statuses, [{ limitRemaining: 4 }], 'request-level 0 = 1');
  t.match((await l.decide([d('api_key', 'h')], 2)).statuses, [{ limitRemaining: 2 }]);
  t.match((await l.decide([{ ...d('api_key', 'h'), hitsAddend: 0 }], 3)).statuses, [{ code: 'OK', limitRemaining: 2 }]);
  t.match((await l.decide([{ ...d('api_key', 'h'), hitsAddend: 3 }], 1)).statuses, [{ code: 'OVER_LIMIT', limitRemaining: 2 }]);
});

t.test('a descriptor limit override replaces the configured limit', async (t) => {
  const l = limiter();
  const overridden = () => l.decide([{ ...d('api_key', 'o'), limitOverride: { requestsPerUnit: 2, unit: 'hour' } }]);
  t.equal(await allowedCount(overridden, 4), 2);
  t.match((await overridden()).statuses, [{ limit: { requestsPerUnit: 2, unit: 'hour' } }]);
});

t.test('shadow_mode limits count but never deny; global --shadow does it for all', async (t) => {
  const l = limiter();
  const beta = () => l.decide([d('path', '/beta', 'api_key', 'b')]);
  t.equal(await allowedCount(beta, 3), 3);
  const last = await beta();
  t.equal(last.shadowOverLimit, true);
  t.match(last.statuses, [{ code: 'OK', shadowOverLimit: true }]);
  const global = limiter({ shadow: true });
  t.equal(await allowedCount(() => global.decide([d('api_key', 'g')]), 8), 8);
});

t.test('requests_per_unit 0 is always over', async (t) => {
  t.equal((await limiter().decide([d('blocked', 'x')])).overallCode, 'OVER_LIMIT');
});

t.test('a decision made partly by the failure policy says which policy', async (t) => {
  // Our own Store (not Redis): the Redis store applies the policy itself; the limiter reports it.
  const store: Store = {
    kind: 'redis',
    apply: (ops) => Promise.resolve({
      outcomes: ops.map(() => ({ allowed: true, remaining: 1, resetUs: 0, retryAfterUs: 0 })),
      fallback: 'local',
    }),
    health: () => ({ ready: false, detail: 'down' }),
    close: () => Promise.resolve(),
  };
  t.match(await limiter({ store }).decide([d('api_key', 'x')]), { overallCode: 'OK', storeFailure: 'local' });
  t.match(await limiter().decide([d('api_key', 'x')]), { overallCode: 'OK', storeFailure: undefined });
});
