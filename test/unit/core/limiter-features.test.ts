// SPEC §10 through the limiter and the memory store, with a fake clock:
// several limits per descriptor, quota_mode, share_threshold, unit_multiplier,
// sliding windows, and truthful answers for costs that can never fit.
import t from 'tap';
import { configFromYaml, d } from '../../helpers/config.js';
import { Limiter } from '../../../src/core/limiter.js';
import type { BucketOp, Decision, Descriptor } from '../../../src/core/types.js';
import type { StoreDecision } from '../../../src/core/store.js';
import { MemoryStore } from '../../../src/store/memory-store.js';

const CONFIG = `
domain: shop
descriptors:
  - key: api_key
    rate_limit: { unit: second, requests_per_unit: 20, burst: 40, name: burst }
    rate_limits:
      - { unit: day, requests_per_unit: 100, name: daily }
  - key: tenant
    rate_limits:
      - { unit: minute, requests_per_unit: 3, name: tenant-minute }
      - { unit: hour, requests_per_unit: 5, name: tenant-hour }
  - key: vip
    rate_limit: { unit: second, requests_per_unit: 1000, replaces: [ { name: daily } ] }
  - key: plan
    value: free
    quota_mode: true
    rate_limit: { unit: hour, requests_per_unit: 2 }
  - key: plan
    value: team
    quota_mode: true
    rate_limit: { unit: hour, requests_per_unit: 3 }
  - key: plan
    value: combo
    quota_mode: true
    rate_limits:
      - { unit: hour, requests_per_unit: 10 }
      - { unit: minute, requests_per_unit: 1 }
  - key: remote_address
    rate_limit: { unit: hour, requests_per_unit: 1 }
  - key: path
    value: /files/*
    share_threshold: true
    rate_limit: { unit: hour, requests_per_unit: 3 }
  - key: path
    value: /own/*
    rate_limit: { unit: hour, requests_per_unit: 3 }
  - key: folder
    value: team-*
    share_threshold: true
    descriptors:
      - key: user
        rate_limit: { unit: hour, requests_per_unit: 2 }
  - key: report
    rate_limit: { unit: minute, unit_multiplier: 5, requests_per_unit: 100 }
  - key: window
    rate_limit: { unit: minute, requests_per_unit: 10, algorithm: sliding_window }
  - key: export
    rate_limit: { unit: hour, requests_per_unit: 5, burst: 10 }
  - key: closed
    rate_limit: { unit: minute, requests_per_unit: 0 }
`;

const config = configFromYaml(t, CONFIG);

const check = (descriptor: Descriptor): Descriptor => ({ ...descriptor, hitsAddend: 0 });

class RecordingStore extends MemoryStore {
  batches: BucketOp[][] = [];
  override apply(ops: readonly BucketOp[]): StoreDecision {
    this.batches.push([...ops]);
    return super.apply(ops);
  }
}

/** 2023-11-14T22:00:00Z: a whole hour, so windows and hours start here. */
const T0 = 1_699_999_200_000_000;

function limiter(options: { quotaMode?: boolean } = {}) {
  let now = T0;
  const store = new RecordingStore({ maxKeys: 1_000_000, clock: () => now, sweep: false });
  const instance = new Limiter({
    store,
    shadow: false,
    keyPrefix: 'rl:',
    digest: (text) => `digest-of-${text.length}`,
    ...(options.quotaMode === undefined ? {} : { quotaMode: options.quotaMode }),
  });
  return {
    store,
    decide: (descriptors: Descriptor[], hitsAddend?: number): Promise<Decision> =>
      Promise.resolve(instance.decide(config, hitsAddend === undefined ? { domain: 'shop', descriptors } : { domain: 'shop', descriptors, hitsAddend })),
    advance: (us: number) => { now += us; },
  };
}

t.test('rate_limits: every listed limit applies, each in its own bucket', async (t) => {
  const l = limiter();
  const first = await l.decide([d('api_key', 'k1')]);
  t.equal(first.overallCode, 'OK');
  t.same(l.store.batches[0]!.map((op) => op.key), ['rl:{5648e1b1}4:shop:tb20sb40:7:api_key2:k1', 'rl:{5648e1b1}4:shop:tb100db100:7:api_key2:k1'],
    'one op per limit, keys differ by the limit');
  t.match(first.statuses[0], { code: 'OK', limit: { name: 'burst', burst: 40 }, limitRemaining: 39 },
    'the descriptor reports the limit with the fewest tokens left (burst 39 < daily 99)');
  t.match(first.statuses[0]!.limitStatuses, [
    { limit: { name: 'burst' }, limitRemaining: 39, policy: { policy: '"burst";q=40;w=2' } },
    { limit: { name: 'daily' }, limitRemaining: 99, policy: { policy: '"daily";q=100;w=86400' } },
  ]);
  // Burst 40 at once, then refills 20/s; the daily 100 ends it.
  let allowed = 1;
  for (let i = 0; i < 300; i++) {
    if ((await l.decide([d('api_key', 'k1')])).overallCode === 'OK') allowed++;
    l.advance(50_000);
  }
  t.equal(allowed, 100, 'the sustained limit (100/day) caps what the burst limit would allow');
  const denied = await l.decide([d('api_key', 'k1')]);
  t.match(denied.statuses[0], { code: 'OVER_LIMIT', limit: { name: 'daily' }, limitRemaining: 0 }, 'the denied limit is reported');
});

t.test('rate_limits: a denial by one limit takes from none of them', async (t) => {
  const l = limiter();
  t.equal((await l.decide([d('tenant', 'a')], 3)).overallCode, 'OK', '3 fit both');
  const denied = await l.decide([d('tenant', 'a')], 1);
  t.match(denied.statuses[0], { code: 'OVER_LIMIT', limit: { name: 'tenant-minute' }, retryAfterS: 20 });
  t.match(denied.statuses[0]!.limitStatuses, [{ code: 'OVER_LIMIT' }, { code: 'OK', limitRemaining: 2 }]);
  l.advance(60_000_000);
  t.match((await l.decide([check(d('tenant', 'a'))])).statuses[0]!.limitStatuses,
    [{ limitRemaining: 3 }, { limitRemaining: 2 }], 'the hour limit still has 2: the denial took nothing from it');
  t.equal((await l.decide([d('tenant', 'a')], 2)).overallCode, 'OK');
  const bothOver = await l.decide([d('tenant', 'a')], 2);
  t.match(bothOver.statuses[0]!.limitStatuses, [{ code: 'OVER_LIMIT', retryAfterS: 20 }, { code: 'OVER_LIMIT', retryAfterS: 1380 }]);
  t.match(bothOver.statuses[0], { code: 'OVER_LIMIT', limit: { name: 'tenant-hour' }, retryAfterS: 1380 },
    'when both are over, the one with the longest wait is reported (2 tokens at 5/hour, 60 s refilled)');
});

t.test('replaces works with names on any of the listed limits', async (t) => {
  const l = limiter();
  const both = await l.decide([d('api_key', 'k2'), d('vip', 'v')]);
  t.same(l.store.batches[0]!.map((op) => op.limit.fingerprint), ['tb20sb40', 'tb1000sb1000'], 'daily is dropped, burst stays');
  t.equal(both.statuses[0]!.limitStatuses, undefined, 'a single limit left: no per-limit list');
  t.match(both.statuses[0], { limit: { name: 'burst' } });
});

t.test('quota_mode: quota descriptors never deny on their own; all of them over denies', async (t) => {
  const l = limiter();
  const request = () => l.decide([d('plan', 'free'), d('plan', 'team')]);
  for (let i = 0; i < 2; i++) t.equal((await request()).overallCode, 'OK');
  const freeOver = await request();
  t.equal(freeOver.overallCode, 'OK', 'free is over, team is not: OK');
  t.match(freeOver.statuses, [{ code: 'OVER_LIMIT', quota: true }, { code: 'OK', quota: true, limitRemaining: 0 }]);
  const allOver = await request();
  t.equal(allOver.overallCode, 'OVER_LIMIT', 'every quota descriptor over: OVER_LIMIT');
  t.match(allOver.statuses, [{ code: 'OVER_LIMIT' }, { code: 'OVER_LIMIT' }]);
  const withOrdinary = await l.decide([d('plan', 'free'), d('remote_address', '192.0.2.1')]);
  t.equal(withOrdinary.overallCode, 'OVER_LIMIT', 'a lone quota descriptor that is over is "every" quota descriptor');
  t.match((await l.decide([check(d('remote_address', '192.0.2.1'))])).statuses, [{ limitRemaining: 1 }], 'and the denial took nothing');
});

t.test('quota_mode: what is taken when the request is allowed and when it is denied', async (t) => {
  const l = limiter();
  t.equal((await l.decide([d('plan', 'free')], 2)).overallCode, 'OK');
  // free (0 left) is over; team allows; the ordinary per-address limit allows.
  const allowed = await l.decide([d('plan', 'free'), d('plan', 'team'), d('remote_address', '192.0.2.2')]);
  t.equal(allowed.overallCode, 'OK');
  t.match(allowed.statuses, [{ code: 'OVER_LIMIT', limitRemaining: 0 }, { code: 'OK', limitRemaining: 2 }, { code: 'OK', limitRemaining: 0 }],
    'allowed: the passing quota and ordinary limits took, the over quota one had nothing to give');
  // The ordinary limit is now over: the request is denied and takes nothing from the quota limit.
  const denied = await l.decide([d('plan', 'team'), d('remote_address', '192.0.2.2')]);
  t.equal(denied.overallCode, 'OVER_LIMIT');
  t.match(denied.statuses, [{ code: 'OK', limitRemaining: 2 }, { code: 'OVER_LIMIT' }]);
  t.match((await l.decide([check(d('plan', 'team'))])).statuses, [{ limitRemaining: 2 }], 'team still has 2');
});

t.test('quota_mode: a quota descriptor over on one of its limits takes from none of them', async (t) => {
  const l = limiter();
  t.equal((await l.decide([d('plan', 'combo'), d('plan', 'team')])).overallCode, 'OK');
  const request = await l.decide([d('plan', 'combo'), d('plan', 'team')]);
  t.equal(request.overallCode, 'OK', 'team passes');
  t.match(request.statuses[0], { code: 'OVER_LIMIT', quota: true, limitStatuses: [{ code: 'OK', limitRemaining: 9 }, { code: 'OVER_LIMIT' }] },
    'combo is over (its per-minute limit), so its hour limit reports its untaken 9');
  t.match((await l.decide([check(d('plan', 'combo'))])).statuses[0]!.limitStatuses, [{ limitRemaining: 9 }, { limitRemaining: 0 }]);
});

t.test('share_threshold: every value matching the wildcard shares one bucket', async (t) => {
  const l = limiter();
  for (const file of ['a.pdf', 'b.csv', 'c.txt']) t.equal((await l.decide([d('path', `/files/${file}`)])).overallCode, 'OK');
  t.equal((await l.decide([d('path', '/files/d.png')])).overallCode, 'OVER_LIMIT', 'the fourth file shares the bucket of three');
  t.equal(new Set(l.store.batches.map((ops) => ops[0]!.key)).size, 1, 'one key for all of them');
  t.match(l.store.batches[0]![0]!.key, /8:\/files\/\*$/, 'the key carries the wildcard, not the value');
  for (const file of ['a.pdf', 'b.csv', 'c.txt', 'd.png']) {
    t.equal((await l.decide([d('path', `/own/${file}`)])).overallCode, 'OK', 'without share_threshold each value has its own bucket');
  }
});

t.test('share_threshold on an ancestor wildcard: nested limits share across its values', async (t) => {
  const l = limiter();
  t.equal((await l.decide([d('folder', 'team-a', 'user', 'u1')])).overallCode, 'OK');
  t.equal((await l.decide([d('folder', 'team-b', 'user', 'u1')])).overallCode, 'OK');
  t.equal((await l.decide([d('folder', 'team-c', 'user', 'u1')])).overallCode, 'OVER_LIMIT', 'u1 shares one bucket over team-*');
  t.equal((await l.decide([d('folder', 'team-c', 'user', 'u2')])).overallCode, 'OK', 'another user has another bucket');
});

t.test('unit_multiplier: 100 per 5 minutes', async (t) => {
  const l = limiter();
  const decision = await l.decide([d('report', 'r')], 100);
  t.match(decision.statuses[0], { code: 'OK', limit: { requestsPerUnit: 100, unit: 'minute', unitMultiplier: 5 }, limitRemaining: 0 });
  t.equal(decision.statuses[0]!.durationUntilResetMs, 5 * 60_000, 'refills over the whole period');
  t.match(l.store.batches[0]![0]!.key, /:tb100\/5mb100:/);
  l.advance(3_000_000);
  t.equal((await l.decide([d('report', 'r')])).overallCode, 'OK', 'one token per 3 s');
});

t.test('sliding_window through the limiter: the previous window weighs', async (t) => {
  const l = limiter();
  l.advance(30_000_000);
  t.equal((await l.decide([d('window', 'w')], 10)).overallCode, 'OK');
  l.advance(36_000_000); // 6 s into the next minute: the 10 weigh 9
  const decision = await l.decide([d('window', 'w')], 2);
  t.match(decision.statuses[0], { code: 'OVER_LIMIT', retryAfterS: 6, limitRemaining: 1 });
  t.equal((await l.decide([d('window', 'w')], 1)).overallCode, 'OK');
});

t.test('a cost that can never fit is denied as unsatisfiable, told to wait a whole period, and takes nothing', async (t) => {
  const l = limiter();
  const denied = await l.decide([d('export', 'e')], 11);
  t.match(denied.statuses[0], { code: 'OVER_LIMIT', unsatisfiable: true, retryAfterS: 3600, limitRemaining: 10 },
    'regression: a full bucket told cost 11 > burst 10 to retry after 1 s');
  const fits = await l.decide([d('export', 'e')], 10);
  t.match(fits.statuses[0], { code: 'OK', limitRemaining: 0 });
  const later = await l.decide([d('export', 'e')], 1);
  t.match(later.statuses[0], { code: 'OVER_LIMIT', retryAfterS: 720 });
  t.equal(later.statuses[0]!.unsatisfiable, undefined, 'an ordinary denial is not flagged');
  t.match((await l.decide([d('closed', 'c')])).statuses[0], { code: 'OVER_LIMIT', unsatisfiable: true, retryAfterS: 60 },
    'requests_per_unit 0 is never satisfiable either');
});
