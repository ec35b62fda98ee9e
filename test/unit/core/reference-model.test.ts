import t from 'tap';
import { compileLimit } from '../../../src/core/limit.js';
import type { BucketOp, LimitSpec } from '../../../src/core/types.js';
import { MemoryStore } from '../../../src/store/memory-store.js';

/**
 * A deliberately simple token bucket: exact rationals with BigInt, tokens
 * scaled by the unit length in µs, refilled on every call. No ticks, no
 * gcd, no cleverness — if the real implementation agrees with this on random
 * costs and time steps, its integer scaling is right.
 */
class ReferenceBucket {
  private scaled: bigint; // tokens * unitUs
  private lastUs: bigint | undefined;
  constructor(private readonly rpu: bigint, private readonly burst: bigint, private readonly unitUs: bigint) {
    this.scaled = burst * unitUs;
  }
  hit(nowUs: number, cost: number) {
    const now = BigInt(nowUs);
    const cap = this.burst * this.unitUs;
    if (this.lastUs !== undefined && now > this.lastUs) {
      const refilled = this.scaled + (now - this.lastUs) * this.rpu;
      this.scaled = refilled > cap ? cap : refilled;
    }
    this.lastUs = now;
    const need = BigInt(cost) * this.unitUs;
    const allowed = need <= this.scaled;
    if (allowed) this.scaled -= need;
    const ceilDiv = (a: bigint, b: bigint) => (a + b - 1n) / b;
    return {
      allowed,
      remaining: Number(this.scaled / this.unitUs),
      resetUs: Number(ceilDiv(cap - this.scaled, this.rpu)),
      retryAfterUs: allowed ? 0 : Number(need > cap ? ceilDiv(cap - this.scaled, this.rpu) : ceilDiv(need - this.scaled, this.rpu)),
    };
  }
}

function op(limit: LimitSpec, cost: number): BucketOp {
  return { key: 'k', slotTag: 't', limit, cost, shadow: false };
}

t.test('the memory store decides exactly as a simple reference model (random costs and time steps)', async (t) => {
  let seed = 42;
  const random = () => {
    seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
    return seed / 2 ** 32;
  };
  const shapes = [
    { rpu: 10, unit: 'second', burst: 20 },
    { rpu: 3, unit: 'second', burst: 1 },
    { rpu: 7, unit: 'minute', burst: 13 },
    { rpu: 1000, unit: 'hour', burst: 50 },
    { rpu: 60, unit: 'minute', burst: 60 },
  ] as const;
  let decisions = 0;
  let mismatches = 0;
  for (const shape of shapes) {
    const limit = compileLimit({ requestsPerUnit: shape.rpu, unit: shape.unit, burst: shape.burst });
    t.equal(limit.tickUs, 1, 'these shapes run at micro-second resolution');
    let now = 1_700_000_000_000_000;
    const store = new MemoryStore({ maxKeys: 1_000_000, clock: () => now, sweep: false });
    const reference = new ReferenceBucket(BigInt(shape.rpu), BigInt(shape.burst), BigInt(limit.unitUs));
    for (let i = 0; i < 3000; i++) {
      // Mostly small steps, sometimes long pauses; costs 0..burst+2.
      now += random() < 0.05 ? Math.floor(random() * limit.unitUs * 2) : Math.floor(random() * (limit.unitUs / shape.rpu) * 1.5);
      const cost = Math.floor(random() * (shape.burst + 3));
      const [actual] = store.applySync([op(limit, cost)]);
      const expected = reference.hit(now, cost);
      decisions++;
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        mismatches++;
        if (mismatches < 5) t.fail(`step ${i} of ${JSON.stringify(shape)} cost ${cost}`, { found: actual, wanted: expected });
      }
    }
  }
  t.equal(mismatches, 0, `${decisions} decisions identical`);
});

/**
 * A deliberately simple token budget (overdraft) and report, in the same
 * BigInt terms: a check passes while the balance is above zero; a charge is
 * always recorded and may take the balance below zero; refills pay the debt
 * first. A report's charge on an ordinary bucket takes what is there.
 */
class ReferenceBudget {
  private scaled: bigint; // tokens * unitUs, possibly negative
  private lastUs: bigint | undefined;
  constructor(private readonly rpu: bigint, private readonly burst: bigint, private readonly unitUs: bigint, private readonly overdraft: boolean) {
    this.scaled = burst * unitUs;
  }
  hit(nowUs: number, cost: number) {
    const now = BigInt(nowUs);
    const cap = this.burst * this.unitUs;
    if (this.lastUs !== undefined && now > this.lastUs) {
      const refilled = this.scaled + (now - this.lastUs) * this.rpu;
      this.scaled = refilled > cap ? cap : refilled;
    }
    this.lastUs = now;
    const need = BigInt(cost) * this.unitUs;
    const ceilDiv = (a: bigint, b: bigint) => (a + b - 1n) / b;
    const before = this.scaled;
    let allowed: boolean;
    let retryAfterUs = 0n;
    if (this.overdraft) {
      allowed = before > 0n;
      this.scaled -= need;
      if (!allowed) retryAfterUs = -this.scaled / this.rpu + 1n;
    } else {
      // Only reports reach here: whole when it fits, else down to empty.
      allowed = need <= before;
      this.scaled = allowed ? before - need : 0n;
      if (!allowed) retryAfterUs = ceilDiv((need > cap ? cap : need) - before, this.rpu);
    }
    const outcome: Record<string, unknown> = {
      allowed,
      remaining: Number(this.scaled > 0n ? this.scaled / this.unitUs : 0n),
      resetUs: Number(ceilDiv(cap - this.scaled, this.rpu)),
      retryAfterUs: Number(retryAfterUs),
    };
    if (this.overdraft && this.scaled <= 0n) outcome.debt = Number(ceilDiv(-this.scaled, this.unitUs));
    return outcome;
  }
}

t.test('token budgets and reports decide exactly as a simple reference model (random costs and time steps)', async (t) => {
  let seed = 19;
  const random = () => {
    seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
    return seed / 2 ** 32;
  };
  const shapes = [
    { rpu: 10, unit: 'second', burst: 20, overdraft: true },
    { rpu: 7, unit: 'minute', burst: 13, overdraft: true },
    { rpu: 3600, unit: 'hour', burst: 3600, overdraft: true },
    { rpu: 10, unit: 'second', burst: 20, overdraft: false },
    { rpu: 7, unit: 'minute', burst: 13, overdraft: false },
  ] as const;
  let decisions = 0;
  let mismatches = 0;
  let inDebt = 0;
  for (const shape of shapes) {
    const limit = compileLimit({ requestsPerUnit: shape.rpu, unit: shape.unit, burst: shape.burst, overdraft: shape.overdraft });
    t.equal(limit.tickUs, 1, 'these shapes run at micro-second resolution');
    let now = 1_700_000_000_000_000;
    const store = new MemoryStore({ maxKeys: 1_000_000, clock: () => now, sweep: false });
    const reference = new ReferenceBudget(BigInt(shape.rpu), BigInt(shape.burst), BigInt(limit.unitUs), shape.overdraft);
    for (let i = 0; i < 3000; i++) {
      now += random() < 0.05 ? Math.floor(random() * limit.unitUs * 2) : Math.floor(random() * (limit.unitUs / shape.rpu) * 1.5);
      // Budgets: checks (cost 0) and charges up to twice the burst, through the request path or a report.
      const cost = shape.overdraft && random() < 0.4 ? 0 : Math.floor(random() * (2 * shape.burst + 3));
      const report = !shape.overdraft || random() < 0.3;
      const [actual] = store.applySync([{ ...op(limit, cost), ...(report ? { report: true as const } : {}) }]);
      const expected = reference.hit(now, cost);
      decisions++;
      if (expected.debt !== undefined) inDebt++;
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        mismatches++;
        if (mismatches < 5) t.fail(`step ${i} of ${JSON.stringify(shape)} cost ${cost} report ${report}`, { found: actual, wanted: expected });
      }
    }
  }
  t.ok(inDebt > decisions / 10, `the sequences go into debt (${inDebt} of ${decisions})`);
  t.equal(mismatches, 0, `${decisions} decisions identical`);
});

/**
 * A deliberately simple sliding window: BigInt, hits kept per window index,
 * weights in µs (time into the window rounded down to the limit's tick, as
 * specified), and retry-after found by bisection over time rather than by a
 * formula. If the real implementation agrees on random costs and time steps,
 * its tick-scaled closed forms are right.
 */
class ReferenceSlidingWindow {
  private readonly counts = new Map<bigint, bigint>();
  constructor(private readonly max: bigint, private readonly windowUs: bigint, private readonly tickUs: bigint) {}

  private usageAt(now: bigint, extra: bigint): bigint {
    const index = now / this.windowUs;
    const elapsed = ((now - index * this.windowUs) / this.tickUs) * this.tickUs;
    const prev = this.counts.get(index - 1n) ?? 0n;
    const cur = this.counts.get(index) ?? 0n;
    return prev * (this.windowUs - elapsed) + (cur + extra) * this.windowUs;
  }

  hit(nowUs: number, cost: number) {
    const now = BigInt(nowUs);
    const n = BigInt(cost);
    const W = this.windowUs;
    const index = now / W;
    const fits = (at: bigint) => this.usageAt(at, n) <= this.max * W;
    const allowed = fits(now);
    if (allowed && n > 0n) this.counts.set(index, (this.counts.get(index) ?? 0n) + n);
    const cur = this.counts.get(index) ?? 0n;
    const prev = this.counts.get(index - 1n) ?? 0n;
    const free = this.max * W - this.usageAt(now, 0n);
    let retryAfterUs = 0n;
    if (!allowed) {
      if (n > this.max) {
        retryAfterUs = W;
      } else {
        // Usage only falls with time: bisect for the first instant the cost fits.
        let lo = now;
        let hi = (index + 2n) * W;
        while (lo < hi) {
          const mid = (lo + hi) / 2n;
          if (fits(mid)) hi = mid;
          else lo = mid + 1n;
        }
        retryAfterUs = lo - now;
      }
    }
    return {
      allowed,
      remaining: Number(free > 0n ? free / W : 0n),
      resetUs: Number(cur > 0n ? (index + 2n) * W - now : prev > 0n ? (index + 1n) * W - now : 0n),
      retryAfterUs: Number(retryAfterUs),
    };
  }
}

t.test('sliding windows decide exactly as a BigInt reference model (random costs and time steps)', async (t) => {
  let seed = 7;
  const random = () => {
    seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
    return seed / 2 ** 32;
  };
  const shapes = [
    { rpu: 10, unit: 'second', multiplier: 1, tickUs: 1 },
    { rpu: 7, unit: 'minute', multiplier: 1, tickUs: 1 },
    { rpu: 100, unit: 'minute', multiplier: 5, tickUs: 1 },
    { rpu: 3, unit: 'hour', multiplier: 1, tickUs: 1 },
    { rpu: 1_000_000, unit: 'day', multiplier: 1, tickUs: 1_000 },
    { rpu: 10_000_000, unit: 'year', multiplier: 1, tickUs: 1_000_000 },
  ] as const;
  let decisions = 0;
  let mismatches = 0;
  let denials = 0;
  for (const shape of shapes) {
    const limit = compileLimit({
      requestsPerUnit: shape.rpu, unit: shape.unit, unitMultiplier: shape.multiplier, algorithm: 'sliding_window',
    });
    t.equal(limit.tickUs, shape.tickUs, `${limit.fingerprint} runs at a ${shape.tickUs} µs tick`);
    // Start at a random instant (not at a window edge); the epoch aligns the windows.
    let now = 1_700_000_000_000_000 + Math.floor(random() * limit.unitUs);
    const store = new MemoryStore({ maxKeys: 1_000_000, clock: () => now, sweep: false });
    const reference = new ReferenceSlidingWindow(BigInt(shape.rpu), BigInt(limit.unitUs), BigInt(limit.tickUs));
    for (let i = 0; i < 3000; i++) {
      // Mostly steps of a fraction of the window (and inside one tick), sometimes whole windows.
      const roll = random();
      now += roll < 0.05 ? Math.floor(random() * limit.unitUs * 3) : roll < 0.15 ? Math.floor(random() * limit.tickUs) : Math.floor(random() * (limit.unitUs / 15));
      // Costs: mostly a small share of the limit, sometimes up to just above it.
      const cost = random() < 0.1 ? Math.floor(random() * (shape.rpu + 3)) : Math.floor(random() * Math.max(2, shape.rpu / 4));
      const [actual] = store.applySync([op(limit, cost)]);
      const expected = reference.hit(now, cost);
      decisions++;
      if (!expected.allowed) denials++;
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        mismatches++;
        if (mismatches < 5) t.fail(`step ${i} of ${limit.fingerprint} cost ${cost}`, { found: actual, wanted: expected });
      }
    }
  }
  t.ok(denials > decisions / 10, `the sequences exercise denials (${denials} of ${decisions})`);
  t.equal(mismatches, 0, `${decisions} decisions identical`);
});
