/**
 * The overshoot of a token budget, measured (docs/budgets.md "Overshoot"):
 * C clients each check the budget (cost 0), do the work, then report what it
 * cost (n tokens). Once the balance is at or below zero every check is
 * denied, so what is charged past the budget is what was in flight when it
 * ran out: at most C × n. Through HTTP against one real Redis, with the
 * sidecar built by the real composition root.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startAppHarness } from '../grpc/app-harness.js';
import { startRedis } from '../../helpers/redis.js';

t.setTimeout(120_000);

const BUDGET = 20_000; // tokens a day: the refill during the run is a fraction of a token a second

const dir = mkdtempSync(join(tmpdir(), 'rl-overshoot-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const configPath = join(dir, 'llm.yaml');
writeFileSync(configPath, ['domain: llm', 'descriptors:', '  - key: tenant',
  `    rate_limit: { unit: day, requests_per_unit: ${BUDGET}, overdraft: true }`, ''].join('\n'));

const redis = await startRedis({ t });
const app = await startAppHarness(configPath, { store: 'redis', redis: redis.url });
t.teardown(() => app.close());

async function post(path: string, value: string, hits: number): Promise<{ status: number; debt?: number }> {
  const response = await fetch(`http://127.0.0.1:${app.app.httpPort}${path}`, {
    method: 'POST', body: JSON.stringify({ descriptors: [{ entries: [{ key: 'tenant', value }], hits_addend: hits }] }),
  });
  const body = await response.json() as { statuses: { debt?: number }[] };
  const debt = body.statuses[0]?.debt;
  return debt === undefined ? { status: response.status } : { status: response.status, debt };
}

for (const [clients, cost] of [[4, 500], [16, 500], [16, 2_000], [64, 500]] as const) {
  t.test(`${clients} clients, ${cost} tokens a response: the overshoot is at most ${clients} × ${cost}`, async (t) => {
    const tenant = `c${clients}-n${cost}`;
    while ((await post('/v1/check', tenant, 0)).status !== 200) await new Promise((resolve) => setTimeout(resolve, 50));
    let charged = 0;
    const client = async (): Promise<void> => {
      for (;;) {
        if ((await post('/v1/check', tenant, 0)).status !== 200) return; // the request phase: hits_addend 0
        await new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * 8)); // the upstream's work
        charged += cost;
        await post('/v1/report', tenant, cost); // the stream-done phase
      }
    };
    await Promise.all(Array.from({ length: clients }, client));
    const overshoot = charged - BUDGET;
    const { debt } = await post('/v1/check', tenant, 0);
    t.comment(`overshoot ${overshoot} tokens (${(overshoot / cost).toFixed(1)} responses) for ${clients} clients × ${cost}; bound ${clients * cost}; debt read back ${debt}`);
    t.ok(overshoot >= 0, 'the budget was spent');
    t.ok(overshoot <= clients * cost, `overshoot ${overshoot} ≤ ${clients} × ${cost}`);
    t.ok(debt !== undefined && debt <= overshoot && debt >= overshoot - 1, `Redis holds the debt of every charge: ${debt}`);
  });
}
