import t from 'tap';
import { compileLimit, limitSpecProblem, UNITS } from '../../../src/core/limit.js';
import { LimitSpecError } from '../../../src/errors.js';
import type { Algorithm, Unit } from '../../../src/core/types.js';

t.test('limitSpecProblem names exactly the limits compileLimit refuses', async (t) => {
  let seed = 12345;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const interesting = [0, 1, 7, 1000, 285_616_414, 300_000_000, 300_000_001, 3_474_878_367, 4_294_967_295, 2 ** 53 - 1, 2 ** 53, -1, 1.5];
  let refused = 0;
  for (let i = 0; i < 2000; i++) {
    const requestsPerUnit = i < interesting.length ? interesting[i]! : Math.floor(random() * 2 ** (random() * 40));
    const unit: Unit = UNITS[Math.floor(random() * UNITS.length)]!;
    const algorithm: Algorithm = random() < 0.8 ? 'token_bucket' : 'fixed_window';
    const burst = random() < 0.5 ? undefined : Math.floor(random() * 2 ** (random() * 45));
    const input = { requestsPerUnit, unit, burst, algorithm };
    const problem = limitSpecProblem(input);
    let thrown: string | undefined;
    try {
      compileLimit(input);
    } catch (error: unknown) {
      if (!(error instanceof LimitSpecError)) throw error;
      thrown = error.message;
    }
    if (problem !== thrown) t.fail(`${JSON.stringify(input)}: limitSpecProblem ${problem}, compileLimit ${thrown}`);
    if (problem !== undefined) refused++;
  }
  t.ok(refused > 10, `some inputs are refused (${refused})`);
});

t.test('RLS-sized overrides: where a uint32 per year or month stops being exact', async (t) => {
  t.equal(limitSpecProblem({ requestsPerUnit: 4_294_967_295, unit: 'year' }), 'burst 4294967295 is too large for a year unit');
  t.equal(limitSpecProblem({ requestsPerUnit: 300_000_001, unit: 'year' }), 'burst 300000001 is too large for a year unit');
  t.equal(limitSpecProblem({ requestsPerUnit: 300_000_000, unit: 'year' }), undefined, 'a round number shares factors with the unit');
  t.equal(limitSpecProblem({ requestsPerUnit: 4_294_967_295, unit: 'week' }), undefined);
  t.equal(limitSpecProblem({ requestsPerUnit: 4_294_967_295, unit: 'year', algorithm: 'fixed_window' }), undefined, 'a window only counts');
});
