// Inspect and reset on a Redis Cluster with replicas (real redis-server
// processes): one request's buckets live on several masters; inspect reads
// each at its own master, reset deletes on each.
import t from 'tap';
import { freePort, startRedisCluster } from '../../helpers/redis.js';
import { badInput, inspectAndReset, unreachable } from './scenario.js';

// A hang guard for the whole file (real servers, Redis and CLI processes on a shared machine), not a timing assertion.
t.setTimeout(600_000);

await t.test('Redis Cluster: one request\'s buckets on several masters are inspected and reset, through the admin listener and the CLI', async (t) => {
  const cluster = await startRedisCluster({ t, masters: 3, replicasPerMaster: 1 });
  await inspectAndReset(t, {
    storeArgs: ['--redis-cluster', cluster.seeds],
    shared: true,
    keys: async (keys) => {
      const masters = new Set((await cluster.mastersOf(keys)).map((info) => info.id));
      t.ok(masters.size >= 2, `the request's ${keys.length} buckets live on ${masters.size} masters`);
      for (const key of keys) {
        const master = await cluster.masterOf(key);
        t.equal(await master.node.cli('EXISTS', key), '1', `${key} is stored on its master`);
      }
    },
  });
});

await t.test('Redis Cluster: bad input is 400 / exit 2; unreachable seeds exit 1', async (t) => {
  const cluster = await startRedisCluster({ t, masters: 3, replicasPerMaster: 0 });
  await badInput(t, { storeArgs: ['--redis-cluster', cluster.seeds] });
  await unreachable(t, ['--redis-cluster', `127.0.0.1:${await freePort()},127.0.0.1:${await freePort()}`]);
});
