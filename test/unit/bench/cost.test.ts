// CPU per decision: Redis's INFO cpu counters and the arithmetic on them.
import t from 'tap';
import { cpuDeltaSeconds, decisionsPerCoreSecond, microsPerDecision, redisCpuSeconds } from '../../../bench/cost.js';

const INFO = [
  '# CPU',
  'used_cpu_sys:1.250000',
  'used_cpu_user:3.500000',
  'used_cpu_sys_children:0.000000',
  'used_cpu_user_children:0.000000',
  'used_cpu_sys_main_thread:1.200000',
  'used_cpu_user_main_thread:3.400000',
  '',
].join('\r\n');

t.test('INFO cpu: used_cpu_user + used_cpu_sys, not the children or main-thread lines', async (t) => {
  t.equal(redisCpuSeconds(INFO), 4.75);
});

t.test('an INFO reply without the counters is an error, not zero', async (t) => {
  t.throws(() => redisCpuSeconds('# CPU\r\nused_cpu_sys:1.0\r\n'), /used_cpu_user/);
});

t.test('deltas are summed over every master', async (t) => {
  t.equal(cpuDeltaSeconds([1, 2, 3], [1.5, 2.25, 3.25]), 1);
  t.ok(Number.isNaN(cpuDeltaSeconds([1, 2], [1, 2, 3])), 'node lists that differ give no figure');
  t.ok(Number.isNaN(cpuDeltaSeconds([], [])));
});

t.test('µs per decision and decisions per core second', async (t) => {
  // 0.3 s of Redis CPU for 100,000 decisions = 3 µs each = 333,333 decisions per core second.
  t.equal(microsPerDecision(0.3, 100_000), 3);
  t.equal(Math.round(decisionsPerCoreSecond(3)), 333_333);
  t.equal(decisionsPerCoreSecond(0.5), 2_000_000, 'the hot-key target: 0.5 µs = 2M decisions/s per core');
  t.ok(Number.isNaN(microsPerDecision(0.3, 0)), 'no decisions, no figure');
  t.ok(Number.isNaN(microsPerDecision(Number.NaN, 10)));
  t.ok(Number.isNaN(decisionsPerCoreSecond(0)));
});
