// What lua/openclaw.lua costs Redis per operation: `take` calls of 1, 8 and 50
// batches (one op each, as coalescing sends them) on uniform keys and on one
// hot key far under its limit, against a real redis-server. Prints, per row,
// the script's own time (INFO commandstats: cmdstat_evalsha usec) and the
// redis-server's CPU (INFO cpu: used_cpu_user + used_cpu_sys), each divided
// by the ops decided. No server, no HTTP: only the script and its replies.
//
//   node --import tsx bench/script-cost.ts [--ops N]    (default 200000 ops per row)
import { Redis } from 'ioredis';
import { compileLimit } from '../src/core/limit.js';
import type { BucketOp, LimitSpec } from '../src/core/types.js';
import { RedisLibrary } from '../src/store/redis/library.js';
import { stopAll } from './procs.js';
import { startSingleRedis } from './redis-procs.js';

const OPS_PER_ROW = Number(process.argv[process.argv.indexOf('--ops') + 1] ?? '') || 200_000;
const KEYS = 100_000;
const IN_FLIGHT = 8;
const CALL_SIZES = [1, 8, 50] as const;

interface Row {
  workload: string;
  opsPerCall: number;
  calls: number;
  scriptUsPerOp: number;
  cpuUsPerOp: number;
}

function info(text: string, field: string): number {
  const match = new RegExp(`${field}:([0-9.]+)`).exec(text);
  return match === null ? 0 : Number(match[1]);
}

async function counters(client: Redis): Promise<{ usec: number; calls: number; cpuS: number }> {
  const stats = await client.info('commandstats');
  const cpu = await client.info('cpu');
  const evalsha = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(stats);
  return {
    calls: evalsha === null ? 0 : Number(evalsha[1]),
    usec: evalsha === null ? 0 : Number(evalsha[2]),
    cpuS: info(cpu, 'used_cpu_user') + info(cpu, 'used_cpu_sys'),
  };
}

function opOn(key: string, limit: LimitSpec): BucketOp {
  return { key, slotTag: key, limit, cost: 1, shadow: false };
}

async function row(client: Redis, library: RedisLibrary, workload: 'uniform' | 'hot', opsPerCall: number): Promise<Row> {
  const uniform = compileLimit({ requestsPerUnit: 1000, unit: 'second' });
  const hot = compileLimit({ requestsPerUnit: 100_000_000, unit: 'second' });
  let next = 0;
  const batches = (): BucketOp[][] => Array.from({ length: opsPerCall }, () => {
    next = (next + 7919) % KEYS;
    return [workload === 'hot' ? opOn('rl:{hot}:k', hot) : opOn(`rl:{k${next}}:k`, uniform)];
  });
  const calls = Math.ceil(OPS_PER_ROW / opsPerCall);
  // Warm-up: the script loaded, the keys written once.
  await library.take('rl:{w}', batches());
  const before = await counters(client);
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < calls) {
      sent++;
      const list = batches();
      await library.take(list[0]![0]!.key, list);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const after = await counters(client);
  const ops = (after.calls - before.calls) * opsPerCall;
  return {
    workload, opsPerCall, calls: after.calls - before.calls,
    scriptUsPerOp: (after.usec - before.usec) / ops,
    cpuUsPerOp: ((after.cpuS - before.cpuS) * 1e6) / ops,
  };
}

async function main(): Promise<void> {
  const redis = await startSingleRedis();
  const port = Number(redis.serverArgs[1]!.split(':').pop());
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
  try {
    await client.connect();
    const library = new RedisLibrary(client);
    const rows: Row[] = [];
    for (const workload of ['uniform', 'hot'] as const) {
      for (const size of CALL_SIZES) rows.push(await row(client, library, workload, size));
    }
    console.log('| workload | ops per call | calls | script µs/op (commandstats) | redis CPU µs/op (INFO cpu) |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of rows) {
      console.log(`| ${r.workload} | ${r.opsPerCall} | ${r.calls} | ${r.scriptUsPerOp.toFixed(2)} | ${r.cpuUsPerOp.toFixed(2)} |`);
    }
  } finally {
    client.disconnect();
    await redis.stop();
    await stopAll();
  }
}

await main();
