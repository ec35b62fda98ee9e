import t from 'tap';
import { Redis } from 'ioredis';
import { algorithmOf } from '../../../src/core/algorithms/table.js';
import { compileLimit } from '../../../src/core/limit.js';
import type { BucketOp } from '../../../src/core/types.js';
import { RedisLibrary } from '../../../src/store/redis/library.js';
import { scriptTake, takeArgv, tokenBucketValues } from '../../../bench/script-call.js';
import { startRedis } from '../../helpers/redis.js';

// bench/script-call.ts encodes `take` from lua/openclaw.lua's header instead of
// importing the sidecar's encoder; these tests hold the two together.

t.test('the bench encodes a per-second token bucket as the sidecar compiles it', async (t) => {
  for (const rate of [1, 3, 1000, 7919, 100_000_000]) {
    const limit = compileLimit({ requestsPerUnit: rate, unit: 'second' });
    const algorithm = algorithmOf(limit);
    t.same(tokenBucketValues(rate), [algorithm.code, ...algorithm.limitArgs(limit)], `${rate}/s`);
  }
});

t.test('takeArgv lists each key once and gives every op its own batch', async (t) => {
  t.same(takeArgv(['t', '1', '1', '1000', '1000000'], ['a', 'b', 'a']), [
    'take', '1', 't', '1', '1', '1000', '1000000',
    '1', '2', 'a', 'b',
    '1', '1', '1', '2', '1', '1', '1', '1', '1',
  ]);
});

t.test('the bench sends the sidecar\'s ARGV, and the script decides it', async (t) => {
  const redis = await startRedis({ t });
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  t.teardown(() => client.disconnect());
  await client.connect();

  // The sidecar's encoder; what it sends is recorded on its way to the real script.
  const library = new RedisLibrary(client);
  const sent: unknown[][] = [];
  const sendCommand = client.sendCommand.bind(client);
  client.sendCommand = ((command: { name: string; args: unknown[] }) => {
    if (command.name === 'evalsha' || command.name === 'eval') sent.push(command.args.slice(1));
    return sendCommand(command as Parameters<typeof sendCommand>[0]);
  }) as typeof client.sendCommand;
  const limit = compileLimit({ requestsPerUnit: 1000, unit: 'second' });
  const op = (key: string): BucketOp => ({ key, slotTag: key, limit, cost: 1, shadow: false });
  const results = await library.take('rl:{b}:k', [[op('rl:{b}:k')], [op('rl:{c}:k')], [op('rl:{b}:k')]]);
  t.same(results.map((r) => r.status), ['committed', 'committed', 'committed']);
  t.same(sent, [[1, 'rl:{b}:k', ...takeArgv(tokenBucketValues(1000), ['rl:{b}:k', 'rl:{c}:k', 'rl:{b}:k'])]], 'the same call');

  // One call: Redis TIME is read once, so no token comes back between the batches.
  const take = scriptTake(client);
  t.same(await take(tokenBucketValues(3), ['rl:{a}:k', 'rl:{a}:k', 'rl:{a}:k', 'rl:{a}:k', 'rl:{a}:k']), [1, 1, 1, 0, 0], 'three of five taken from a bucket of 3');
  t.same(await take(tokenBucketValues(1000), Array.from({ length: 50 }, (_, i) => `rl:{k${i}}:k`)), Array.from({ length: 50 }, () => 1));
});
