// What one decision costs in CPU: Redis's own counters (INFO cpu, summed over
// every master) and the sidecar's /proc ticks, each divided by the decisions
// answered in the same window. Pure arithmetic; redis-procs.ts and cpu.ts read
// the counters.

/** used_cpu_user + used_cpu_sys of one INFO cpu reply, in seconds (all of the redis-server's threads). */
export function redisCpuSeconds(info: string): number {
  let user: number | undefined;
  let sys: number | undefined;
  for (const line of info.split('\n')) {
    const match = /^(used_cpu_user|used_cpu_sys):([\d.]+)\s*$/.exec(line.trim());
    if (match === null) continue;
    if (match[1] === 'used_cpu_user') user = Number(match[2]);
    else sys = Number(match[2]);
  }
  if (user === undefined || sys === undefined) throw new Error(`INFO cpu reply without used_cpu_user/used_cpu_sys: ${info.slice(0, 200)}`);
  return user + sys;
}

/** CPU seconds spent between two readings summed over nodes (same order); NaN when the node lists differ. */
export function cpuDeltaSeconds(before: readonly number[], after: readonly number[]): number {
  if (before.length !== after.length || before.length === 0) return Number.NaN;
  let delta = 0;
  for (let i = 0; i < before.length; i++) delta += (after[i] ?? Number.NaN) - (before[i] ?? Number.NaN);
  return delta;
}

/** Microseconds of CPU per decision; NaN without decisions or a reading. */
export function microsPerDecision(cpuSeconds: number, decisions: number): number {
  if (!Number.isFinite(cpuSeconds) || !(decisions > 0)) return Number.NaN;
  return (cpuSeconds * 1e6) / decisions;
}

/** Decisions one fully busy core carries at this cost: 1 / (CPU per decision). */
export function decisionsPerCoreSecond(microsPerDecisionValue: number): number {
  return microsPerDecisionValue > 0 && Number.isFinite(microsPerDecisionValue) ? 1e6 / microsPerDecisionValue : Number.NaN;
}
