// A/B of two builds on the gRPC rows (memory store, spread workload), for a
// change whose effect is smaller than the noise of a shared machine:
//
//   node --import tsx bench/ab-grpc.ts --a DIR --b DIR [--api rls,authz] [--rounds N] [--seconds S]
//
// DIR is a built checkout (DIR/dist/main.js, DIR/bench/bench.yaml). Each round
// starts A and B in turn (ABBA order, so a drifting machine favours neither),
// each a fresh server warmed up for a second, then one h2load run as in
// `npm run bench`. Printed per API: each pair's B/A of calls/s and of the
// server's CPU per call (µs; /proc ticks of the server process), then the
// median and the range of those ratios. CPU per call moves less with other
// people's load than calls/s does.
import { parseArgs } from 'node:util';
import { startCpuMeter } from './cpu.js';
import { AUTHZ_PATH, RLS_PATH, authzRequest, rlsRequest } from './grpc-messages.js';
import { grpcLoad } from './load-grpc.js';
import { installCleanup, makeTempDir, removeTempDir, stopAll } from './procs.js';
import { startOurServer } from './servers.js';

const { values } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string' },
    api: { type: 'string', default: 'rls,authz' },
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '4' },
  },
});
if (values.a === undefined || values.b === undefined) throw new Error('--a DIR and --b DIR are required');
const builds = { A: values.a, B: values.b } as const;
const apis = values.api.split(',') as ('rls' | 'authz')[];
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);

const tmp = makeTempDir('rl-ab-');
installCleanup(async () => {
  await stopAll();
  removeTempDir(tmp);
});

interface Run { rate: number; cpuUsPerCall: number; errors: number }

async function once(root: string, api: 'rls' | 'authz'): Promise<Run> {
  const server = await startOurServer(root, []);
  try {
    const options = {
      port: server.grpcPort ?? 0, path: api === 'rls' ? RLS_PATH : AUTHZ_PATH, encode: api === 'rls' ? rlsRequest : authzRequest,
      shape: 'spread' as const, tmpDir: tmp,
    };
    await grpcLoad({ ...options, seconds: 1, measure: false });
    let meter: ReturnType<typeof startCpuMeter> | undefined;
    const result = await grpcLoad({ ...options, seconds, measure: false, onStart: () => { meter = startCpuMeter(server.pid, []); } });
    const cpu = meter!.stop();
    return { rate: result.rate, cpuUsPerCall: (cpu.server / 100) * 1e6 / result.rate, errors: result.errors };
  } finally {
    await server.stop();
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const f3 = (x: number): string => x.toFixed(3);

for (const api of apis) {
  const rateRatios: number[] = [];
  const cpuRatios: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const);
    const runs: Partial<Record<'A' | 'B', Run>> = {};
    for (const which of order) runs[which] = await once(builds[which], api);
    const a = runs.A!;
    const b = runs.B!;
    rateRatios.push(b.rate / a.rate);
    cpuRatios.push(b.cpuUsPerCall / a.cpuUsPerCall);
    process.stdout.write(`${api} round ${round + 1}: A ${Math.round(a.rate)}/s ${a.cpuUsPerCall.toFixed(1)} µs/call (errors ${a.errors}), `
      + `B ${Math.round(b.rate)}/s ${b.cpuUsPerCall.toFixed(1)} µs/call (errors ${b.errors}); B/A rate ${f3(b.rate / a.rate)}, cpu ${f3(b.cpuUsPerCall / a.cpuUsPerCall)}\n`);
  }
  process.stdout.write(`${api}: B/A calls/s median ${f3(median(rateRatios))} [${f3(Math.min(...rateRatios))}, ${f3(Math.max(...rateRatios))}]; `
    + `B/A CPU per call median ${f3(median(cpuRatios))} [${f3(Math.min(...cpuRatios))}, ${f3(Math.max(...cpuRatios))}] over ${rounds} pairs\n`);
}
await stopAll();
removeTempDir(tmp);
