// CPU use during a measured run, from /proc: who is busy (the server, Redis,
// the bench process running autocannon or the h2load file rotator), and how
// much of the machine is left idle. On a 2-core box 100% = one core.
import { readdirSync, readFileSync } from 'node:fs';

/** Linux USER_HZ; 100 on every mainstream kernel config. */
const CLOCK_TICKS_PER_S = 100;

/** utime + stime of a /proc/<pid>/stat line, and its fields after the command name. */
function parseStat(stat: string): { fields: string[]; ticks: number } {
  // Fields after the ")" of the command name: state is field 3; ppid 4; utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { fields, ticks: Number(fields[11]) + Number(fields[12]) };
}

/** Calls `visit` with every running process's pid and stat line (processes may exit meanwhile). */
function forEachProcess(visit: (pid: number, stat: string) => void): void {
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      visit(Number(entry), readFileSync(`/proc/${entry}/stat`, 'utf8'));
    } catch {
      // exited meanwhile
    }
  }
}

/** CPU ticks of a process plus its direct children (node:cluster workers under --workers N). */
function treeTicks(pid: number): number {
  let ticks = processTicks(pid);
  forEachProcess((_child, stat) => {
    const parsed = parseStat(stat);
    if (Number(parsed.fields[1]) === pid) ticks += parsed.ticks;
  });
  return ticks;
}

function processTicks(pid: number): number {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).ticks;
  } catch {
    return Number.NaN;
  }
}

/** CPU ticks of every running h2load process, by pid (they exit before the meter stops, so it samples). */
function h2loadTicks(): Map<number, number> {
  const ticks = new Map<number, number>();
  forEachProcess((pid, stat) => {
    if (stat.includes('(h2load)')) ticks.set(pid, parseStat(stat).ticks);
  });
  return ticks;
}

function machineTicks(): { busy: number; idle: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    const all = values.reduce((a, b) => a + b, 0);
    return { busy: all - idle, idle };
  } catch {
    return { busy: Number.NaN, idle: Number.NaN };
  }
}

export interface CpuShares {
  /** Percent of one core. */
  readonly server: number;
  readonly redis: number;
  readonly bench: number;
  /** h2load processes (sampled every 250 ms, so slightly low). */
  readonly h2load: number;
  /** Everything else on the machine (other people's processes, kernel), percent of one core. */
  readonly other: number;
  /** Percent of the whole machine left idle. */
  readonly idle: number;
  /** CPU seconds of the server (and its direct children) over the measured window (10 ms ticks). */
  readonly serverSeconds: number;
}

export interface CpuMeter {
  stop(): CpuShares;
}

/** Starts measuring; `stop()` returns the shares since the start. */
export function startCpuMeter(serverPid: number | undefined, redisPids: readonly number[]): CpuMeter {
  const started = performance.now();
  const server0 = serverPid === undefined ? Number.NaN : treeTicks(serverPid);
  const redis0 = redisPids.map(processTicks);
  const bench0 = process.cpuUsage();
  const machine0 = machineTicks();
  const h2start = h2loadTicks();
  const h2last = new Map<number, number>();
  const sampler = setInterval(() => {
    for (const [pid, ticks] of h2loadTicks()) h2last.set(pid, ticks);
  }, 250);
  return {
    stop() {
      clearInterval(sampler);
      let h2 = 0;
      for (const [pid, ticks] of h2last) h2 += ticks - (h2start.get(pid) ?? 0);
      const seconds = (performance.now() - started) / 1000;
      const pct = (ticks: number): number => (100 * ticks) / CLOCK_TICKS_PER_S / seconds;
      const serverTicks = serverPid === undefined ? Number.NaN : treeTicks(serverPid) - server0;
      const server = pct(serverTicks);
      const redis = redisPids.reduce((sum, pid, i) => sum + processTicks(pid) - (redis0[i] ?? 0), 0);
      const benchUsage = process.cpuUsage(bench0);
      const machine = machineTicks();
      const busy = machine.busy - machine0.busy;
      const idle = machine.idle - machine0.idle;
      const ours = [server, redisPids.length === 0 ? 0 : pct(redis), (100 * (benchUsage.user + benchUsage.system)) / 1e6 / seconds, pct(h2)]
        .reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
      return {
        other: Math.max(0, pct(busy) - ours),
        server,
        redis: redisPids.length === 0 ? Number.NaN : pct(redis),
        bench: (100 * (benchUsage.user + benchUsage.system)) / 1e6 / seconds,
        h2load: pct(h2),
        idle: (100 * idle) / (busy + idle),
        serverSeconds: serverTicks / CLOCK_TICKS_PER_S,
      };
    },
  };
}
