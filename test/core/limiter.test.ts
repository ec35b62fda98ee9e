import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig } from '../../src/config/load.js';
import { Limiter, UNLIMITED_REMAINING, type StoreFailurePolicy } from '../../src/core/limiter.js';
import { OverLimitCache } from '../../src/core/over-limit-cache.js';
import type { BucketOp, BucketOutcome, Decision, Descriptor } from '../../src/core/types.js';
import { StoreCallError, StoreUnavailableError } from '../../src/errors.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { Store } from '../../src/store/store.js';

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

const dir = mkdtempSync(join(tmpdir(), 'rl-limiter-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'shop.yaml'), CONFIG);
const config = loadConfig(join(dir, 'shop.yaml'));

function d(...pairs: string[]): Descriptor {
  const entries = [];
  for (let i = 0; i < pairs.length; i += 2) entries.push({ key: pairs[i]!, value: pairs[i + 1]! });
  return { entries };
}

/** The memory store, counting the calls that reach it. */
class CountingStore extends MemoryStore {
  calls = 0;
  override apply(ops: readonly BucketOp[]): Promise<BucketOutcome[]> {
    this.calls++;
    return super.apply(ops);
  }
}

function limiter(options: { store?: Store; policy?: StoreFailurePolicy; divisor?: number; shadow?: boolean; cache?: OverLimitCache } = {}) {
  let now = 1_700_000_000_000_000;
  const memory = new CountingStore({ clock: () => now, sweep: false });
  const fallback = new MemoryStore({ clock: () => now, sweep: false });
  const instance = new Limiter({
    store: options.store ?? memory,
    fallbackStore: fallback,
    onStoreFailure: options.policy ?? 'local',
    fallbackDivisor: options.divisor ?? 1,
    shadow: options.shadow ?? false,
    keyPrefix: 'rl:',
    digest: (text) => `digest-of-${text.length}`,
    overLimitCache: options.cache,
    clockUs: () => now,
  });
  return {
    memory,
    decide: (descriptors: Descriptor[], hitsAddend?: number, domain = 'shop'): Promise<Decision> =>
      instance.decide(config, hitsAddend === undefined ? { domain, descriptors } : { domain, descriptors, hitsAddend }),
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

class FailingStore implements Store {
  readonly kind = 'redis' as const;
  calls = 0;
  apply(_ops: readonly BucketOp[]): Promise<BucketOutcome[]> {
    this.calls++;
    return Promise.reject(new StoreCallError('connection refused'));
  }
  health() { return { ready: false, fallbackActive: true, detail: 'down' }; }
  close() { return Promise.resolve(); }
}

t.test('store failure under allow: fail open, flagged', async (t) => {
  const l = limiter({ store: new FailingStore(), policy: 'allow' });
  const decision = await l.decide([d('blocked', 'x')]);
  t.match(decision, { overallCode: 'OK', storeFailure: 'allow' });
});

t.test('store failure under deny: StoreUnavailableError', async (t) => {
  const l = limiter({ store: new FailingStore(), policy: 'deny' });
  await t.rejects(l.decide([d('api_key', 'x')]), StoreUnavailableError);
});

t.test('store failure under local: in-process buckets, limits divided by --fallback-divisor', async (t) => {
  const l = limiter({ store: new FailingStore(), policy: 'local', divisor: 2 });
  const run = () => l.decide([d('api_key', 'local')]);
  t.equal(await allowedCount(run, 5), 2, '5/minute divided by 2 replicas = 2');
  t.equal((await run()).storeFailure, 'local');
});

t.test('over-limit cache: a key known to be empty is denied without a store call until a token could exist', async (t) => {
  const cache = new OverLimitCache(100);
  const l = limiter({ cache });
  const hit = () => l.decide([d('api_key', 'hot')]);
  t.equal(await allowedCount(hit, 5), 5);
  const first = await hit();
  t.equal(first.overallCode, 'OVER_LIMIT', 'the store said no: now remembered');
  const calls = l.memory.calls;
  const cached = await hit();
  t.equal(l.memory.calls, calls, 'answered without the store');
  t.match(cached.statuses, [{ code: 'OVER_LIMIT', limitRemaining: 0, retryAfterS: 12, durationUntilResetMs: 60_000 }]);
  t.match((await l.decide([{ ...d('api_key', 'hot'), hitsAddend: 0 }])).statuses, [{ code: 'OK' }], 'check-only still asks the store');
  l.advance(11_999_999);
  t.equal((await hit()).overallCode, 'OVER_LIMIT');
  l.advance(1);
  t.equal((await hit()).overallCode, 'OK', 'exactly when the token exists, the store is asked and allows');
  t.equal(cache.size, 0, 'the expired entry was dropped');
});

t.test('over-limit cache: a request with another limit still asks the store, so every status is true', async (t) => {
  const l = limiter({ cache: new OverLimitCache(100) });
  for (let i = 0; i < 3; i++) await l.decide([d('remote_address', '192.0.2.1')]);
  t.equal((await l.decide([d('remote_address', '192.0.2.1')])).overallCode, 'OVER_LIMIT');
  const calls = l.memory.calls;
  const both = await l.decide([d('api_key', 'other'), d('remote_address', '192.0.2.1')]);
  t.equal(l.memory.calls, calls + 1, 'not answered from the cache: api_key was not known to be empty');
  t.match(both.statuses, [{ code: 'OK', limitRemaining: 5 }, { code: 'OVER_LIMIT' }], 'the OK status reports its real remaining');
  t.match((await l.decide([{ ...d('api_key', 'other'), hitsAddend: 0 }])).statuses, [{ limitRemaining: 5 }], 'the denial took nothing');
  t.equal(l.memory.calls, calls + 2, 'check-only requests always ask the store');
  const bothEmpty = await l.decide([d('remote_address', '192.0.2.1'), d('remote_address', '192.0.2.1')]);
  t.equal(l.memory.calls, calls + 2, 'every op known to be empty: answered from the cache');
  t.match(bothEmpty.statuses, [{ code: 'OVER_LIMIT', limitRemaining: 0 }, { code: 'OVER_LIMIT', limitRemaining: 0 }]);
});

t.test('over-limit cache stays bounded', async (t) => {
  const cache = new OverLimitCache(10);
  for (let i = 0; i < 100; i++) cache.remember(`k${i}`, { untilUs: 1e18, fullAtUs: 1e18 });
  t.equal(cache.size, 10);
  t.ok(cache.emptyUntil('k99', 0));
  t.equal(cache.emptyUntil('k0', 0), undefined);
});
