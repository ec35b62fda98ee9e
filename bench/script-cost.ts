// What lua/openclaw.lua costs Redis per operation: `take` calls of 1, 8 and 50
// batches (one op each, as coalescing sends them) on uniform keys and on one
// hot key far under its limit, against a real redis-server. Prints, per row,
// the script's own time (INFO commandstats: cmdstat_evalsha usec) and the
// redis-server's CPU (INFO cpu: used_cpu_user + used_cpu_sys), each divided
// by the ops decided. No server, no HTTP: only the script and its replies.
// Both figures move with the machine's load (commandstats time is wall time).
// --instructions runs redis-server under valgrind's callgrind instead and
// counts the instructions it executes per op: the same on an idle and on a
// busy machine, so two versions of the script compare reliably.
//
//   node --import tsx bench/script-cost.ts [--ops N]                  (default 200000 ops per row)
//   node --import tsx bench/script-cost.ts --instructions [--ops N]   (default 5000 ops per row)
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePorts, makeTempDir, removeTempDir, runCommand, sleep, spawnChild, stopAll, stopChild, waitForPort } from './procs.js';
import { startSingleRedis } from './redis-procs.js';
import { scriptTake, tokenBucketValues, type Take } from './script-call.js';

const INSTRUCTIONS = process.argv.includes('--instructions');
const OPS_PER_ROW = Number(process.argv[process.argv.indexOf('--ops') + 1] ?? '') || (INSTRUCTIONS ? 5_000 : 200_000);
const KEYS = 100_000;
const IN_FLIGHT = 8;
const CALL_SIZES = [1, 8, 50] as const;

interface Row {
  workload: string;
  opsPerCall: number;
  calls: number;
  scriptUsPerOp: number;
  cpuUsPerOp: number;
  /** With --instructions: redis-server's instructions per op. */
  instructionsPerOp?: number;
}

/** What a row measures around its calls: start, then stop and give instructions counted (or undefined). */
interface Meter {
  start(): Promise<void>;
  stop(): Promise<number | undefined>;
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

async function row(client: Redis, take: Take, meter: Meter, workload: 'uniform' | 'hot', opsPerCall: number): Promise<Row> {
  const limit = tokenBucketValues(workload === 'hot' ? 100_000_000 : 1000);
  let next = 0;
  const keys = (): string[] => Array.from({ length: opsPerCall }, () => {
    next = (next + 7919) % KEYS;
    return workload === 'hot' ? 'rl:{hot}:k' : `rl:{k${next}}:k`;
  });
  const calls = Math.ceil(OPS_PER_ROW / opsPerCall);
  // Warm-up: the script loaded, the keys written once.
  await take(limit, keys());
  await meter.start();
  const before = await counters(client);
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < calls) {
      sent++;
      await take(limit, keys());
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const after = await counters(client);
  const instructions = await meter.stop();
  const ops = (after.calls - before.calls) * opsPerCall;
  return {
    workload, opsPerCall, calls: after.calls - before.calls,
    scriptUsPerOp: (after.usec - before.usec) / ops,
    cpuUsPerOp: ((after.cpuS - before.cpuS) * 1e6) / ops,
    ...(instructions === undefined ? {} : { instructionsPerOp: instructions / ops }),
  };
}

/** redis-server under callgrind, counting only while a row runs (the INFO calls around it count too: a few thousand instructions). */
async function startCountedRedis(): Promise<{ port: number; meter: Meter; stop(): Promise<void> }> {
  const dir = makeTempDir('rl-script-cost-');
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error('no free port');
  const child = spawnChild('redis-server (callgrind)', 'valgrind', [
    '--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${join(dir, 'cg.%p.out')}`,
    'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--loglevel', 'warning',
  ]);
  await waitForPort(port, 120_000, child);
  const pid = String(child.proc.pid);
  const control = async (...args: string[]): Promise<void> => {
    const result = await runCommand('callgrind_control', [...args, pid]);
    if (result.code !== 0) throw new Error(`callgrind_control ${args.join(' ')}: ${result.stdout}${result.stderr}`);
  };
  let dumps = 0;
  const meter: Meter = {
    async start() {
      await control('--zero');
      await control('--instr=on');
    },
    async stop() {
      await control('--instr=off');
      await control('--dump');
      dumps++;
      for (let i = 0; i < 100; i++) {
        const files = readdirSync(dir).filter((name) => name.startsWith(`cg.${pid}.out.`));
        if (files.length >= dumps) {
          const newest = files.sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop())).pop()!;
          return Number(/^totals:\s*(\d+)/m.exec(readFileSync(join(dir, newest), 'utf8'))?.[1]);
        }
        await sleep(100);
      }
      throw new Error(`no callgrind dump in ${dir}`);
    },
  };
  return { port, meter, async stop() { await stopChild(child); removeTempDir(dir); } };
}

async function main(): Promise<void> {
  const redis = INSTRUCTIONS ? await startCountedRedis() : await startSingleRedis();
  const port = 'port' in redis ? redis.port : Number(redis.serverArgs[1]!.split(':').pop());
  const meter: Meter = 'meter' in redis ? redis.meter : { start: () => Promise.resolve(), stop: () => Promise.resolve(undefined) };
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
  try {
    await client.connect();
    const take = scriptTake(client);
    const rows: Row[] = [];
    for (const workload of ['uniform', 'hot'] as const) {
      for (const size of CALL_SIZES) rows.push(await row(client, take, meter, workload, size));
    }
    if (INSTRUCTIONS) {
      console.log('| workload | ops per call | calls | redis-server instructions per op (callgrind) |');
      console.log('|---|---:|---:|---:|');
      for (const r of rows) console.log(`| ${r.workload} | ${r.opsPerCall} | ${r.calls} | ${Math.round(r.instructionsPerOp ?? Number.NaN)} |`);
      return;
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
