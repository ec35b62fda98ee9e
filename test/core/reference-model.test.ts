import t from 'tap';
import { compileLimit } from '../../src/core/limit.js';
import type { BucketOp, LimitSpec } from '../../src/core/types.js';
import { MemoryStore } from '../../src/store/memory-store.js';

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
