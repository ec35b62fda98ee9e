// Inspect and reset with the memory store: the admin listener shows the
// server's own buckets; the CLI, a process of its own, sees only empty ones.
import t from 'tap';
import { badInput, inspectAndReset } from './scenario.js';

// A hang guard for the whole file (real servers, Redis and CLI processes on a shared machine), not a timing assertion.
t.setTimeout(600_000);

await t.test('memory store: inspect shows, reset empties, through the admin listener; the CLI works on its own buckets', async (t) => {
  await inspectAndReset(t, { storeArgs: ['--store', 'memory'], shared: false });
});

await t.test('memory store: bad bodies are 400 naming the field, bad command lines exit 2', async (t) => {
  await badInput(t, { storeArgs: ['--store', 'memory'] });
});
