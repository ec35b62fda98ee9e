// Loaded into a server under test (`node --import tsx --import
// ./bench/loop-delay-probe.ts dist/main.js serve ...`, spawned with an IPC
// channel): measures its event-loop delay with monitorEventLoopDelay, apart
// for each window of a phase. { phase } from the bench starts a window of
// that phase ('start-up' until the first) and is answered { entered: phase };
// { report: true } is answered { report: { [phase]: LoopDelay } }. A fresh
// monitor per window: one enabled again would count the time it was off as
// one long delay. A fresh monitor records nothing until its second tick, so
// the bench sends SIGHUP only after the 'reload' window is open: a reload
// that holds the loop from its start is then still seen whole.
// bench/reload.ts drives it.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export interface LoopDelay {
  windows: number;
  /** How many 1 ms ticks were measured, over all windows. */
  samples: number;
  /** The highest p99 of one window (percentiles of separate windows do not add up). */
  worstWindowP99Ms: number;
  maxMs: number;
}

const NS_PER_MS = 1e6;
const phases = new Map<string, LoopDelay>();
let phase = 'start-up';
let monitor: IntervalHistogram = monitorEventLoopDelay({ resolution: 1 });
monitor.enable();

function closeWindow(): void {
  monitor.disable();
  const seen = phases.get(phase) ?? { windows: 0, samples: 0, worstWindowP99Ms: 0, maxMs: 0 };
  if (monitor.count > 0) {
    seen.windows += 1;
    seen.samples += monitor.count;
    seen.worstWindowP99Ms = Math.max(seen.worstWindowP99Ms, monitor.percentile(99) / NS_PER_MS);
    seen.maxMs = Math.max(seen.maxMs, monitor.max / NS_PER_MS);
  }
  phases.set(phase, seen);
}

function enter(next: string): void {
  closeWindow();
  phase = next;
  monitor = monitorEventLoopDelay({ resolution: 1 });
  monitor.enable();
}

process.on('message', (message: { phase?: string; report?: boolean }) => {
  if (message.phase !== undefined) {
    enter(message.phase);
    process.send?.({ entered: message.phase });
  }
  if (message.report === true) {
    enter(phase);
    process.send?.({ report: Object.fromEntries(phases) });
  }
});
process.channel?.unref(); // the probe never keeps the server alive
