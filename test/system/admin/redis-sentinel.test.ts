// Inspect and reset through Redis Sentinels (real `redis-server --sentinel`
// processes): both go to the master the Sentinels name, and follow a failover.
import t from 'tap';
import { freePort, startSentinelGroup } from '../../helpers/redis.js';
import { badInput, inspectAndReset, post, runCli, startServer, unreachable, writeConfig, type InspectAnswer } from './scenario.js';

// A hang guard for the whole file (real servers, Redis and CLI processes on a shared machine), not a timing assertion.
t.setTimeout(600_000);

await t.test('Sentinel: take, inspect twice, deny, reset, full, admit; through the admin listener and the CLI', async (t) => {
  const group = await startSentinelGroup({ t, replicas: 1 });
  const storeArgs = ['--redis-sentinel', group.sentinelAddresses, '--redis-sentinel-master', group.name];
  await inspectAndReset(t, { storeArgs, shared: true });
  const master = await group.master();
  t.match(await group.cli(master, 'DBSIZE'), /^[1-9]/, 'the buckets are on the master the Sentinels name');
});

await t.test('Sentinel: after a failover, inspect and reset act on the new master', async (t) => {
  const group = await startSentinelGroup({ t, replicas: 1 });
  const storeArgs = ['--redis-sentinel', group.sentinelAddresses, '--redis-sentinel-master', group.name];
  const config = writeConfig(t);
  const server = await startServer(t, config, storeArgs);
  const body = { descriptors: [{ entries: [{ key: 'api_key', value: 'k' }] }], hits_addend: 4 };
  t.equal((await post(`${server.httpUrl}/v1/check`, body)).status, 200, '4 tokens taken');
  await group.waitReplicated();
  const old = await group.master();
  const promoted = await group.failover();
  t.not(promoted.port, old.port, 'a replica was promoted');
  const cliInspect = await runCli(['inspect', '--config', config, ...storeArgs, 'api_key=k']);
  t.equal(cliInspect.code, 0, cliInspect.stderr);
  t.equal((JSON.parse(cliInspect.stdout) as InspectAnswer).statuses[0]!.limit_remaining, 6, 'the CLI reads the new master');
  let inspected: InspectAnswer | undefined;
  for (let attempt = 0; attempt < 100 && inspected === undefined; attempt++) {
    // The server's connection follows the failover (503 until it does).
    const answer = await post(`${server.adminUrl}/v1/inspect`, { descriptors: body.descriptors });
    if (answer.status === 200) inspected = answer.json as InspectAnswer;
    else await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.equal(inspected?.statuses[0]?.limit_remaining, 6, 'the admin listener reads the new master');
  const key = inspected?.statuses[0]?.key ?? '';
  t.equal(await group.cli(promoted, 'EXISTS', key), '1', 'the bucket is on the new master');
  t.same(await post(`${server.adminUrl}/v1/reset`, { descriptors: body.descriptors }), { status: 200, json: { reset: 1 } });
  t.equal(await group.cli(promoted, 'EXISTS', key), '0', 'and gone after the reset');
});

await t.test('Sentinel: bad input is 400 / exit 2; unreachable Sentinels exit 1', async (t) => {
  const group = await startSentinelGroup({ t, replicas: 0 });
  await badInput(t, { storeArgs: ['--redis-sentinel', group.sentinelAddresses, '--redis-sentinel-master', group.name] });
  await unreachable(t, ['--redis-sentinel', `127.0.0.1:${await freePort()}`, '--redis-sentinel-master', group.name]);
});
