// The scale workloads' key draws: seeded, in range, and distributed as claimed.
import t from 'tap';
import { harmonic, seededRandom, uniformSampler, zipfSampler } from '../../../bench/zipf.js';
import { GLOBAL_CAP_KEY, SCALE_KEY_COUNT, scaleKeys } from '../../../bench/workload.js';

t.test('the seeded generator repeats its sequence for a seed and stays in [0, 1)', async (t) => {
  const a = seededRandom(7);
  const b = seededRandom(7);
  const c = seededRandom(8);
  const drawsA = Array.from({ length: 1000 }, a);
  t.same(Array.from({ length: 1000 }, b), drawsA);
  t.not(c(), drawsA[0]);
  t.ok(drawsA.every((x) => x >= 0 && x < 1));
});

t.test('uniform draws cover the range evenly', async (t) => {
  const draw = uniformSampler(10, seededRandom(1));
  const counts = new Array<number>(10).fill(0);
  for (let i = 0; i < 100_000; i++) counts[draw()]!++;
  for (const count of counts) t.ok(count > 9_000 && count < 11_000, `each of 10 values ~10,000 times (got ${count})`);
});

t.test('Zipf s = 1.1 over 100k: rank 1 takes 1/H of the draws, rank 1 : rank 2 ≈ 2^1.1, every draw in range', async (t) => {
  const n = SCALE_KEY_COUNT;
  const draw = zipfSampler(n, 1.1, seededRandom(18));
  const draws = 200_000;
  const counts = new Map<number, number>();
  let outOfRange = 0;
  for (let i = 0; i < draws; i++) {
    const k = draw();
    if (k < 0 || k >= n || !Number.isInteger(k)) outOfRange++;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  t.equal(outOfRange, 0);
  const share = (counts.get(0) ?? 0) / draws;
  const expected = 1 / harmonic(n, 1.1);
  t.ok(Math.abs(share - expected) < 0.01, `rank 1 share ${share.toFixed(4)} ≈ ${expected.toFixed(4)}`);
  t.ok(expected > 0.13 && expected < 0.14, 'H(100k, 1.1) ≈ 7.42');
  const ratio = (counts.get(0) ?? 0) / (counts.get(1) ?? 1);
  t.ok(Math.abs(ratio - 2 ** 1.1) < 0.15, `rank 1 / rank 2 = ${ratio.toFixed(3)} ≈ ${(2 ** 1.1).toFixed(3)}`);
  // The tail is long: most of the 100k keys are drawn rarely, but many distinct keys appear.
  t.ok(counts.size > 20_000, `${counts.size} distinct keys in ${draws} draws`);
});

t.test('Zipf rejects a bad size or exponent', async (t) => {
  t.throws(() => zipfSampler(0, 1.1, Math.random), /n must be/);
  t.throws(() => zipfSampler(10, 0, Math.random), /s must be/);
});

t.test('scale key lists: fixed order, uniform spreads over 100k names, hot is one key', async (t) => {
  t.same(scaleKeys('zipf', 50), scaleKeys('zipf', 50), 'ours and the peer get the same sequence');
  const uniform = scaleKeys('uniform', 50_000);
  t.ok(uniform.every((k) => /^key\d{5}$/.test(k)));
  t.ok(new Set(uniform).size > 35_000, 'a random one of 100k: few repeats in 50k draws');
  t.same(new Set(scaleKeys('hot', 100)), new Set([GLOBAL_CAP_KEY]));
});
