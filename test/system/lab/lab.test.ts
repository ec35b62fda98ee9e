/**
 * The three-region lab itself, with nothing new from the product: three Redis
 * deployments (a, b single; c a 3-master cluster) and the delay proxies, no
 * sidecars. A client in region a reaches c's cluster through a's proxies only
 * (slot discovery and MOVED included, via the NAT map the --regions address
 * carries), cut/heal work on the cluster path, and stop frees everything.
 */
import { createServer } from 'node:net';
import { Redis, type Cluster } from 'ioredis';
import tap from 'tap';
import { clusterSlot } from '../../../src/store/redis/cluster-slot.js';
import { waitFor } from '../../helpers/wait.js';
import { formatRegionAddress, parseRegionAddress, parseRegions, startLab, type Lab } from './regions.js';

tap.setTimeout(60_000);

const DELAY_MS = 60;

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

/** The promise's outcome, or 'pending' if it has none after `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  promise.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'pending'>((resolve) => { timer = setTimeout(() => resolve('pending'), ms); });
  try {
    return await Promise.race([promise, pending]);
  } finally {
    clearTimeout(timer);
  }
}

/** Retries `work` until it succeeds (each try bounded by the client's command timeout); returns ms until it did. */
async function untilAnswers(what: string, work: () => Promise<unknown>, timeoutMs = 10_000): Promise<number> {
  const started = performance.now();
  await waitFor(what, async () => {
    await work();
    return true;
  }, timeoutMs, 50);
  return performance.now() - started;
}

/** Master port for every slot range of c, read directly from a node (as an operator would). */
async function slotOwners(lab: Lab): Promise<{ from: number; to: number; port: number }[]> {
  const direct = new Redis({ host: '127.0.0.1', port: lab.redis('c').nodes[0]!.port, lazyConnect: true, commandTimeout: 2_000 });
  direct.on('error', () => undefined);
  try {
    await direct.connect();
    const slots = await direct.call('CLUSTER', 'SLOTS') as [number, number, [string, number, string]][];
    return slots.map(([from, to, [, port]]) => ({ from, to, port }));
  } finally {
    direct.disconnect();
  }
}

const portOfSlot = (owners: { from: number; to: number; port: number }[], slot: number): number => (
  owners.find((o) => slot >= o.from && slot <= o.to)?.port ?? -1
);

const started = performance.now();
const lab = await startLab({ t: tap, delayMs: DELAY_MS, sidecarsPerRegion: 0 });
tap.comment(`lab up in ${(performance.now() - started).toFixed(0)} ms`);

tap.test('the topology: one Redis per region, one proxy per ordered pair and node', async (t) => {
  t.same(lab.regions, ['a', 'b', 'c'], 'three regions');
  t.equal(lab.redis('a').kind, 'single', 'a: a single redis-server');
  t.equal(lab.redis('b').kind, 'single', 'b: a single redis-server');
  t.equal(lab.redis('c').kind, 'cluster', 'c: a cluster');
  t.equal(lab.redis('c').nodes.length, 3, '3 masters, no replica');
  t.equal(lab.link('a', 'c').proxies.length, 3, 'a>c: one proxy per cluster node');
  t.equal(lab.link('c', 'a').proxies.length, 1, 'c>a: one proxy');
  t.throws(() => lab.link('a', 'a'), /no link a>a/, 'no link to itself');
  t.same(lab.sidecars(), [], 'no sidecars asked for');

  const fromA = parseRegions(lab.regionsArg('a'));
  t.same([...fromA.keys()], ['a', 'b', 'c'], 'every region, this one included');
  t.same(fromA.get('a'), { kind: 'single', url: lab.redis('a').node!.url }, "a's own address is direct, equal to its store's");
  t.same(fromA.get('b'), { kind: 'single', url: `redis://${lab.link('a', 'b').proxies[0]!.address}` }, 'b through the a>b proxy');
  const c = fromA.get('c');
  if (c?.kind !== 'cluster') throw new Error(`c is not a cluster address: ${lab.regionsArg('a')}`);
  t.same(c.seeds.map((s) => `${s.host}:${s.port}`), lab.link('a', 'c').proxies.map((p) => p.address), 'c seeds: the a>c proxies');
  t.same(Object.keys(c.natMap).sort(), lab.redis('c').nodes.map((n) => `${n.host}:${n.port}`).sort(), 'the NAT map names every real c node');
  for (const [i, node] of lab.redis('c').nodes.entries()) {
    t.same(c.natMap[`${node.host}:${node.port}`], { host: '127.0.0.1', port: lab.link('a', 'c').proxies[i]!.port }, `node ${node.port} > its a>c proxy`);
  }
  const own = parseRegions(lab.regionsArg('c')).get('c');
  t.same(own, { kind: 'cluster', seeds: lab.redis('c').nodes.map((n) => ({ host: n.host, port: n.port })), natMap: {} }, "c's own address: direct seeds, no NAT");
  t.same(lab.redis('c').storeArgs, ['--redis-cluster', lab.redis('c').cluster!.seeds], "c's store: the same seeds");
  t.same(lab.sidecarArgs('b'), ['--config', lab.configPath, '--redis', lab.redis('b').node!.url, '--region', 'b', '--regions', lab.regionsArg('b')],
    'the serve flags of a b sidecar');
  t.comment(`--regions for a: ${lab.regionsArg('a')}`);
  t.throws(() => parseRegionAddress('redis-cluster://127.0.0.1:1?nat=127.0.0.1:2'), /expected A>B/, 'a NAT entry needs >');
  const v6 = 'redis-cluster://[::1]:7001,10.0.0.2:7002?nat=[fd00::1]:6379>[::1]:7001,10.1.0.2:6379>10.0.0.2:7002';
  t.same(parseRegionAddress(v6), {
    kind: 'cluster',
    seeds: [{ host: '::1', port: 7001 }, { host: '10.0.0.2', port: 7002 }],
    natMap: { 'fd00::1:6379': { host: '::1', port: 7001 }, '10.1.0.2:6379': { host: '10.0.0.2', port: 7002 } },
  }, 'IPv6 in brackets; NAT keys as ioredis looks nodes up (host:port, unbracketed)');
  t.equal(formatRegionAddress(parseRegionAddress(v6)), v6, 'format(parse(x)) = x');
  t.throws(() => parseRegionAddress('http://x:1'), /expected redis/, 'an unknown scheme is refused');
});

tap.test('region a reaches every master of c through its proxies only, MOVED included', async (t) => {
  const client = lab.client('a', 'c') as Cluster;
  const owners = await slotOwners(lab);
  t.equal(new Set(owners.map((o) => o.port)).size, 3, `three masters own the slots: ${JSON.stringify(owners)}`);
  // Keys on every master: 4 per master.
  const keys: string[] = [];
  for (let i = 0; keys.length < 12 && i < 10_000; i++) {
    const key = `lab-key-${i}`;
    const port = portOfSlot(owners, clusterSlot(key));
    if (keys.filter((k) => portOfSlot(owners, clusterSlot(k)) === port).length < 4) keys.push(key);
  }
  t.equal(keys.length, 12, '12 keys, 4 on each master');
  await untilAnswers('the cluster client is ready', () => client.ping());
  const before = lab.link('a', 'c').proxies.map((p) => p.stats());
  const samples: number[] = [];
  for (const key of keys) {
    const { ms } = await timed(() => client.set(key, 'v'));
    samples.push(ms);
    samples.push((await timed(() => client.get(key))).ms);
  }
  const min = Math.min(...samples);
  const median = [...samples].sort((x, y) => x - y)[Math.floor(samples.length / 2)]!;
  t.comment(`cluster command RTT a>c at ${DELAY_MS} ms one way: min ${min.toFixed(1)}, median ${median.toFixed(1)}, max ${Math.max(...samples).toFixed(1)} ms`);
  t.ok(min >= 2 * DELAY_MS, `every command took >= 2 × delay (min ${min.toFixed(1)} ms): none went direct`);
  for (const [i, proxy] of lab.link('a', 'c').proxies.entries()) {
    const grew = proxy.stats().bytesToTarget - before[i]!.bytesToTarget;
    t.ok(grew > 0 && proxy.stats().bytesToClient > before[i]!.bytesToClient, `proxy to ${proxy.target.port} carried ${grew} bytes of commands`);
  }
  let bySource = await lab.connectionsBySource('c');
  t.ok((bySource['a'] ?? 0) >= 3, `c's nodes see region a's connections: ${JSON.stringify(bySource)}`);
  t.equal(bySource['direct'] ?? 0, 0, 'and none from 127.0.0.1: no bypass');

  // Move an empty slot to another master behind the client's back (its slot
  // map refreshes once a minute): the next command meets MOVED <real address>,
  // which the NAT map turns into the a>c proxy of the new owner.
  const probe = 'lab-moved-probe';
  const slot = clusterSlot(probe);
  const topology = await lab.redis('c').cluster!.topology();
  const source = topology.find((n) => n.node.port === portOfSlot(owners, slot))!;
  const target = topology.find((n) => n.role === 'master' && n.node.port !== source.node.port)!;
  t.equal(await client.get(probe), null, 'the probe key does not exist: its slot can move without MIGRATE');
  await target.node.cli('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', source.id);
  await source.node.cli('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', target.id);
  for (const info of [target, source, ...topology.filter((n) => n !== target && n !== source)]) {
    await info.node.cli('CLUSTER', 'SETSLOT', String(slot), 'NODE', target.id);
  }
  await waitFor('every node agrees on the moved slot', async () => {
    for (const info of topology) {
      const answer = await info.node.cli('CLUSTER', 'COUNTKEYSINSLOT', String(slot));
      if (answer !== '0') return false;
    }
    return (await source.node.cli('GET', probe)).includes('MOVED');
  }, 5_000, 50);
  const targetProxy = lab.link('a', 'c').proxies.find((p) => p.target.port === target.node.port)!;
  const targetBefore = targetProxy.stats().bytesToTarget;
  const { value, ms } = await timed(() => client.set(probe, 'moved'));
  t.equal(value, 'OK', 'the command on the moved slot succeeded');
  t.ok(ms >= 4 * DELAY_MS, `two round trips (MOVED, then the new owner): ${ms.toFixed(1)} ms`);
  t.ok(targetProxy.stats().bytesToTarget > targetBefore, 'through the new owner\'s a>c proxy');
  t.equal(await target.node.cli('GET', probe), 'moved', 'the value is on the new owner');
  bySource = await lab.connectionsBySource('c');
  t.equal(bySource['direct'] ?? 0, 0, `still no direct connection after MOVED: ${JSON.stringify(bySource)}`);
});

tap.test('cut and heal on the cluster path', async (t) => {
  const aToC = lab.client('a', 'c') as Cluster;
  const bToC = lab.client('b', 'c') as Cluster;
  const cOwn = lab.client('c', 'c') as Cluster;
  const cToA = lab.client('c', 'a') as Redis;
  const aToB = lab.client('a', 'b') as Redis;
  for (const [name, client] of Object.entries({ aToC, bToC, cOwn, cToA, aToB })) {
    await untilAnswers(`${name} ready`, () => client.set(`lab-cut-${name}`, '1'));
  }

  await t.test('cut a<>c: a cannot reach c (a hang, not an error), c cannot reach a; b and c itself can', async (t) => {
    await lab.cut('a', 'c');
    t.same(lab.cutLinks().sort(), ['a>c', 'c>a'], 'both ways cut');
    const hung = aToC.get('lab-cut-aToC');
    const hungBack = cToA.get('lab-cut-cToA');
    t.equal(await within(hung, 4 * DELAY_MS + 300), 'pending', 'a>c: no answer');
    t.equal(await within(hungBack, 100), 'pending', 'c>a: no answer');
    t.equal((await timed(() => cOwn.get('lab-cut-cOwn'))).value, '1', 'c still reaches its own cluster');
    const viaB = await timed(() => bToC.get('lab-cut-bToC'));
    t.ok(viaB.value === '1' && viaB.ms >= 2 * DELAY_MS, `b still reaches c through its proxies (${viaB.ms.toFixed(1)} ms)`);
    t.equal(await aToB.get('lab-cut-aToB'), '1', 'a still reaches b');
    await lab.heal('a', 'c');
    t.same(lab.cutLinks(), [], 'healed both ways');
    t.not(await within(hung, 3_000), 'pending', 'the hung command settled (reset at heal, a retry, or the client timeout)');
    const aMs = await untilAnswers('a reaches c again', () => aToC.get('lab-cut-aToC'));
    const cMs = await untilAnswers('c reaches a again', () => cToA.get('lab-cut-cToA'));
    t.comment(`after heal: a>c answered again after ${aMs.toFixed(0)} ms, c>a after ${cMs.toFixed(0)} ms`);
    const again = await timed(() => aToC.get('lab-cut-aToC'));
    t.ok(again.value === '1' && again.ms >= 2 * DELAY_MS, `and through the proxies again (${again.ms.toFixed(1)} ms)`);
    await waitFor('c\'s own client is the only direct one (one connection per node)',
      async () => (await lab.connectionsBySource('c'))['direct'] === 3, 3_000, 50);
    t.pass('c\'s own client is the only direct one (one connection per node)');
  });

  await t.test('a one-way cut a>c: a cannot reach c, c still reaches a', async (t) => {
    await lab.cut('a', 'c', { oneWay: true });
    t.same(lab.cutLinks(), ['a>c'], 'one way');
    t.equal(await within(aToC.get('lab-cut-aToC'), 4 * DELAY_MS + 300), 'pending', 'a>c: no answer');
    t.equal(await cToA.get('lab-cut-cToA'), '1', 'c>a answers');
    await lab.heal('a', 'c', { oneWay: true });
    await untilAnswers('a reaches c again', () => aToC.get('lab-cut-aToC'));
    t.same(lab.cutLinks(), [], 'healed');
  });

  await t.test('cutRegion(c) isolates c both ways; healAll resumes everything', async (t) => {
    const resetsBefore = lab.linkStats('a', 'c').resets;
    await lab.cutRegion('c');
    t.same(lab.cutLinks().sort(), ['a>c', 'b>c', 'c>a', 'c>b'], 'every link of c');
    const outcomes = await Promise.all([aToC.get('lab-cut-aToC'), bToC.get('lab-cut-bToC'), cToA.get('lab-cut-cToA')]
      .map((p) => within(p, 4 * DELAY_MS + 300)));
    t.same(outcomes, ['pending', 'pending', 'pending'], 'nothing crosses');
    t.equal(await aToB.get('lab-cut-aToB'), '1', 'a and b still talk');
    t.equal(await cOwn.get('lab-cut-cOwn'), '1', 'c still decides against its own cluster');
    await lab.healAll({ resume: true });
    t.same(lab.cutLinks(), [], 'all healed');
    // Resumed, not reset: the connections survive and the held commands answer.
    await untilAnswers('a reaches c again', () => aToC.get('lab-cut-aToC'));
    await untilAnswers('b reaches c again', () => bToC.get('lab-cut-bToC'));
    t.equal(lab.linkStats('a', 'c').resets, resetsBefore, 'no connection was reset');
  });
});

tap.test('stop closes every proxy and Redis, frees the ports, and is idempotent', async (t) => {
  const ports = [...lab.regions.flatMap((from) => lab.regions.filter((to) => to !== from).flatMap((to) => lab.link(from, to).proxies.map((p) => p.port)))];
  t.equal(ports.length, 10, '10 proxies: 1+3, 1+3, 1+1');
  const nodes = lab.regions.flatMap((r) => lab.redis(r).nodes);
  const { ms } = await timed(() => Promise.all([lab.stop(), lab.stop()]));
  await lab.stop();
  t.comment(`stopped in ${ms.toFixed(0)} ms`);
  t.ok(nodes.every((n) => !n.running), 'every redis-server exited');
  for (const port of [...ports, ...nodes.map((n) => n.port)]) {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  t.pass(`all ${ports.length + nodes.length} ports are free`);
  t.throws(() => lab.client('a', 'c'), /stopped/, 'no new client after stop');
});

tap.teardown(() => {
  tap.comment(`lab test done in ${(performance.now() - started).toFixed(0)} ms`);
});
