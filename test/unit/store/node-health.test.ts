// Node health without Redis: what opens a node's breaker, how it is probed back, and how few events it tells.
import t from 'tap';
import { StoreCallError } from '../../../src/errors.js';
import { NodeHealth } from '../../../src/store/redis/node-health.js';
import { waitFor } from '../../helpers/wait.js';

const HANG_GUARD_MS = 10_000;

function harness(probe: () => Promise<unknown>, masters: () => readonly string[] = () => []) {
  let now = 0;
  const events: string[] = [];
  const health = new NodeHealth({
    probe: () => probe(),
    masters,
    events: {
      state: (node, state, _previous, reason) => events.push(`${state} ${node}: ${reason}`),
      stillDown: (node, reason) => events.push(`still down ${node}: ${reason}`),
      misconfigured: (node, misconfiguration) => events.push(`misconfigured ${node}: ${misconfiguration?.cause ?? 'no more'}`),
    },
    failureThreshold: 3,
    nowMs: () => now,
  });
  t.teardown(() => health.close());
  return { health, events, advance: (ms: number) => { now += ms; } };
}

const closed = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
const slow = new StoreCallError('redis: script call to a not answered within its 50 ms deadline', { timedOut: true });

t.test('a refused connect opens at once; deadline misses only after the threshold', async (t) => {
  const { health, events } = harness(() => new Promise(() => {}));
  health.failure('a', slow);
  health.failure('a', slow);
  t.equal(health.tryAcquire('a'), true, 'two misses: still closed');
  health.failure('a', slow);
  t.equal(health.tryAcquire('a'), false, 'the third opens it');
  health.failure('b', closed);
  t.equal(health.tryAcquire('b'), false, 'one refused connect opens it');
  t.same(health.unavailable(), ['a', 'b']);
  t.same(events, ['open a: redis: script call to a not answered within its 50 ms deadline', 'open b: redis unreachable (connection refused)']);
});

t.test('a node that is down is probed in the background until it answers: one line down, one line back', async (t) => {
  let probes = 0;
  let up = false;
  const { health, events } = harness(async () => {
    probes++;
    if (!up) throw closed;
  });
  health.failure('a', closed);
  await waitFor('three failed probes', () => probes >= 3, HANG_GUARD_MS, 10);
  t.same(events, ['open a: redis unreachable (connection refused)'], 'failed probes tell nothing');
  up = true;
  await waitFor('closed by a probe', () => health.tryAcquire('a'), HANG_GUARD_MS, 10);
  t.same(events, ['open a: redis unreachable (connection refused)', 'closed a: answering again']);
});

t.test('staying down: a reminder at most once a minute', async (t) => {
  let probes = 0;
  const { health, events, advance } = harness(async () => {
    probes++;
    throw closed;
  });
  health.failure('a', closed);
  await waitFor('a failed probe', () => probes >= 1, HANG_GUARD_MS, 10);
  advance(59_000);
  await waitFor('another', () => probes >= 2, HANG_GUARD_MS, 10);
  t.same(events.filter((e) => e.startsWith('still')), [], 'not before a minute');
  advance(2_000);
  await waitFor('a third', () => probes >= 3, HANG_GUARD_MS, 10);
  await waitFor('a fourth', () => probes >= 4, HANG_GUARD_MS, 10);
  t.same(events.filter((e) => e.startsWith('still')), ['still down a: redis unreachable (connection refused)'], 'one reminder after a minute');
});

t.test('a misconfiguration opens at once, is told once, and clears with the first good probe', async (t) => {
  let fixed = false;
  const noperm = new Error("NOPERM this user has no permissions to run the 'evalsha' command");
  const { health, events } = harness(async () => {
    if (!fixed) throw noperm;
  });
  health.failure('a', noperm);
  health.failure('a', noperm);
  t.equal(health.tryAcquire('a'), false);
  t.equal(health.why('a').misconfiguration?.cause, 'acl_scripting');
  t.equal(health.why('unknown').misconfiguration?.cause, 'acl_scripting', 'keys of no known node share it');
  t.same(health.misconfigured().map((m) => m.node), ['a']);
  fixed = true;
  await waitFor('fixed', () => health.tryAcquire('a'), HANG_GUARD_MS, 10);
  t.same(events, ['misconfigured a: acl_scripting', 'open a: the redis ACL user may not run scripts: grant it EVALSHA and EVAL (+evalsha +eval, or +@scripting)',
    'misconfigured a: no more', 'closed a: answering again']);
  t.same(health.misconfigured(), []);
});

t.test('a failover: the replaced master is forgotten, and a late failure of it does not report it down again', async (t) => {
  let masters = ['a', 'b'];
  const { health, events } = harness(() => new Promise(() => {}), () => masters);
  health.failure('a', closed);
  t.same(health.unavailable(), ['a'], 'the dead master is down');
  masters = ['c', 'b']; // its replica c took its slots
  health.retain(new Set(masters));
  t.same(health.unavailable(), [], 'forgotten once it serves no slot');
  health.failure('a', closed); // a call sent to it before the new slot map, failing after it
  health.failure('a', slow);
  t.same(health.unavailable(), [], 'still forgotten: the server stays ready');
  t.equal(health.tryAcquire('a'), true);
  health.failure('c', closed);
  t.same(health.unavailable(), ['c'], 'a current master is still reported down');
  t.same(events, ['open a: redis unreachable (connection refused)', 'closed a: no longer a master', 'open c: redis unreachable (connection refused)']);
});

t.test('before the first slot map (no masters known) any node can be reported down', async (t) => {
  const { health } = harness(() => new Promise(() => {}));
  health.failure('a', closed);
  t.same(health.unavailable(), ['a']);
});
