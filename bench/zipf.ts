// Seeded key draws for the scale workloads: uniform over N keys, and Zipf
// (rank k drawn with probability ∝ 1 / k^s). Seeded so that every run, and
// ours and the peer within one run, send the same key sequence.

/** mulberry32: a small, fast 32-bit PRNG; returns draws in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Index 0..n-1, each equally likely. */
export function uniformSampler(n: number, random: () => number): () => number {
  return () => Math.min(n - 1, Math.floor(random() * n));
}

/**
 * Index 0..n-1 where index i (rank i + 1) has probability (i + 1)^-s / H(n, s):
 * inverse CDF over the cumulative weights (n doubles, built once), binary search per draw.
 */
export function zipfSampler(n: number, s: number, random: () => number): () => number {
  if (!Number.isInteger(n) || n < 1) throw new Error(`zipf: n must be a whole number ≥ 1, not ${n}`);
  if (!(s > 0)) throw new Error(`zipf: s must be > 0, not ${s}`);
  const cumulative = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    sum += (i + 1) ** -s;
    cumulative[i] = sum;
  }
  return () => {
    const target = random() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cumulative[mid] ?? sum) <= target) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** H(n, s) = Σ k^-s for k = 1..n: rank 1's share of a Zipf draw is 1 / H(n, s). */
export function harmonic(n: number, s: number): number {
  let sum = 0;
  for (let k = 1; k <= n; k++) sum += k ** -s;
  return sum;
}
