// Instructions per request (callgrind; see callgrind.ts), for A/B on a busy machine:
//
//   node --import tsx bench/instructions.ts [--server ours|bare] [--api check|auth|rls|authz]
//        [--dist DIR] [--warm N] [--count N] [--rounds N] [--redis URL] [--connections N]
//
// --redis: our server on that Redis (one you run), to count the Redis path.
// --connections: requests in flight (default 4); 1 makes every read and write
// one request's, so two builds compare without batching noise.
//
// Prints one JSON line per round. Rounds of two builds can be alternated by
// running this twice per round with different --dist.
import { parseArgs } from 'node:util';
import { countInstructions, type CountedApi, type CountedServer } from './callgrind.js';

const { values } = parseArgs({
  options: {
    server: { type: 'string', default: 'ours' },
    api: { type: 'string', default: 'check' },
    dist: { type: 'string' },
    warm: { type: 'string', default: '40000' },
    count: { type: 'string', default: '3000' },
    rounds: { type: 'string', default: '1' },
    redis: { type: 'string' },
    connections: { type: 'string', default: '4' },
  },
});
for (let round = 1; round <= Number(values.rounds); round++) {
  const result = await countInstructions({
    server: values.server as CountedServer,
    api: values.api as CountedApi,
    ...(values.dist === undefined ? {} : { dist: values.dist }),
    ...(values.redis === undefined ? {} : { serverArgs: ['--redis', values.redis] }),
    warm: Number(values.warm),
    count: Number(values.count),
    connections: Number(values.connections),
  });
  process.stdout.write(`${JSON.stringify({
    round, server: values.server, api: values.api, dist: values.dist ?? 'dist',
    instructionsPerRequest: Math.round(result.perRequest), outsideGc: Math.round(result.perRequest - result.gcPerRequest),
    gc: Math.round(result.gcPerRequest), statuses: result.statuses,
  })}\n`);
}
