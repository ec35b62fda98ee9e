// Inspect and reset with the memory store: the admin listener shows the
// server's own buckets; the CLI, a process of its own, sees only empty ones.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { badInput, inspectAndReset, post, startServer, type InspectAnswer } from './scenario.js';

// A hang guard for the whole file (real servers, Redis and CLI processes on a shared machine), not a timing assertion.
t.setTimeout(600_000);

await t.test('memory store: inspect shows, reset empties, through the admin listener; the CLI works on its own buckets', async (t) => {
  await inspectAndReset(t, { storeArgs: ['--store', 'memory'], shared: false });
});

await t.test('memory store: bad bodies are 400 naming the field, bad command lines exit 2', async (t) => {
  await badInput(t, { storeArgs: ['--store', 'memory'] });
});

await t.test('a token budget in debt: inspect shows limit_remaining 0 and the debt; reset clears it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rl-admin-budget-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'budget.yaml');
  writeFileSync(config, 'domain: llm\ndescriptors:\n  - key: tenant\n    rate_limit: { unit: hour, requests_per_unit: 3600, overdraft: true }\n');
  const server = await startServer(t, config, ['--store', 'memory']);
  const body = { descriptors: [{ entries: [{ key: 'tenant', value: 'acme' }], hits_addend: 5000 }] };
  const charged = await post(`${server.httpUrl}/v1/report`, body);
  t.equal(charged.status, 200, 'a report never denies');
  const check = { descriptors: [{ entries: [{ key: 'tenant', value: 'acme' }] }] };
  const inspected = await post(`${server.adminUrl}/v1/inspect`, check);
  t.equal(inspected.status, 200);
  const [status] = (inspected.json as InspectAnswer).statuses as (InspectAnswer['statuses'][number] & { debt?: number })[];
  t.equal(status?.limit_remaining, 0, 'nothing left while in debt');
  t.ok(status?.debt !== undefined && status.debt > 1395 && status.debt <= 1400, `5000 charged on 3600: at most 1400 owed (refills pay it) (${status?.debt})`);
  t.same(await post(`${server.adminUrl}/v1/reset`, check), { status: 200, json: { reset: 1 } });
  const after = (await post(`${server.adminUrl}/v1/inspect`, check)).json as InspectAnswer;
  t.equal(after.statuses[0]?.limit_remaining, 3600, 'full again: the debt is forgiven');
  t.notOk('debt' in (after.statuses[0] ?? {}), 'no debt once reset');
});
