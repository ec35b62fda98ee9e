// Real files in a temp dir; waits poll for a condition with a deadline, never a fixed sleep.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CompiledConfig } from '../../../src/core/config-model.js';
import { ConfigWatcher, type ConfigWatcherOptions, type ReloadReason } from '../../../src/config/watch.js';
import { exactKey } from '../../../src/core/rules.js';
import { ConfigError } from '../../../src/errors.js';
import { bigConfigYaml } from '../../helpers/big-config.js';

const DEADLINE_MS = 20_000;
const FAST: ConfigWatcherOptions = { debounceMs: 20, pollIntervalMs: 0 };

function config(domain: string, requestsPerUnit: number): string {
  return `domain: ${domain}\ndescriptors:\n  - key: api_key\n    rate_limit: { unit: second, requests_per_unit: ${requestsPerUnit} }\n`;
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Lets timers and fs events that are due run; used only to show something did NOT happen. */
async function settle(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

function rateOf(current: CompiledConfig, domain = 'shop'): number | undefined {
  return current.domains.get(domain)?.root.keyOnly.get('api_key')?.rule?.limits[0]?.spec.requestsPerUnit;
}

interface Harness {
  dir: string;
  file: string;
  watcher: ConfigWatcher;
  reloads: { config: CompiledConfig; reason: ReloadReason }[];
  errors: { error: unknown; reason: ReloadReason }[];
}

function harness(t: Test, options: ConfigWatcherOptions = FAST, layout: 'file' | 'dir' = 'file'): Harness {
  const dir = mkdtempSync(join(tmpdir(), 'rl-watch-'));
  const file = join(dir, 'shop.yaml');
  writeFileSync(file, config('shop', 1));
  const reloads: Harness['reloads'] = [];
  const errors: Harness['errors'] = [];
  const watcher = new ConfigWatcher(layout === 'file' ? file : dir, {
    onReload: (config, reason) => reloads.push({ config, reason }),
    onReloadError: (error, reason) => errors.push({ error, reason }),
  }, options);
  t.teardown(() => {
    watcher.close();
    rmSync(dir, { recursive: true, force: true });
  });
  watcher.start();
  return { dir, file, watcher, reloads, errors };
}

t.test('an invalid config at start-up throws ConfigError', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rl-watch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, 'domain: shop\ndescriptors: [ { key: "" } ]\n');
  t.throws(() => new ConfigWatcher(file, { onReload: () => {}, onReloadError: () => {} }),
    new ConfigError([{ file, path: 'descriptors[0].key', problem: 'must not be empty', line: 2, column: 18 }]));
});

t.test('an edited file is reloaded', async (t) => {
  const h = harness(t);
  t.equal(rateOf(h.watcher.current()), 1);
  writeFileSync(h.file, config('shop', 2));
  await until(() => h.reloads.length === 1, 'the reload');
  t.equal(h.reloads[0]?.reason, 'file');
  t.equal(h.reloads[0]?.config, h.watcher.current(), 'the callback gets the config now in force');
  t.equal(rateOf(h.watcher.current()), 2);
  t.same(h.errors, []);
});

t.test('a broken edit keeps the old config and reports the error; fixing it reloads', async (t) => {
  const h = harness(t);
  const before = h.watcher.current();
  writeFileSync(h.file, config('shop', 3).replace('second', 'fortnight'));
  await until(() => h.errors.length === 1, 'the reload error');
  const { error, reason } = h.errors[0]!;
  t.equal(reason, 'file');
  t.ok(error instanceof ConfigError);
  t.match((error as Error).message, `${h.file}:4:19: descriptors[0].rate_limit.unit: unknown unit "fortnight"`);
  t.equal(h.watcher.current(), before, 'the old config stays in force');
  t.same(h.reloads, []);

  writeFileSync(h.file, config('shop', 4));
  await until(() => h.reloads.length === 1, 'the reload after the fix');
  t.equal(rateOf(h.watcher.current()), 4);
  t.equal(h.errors.length, 1);
});

t.test('reverting a broken edit to the config in force is reported as a reload', async (t) => {
  const h = harness(t);
  writeFileSync(h.file, 'domain: [');
  await until(() => h.errors.length === 1, 'the reload error');
  writeFileSync(h.file, config('shop', 1));
  await until(() => h.reloads.length === 1, 'the reload after the revert');
  t.equal(rateOf(h.watcher.current()), 1);
});

t.test('after a reload the document (GET /v1/config) is the new file as written, read once and frozen', async (t) => {
  const h = harness(t);
  writeFileSync(h.file, `${config('shop', 3)}    metadata: { owner: team-a }\n`);
  await until(() => h.reloads.length === 1, 'the reload');
  const domain = h.watcher.current().domains.get('shop')!;
  const document = domain.document;
  t.same(document, { domain: 'shop', descriptors: [{ key: 'api_key', rate_limit: { unit: 'second', requests_per_unit: 3 }, metadata: { owner: 'team-a' } }] });
  t.ok(Object.isFrozen(document) && Object.isFrozen((document as { descriptors: object[] }).descriptors[0]), 'frozen, as at start-up');
  t.equal(domain.document, document, 'parsed once: the same object on the next read');
});

t.test('reload("signal") reloads at once, even when nothing changed', async (t) => {
  const h = harness(t, { ...FAST, fsWatch: false });
  const before = h.watcher.current();
  t.equal(await h.watcher.reload('signal'), true);
  t.not(h.watcher.current(), before, 'a fresh config object');
  t.same(h.reloads.map((r) => r.reason), ['signal']);

  writeFileSync(h.file, config('shop', 7));
  t.equal(await h.watcher.reload('signal'), true);
  t.equal(rateOf(h.watcher.current()), 7);

  writeFileSync(h.file, 'domain: ""\n');
  const inForce = h.watcher.current();
  t.equal(await h.watcher.reload('signal'), false);
  t.equal(h.watcher.current(), inForce);
  t.equal(h.errors.length, 1);
  t.equal(h.errors[0]?.reason, 'signal');
  t.equal((h.errors[0]?.error as Error).message, `${h.file}:1:1: domain: must not be empty`);
});

t.test('reload("file") with unchanged content does nothing', async (t) => {
  const h = harness(t, { ...FAST, fsWatch: false });
  const before = h.watcher.current();
  t.equal(await h.watcher.reload('file'), false);
  t.equal(h.watcher.current(), before);
  t.same(h.reloads, []);
});

t.test('an editor that writes a temp file and renames it over the config is seen', async (t) => {
  const h = harness(t);
  const temp = join(h.dir, '.shop.yaml.swp');
  writeFileSync(temp, config('shop', 5));
  renameSync(temp, h.file);
  await until(() => rateOf(h.watcher.current()) === 5, 'the renamed file');
  writeFileSync(temp, config('shop', 6));
  renameSync(temp, h.file);
  await until(() => rateOf(h.watcher.current()) === 6, 'a second rename (the watch survives)');
  t.same(h.errors, []);
});

t.test('a directory: added and removed files change the domains', async (t) => {
  const h = harness(t, FAST, 'dir');
  writeFileSync(join(h.dir, 'billing.yaml'), config('billing', 9));
  await until(() => h.watcher.current().domains.has('billing'), 'the new domain');
  t.equal(rateOf(h.watcher.current(), 'billing'), 9);
  unlinkSync(join(h.dir, 'billing.yaml'));
  await until(() => !h.watcher.current().domains.has('billing'), 'the removed domain');
  t.ok(h.watcher.current().domains.has('shop'));
});

t.test('a Kubernetes ConfigMap update (..data symlink swap) is seen', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rl-watch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const mount = join(dir, 'mount');
  mkdirSync(join(mount, '..v1'), { recursive: true });
  writeFileSync(join(mount, '..v1', 'shop.yaml'), config('shop', 1));
  symlinkSync('..v1', join(mount, '..data'));
  symlinkSync(join('..data', 'shop.yaml'), join(mount, 'shop.yaml'));
  const reloads: number[] = [];
  const watcher = new ConfigWatcher(mount, {
    onReload: (config) => reloads.push(rateOf(config) ?? -1),
    onReloadError: (error) => t.fail(String(error)),
  }, FAST);
  t.teardown(() => watcher.close());
  watcher.start();
  // What the kubelet does: write a new timestamped dir, then atomically swap ..data.
  mkdirSync(join(mount, '..v2'));
  writeFileSync(join(mount, '..v2', 'shop.yaml'), config('shop', 2));
  symlinkSync('..v2', join(mount, '..data_tmp'));
  renameSync(join(mount, '..data_tmp'), join(mount, '..data'));
  rmSync(join(mount, '..v1'), { recursive: true });
  await until(() => rateOf(watcher.current()) === 2, 'the swapped config');
  t.same(reloads, [2]);
});

t.test('the stat poll catches changes fs.watch missed', async (t) => {
  const h = harness(t, { debounceMs: 10, pollIntervalMs: 30, fsWatch: false });
  writeFileSync(h.file, config('shop', 8) + '# a longer file\n');
  await until(() => rateOf(h.watcher.current()) === 8, 'the polled reload');
  t.same(h.reloads.map((r) => r.reason), ['file']);
});

t.test('the poll reports a broken state once, not on every tick', async (t) => {
  const h = harness(t, { debounceMs: 10, pollIntervalMs: 20, fsWatch: false });
  unlinkSync(h.file);
  await until(() => h.errors.length === 1, 'the error for the missing file');
  t.equal((h.errors[0]?.error as Error).message, `${h.file}: cannot read: no such file or directory`);
  await settle(100);
  t.equal(h.errors.length, 1);
  t.equal(rateOf(h.watcher.current()), 1, 'the old config stays in force');
  writeFileSync(h.file, config('shop', 2));
  await until(() => rateOf(h.watcher.current()) === 2, 'the file coming back');
});

t.test('close() stops watching: later edits are ignored', async (t) => {
  const h = harness(t, { debounceMs: 10, pollIntervalMs: 20 });
  h.watcher.close();
  writeFileSync(h.file, config('shop', 3));
  await settle(100);
  t.same(h.reloads, []);
  t.equal(rateOf(h.watcher.current()), 1);
  h.watcher.start();
  writeFileSync(h.file, config('shop', 4));
  await settle(100);
  t.same(h.reloads, [], 'a closed watcher does not start again');
});

t.test('a watcher never keeps the process alive', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rl-watch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'shop.yaml');
  writeFileSync(file, config('shop', 1));
  const module = join(import.meta.dirname, '..', '..', '..', 'src', 'config', 'watch.ts');
  const script = `import(${JSON.stringify(module)}).then(({ ConfigWatcher }) => {
    const w = new ConfigWatcher(${JSON.stringify(file)}, { onReload() {}, onReloadError() {} }, { pollIntervalMs: 50 });
    w.start();
    require('node:fs').writeFileSync(${JSON.stringify(file)}, ${JSON.stringify(config('shop', 2))});
  });`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { timeout: 20_000, encoding: 'utf8' });
  t.equal(child.error, undefined, 'exited by itself (no timeout)');
  t.equal(child.status, 0, child.stderr);
});

t.test('a reload that only compiling refuses (burst on a window) keeps the old config; --merge-domains applies on reload', async (t) => {
  const h = harness(t, { ...FAST, fsWatch: false, load: { mergeDomains: true } }, 'dir');
  writeFileSync(join(h.dir, 'more.yaml'), 'domain: shop\ndescriptors:\n  - key: user\n    rate_limit: { unit: minute, requests_per_unit: 3 }\n');
  t.equal(await h.watcher.reload('signal'), true, 'a second file of the same domain is merged');
  t.same([...h.watcher.current().domains.get('shop')!.root.keyOnly.keys()], ['user', 'api_key']);
  const inForce = h.watcher.current();
  writeFileSync(join(h.dir, 'more.yaml'), 'domain: shop\ndescriptors:\n  - key: user\n    rate_limit: { unit: minute, requests_per_unit: 3, burst: 5, algorithm: fixed_window }\n');
  t.equal(await h.watcher.reload('signal'), false);
  t.equal(h.watcher.current(), inForce, 'the old config stays in force');
  t.match((h.errors[0]?.error as Error).message,
    `${join(h.dir, 'more.yaml')}:4:`);
  t.match((h.errors[0]?.error as Error).message, 'descriptors[0].rate_limit.burst: applies only to token_bucket limits (this limit uses fixed_window)');
});

t.test('a reload of a large config does not hold the event loop: decisions meanwhile see the old config, after it the new one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rl-watch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'big.yaml');
  writeFileSync(file, bigConfigYaml(10_000));
  const watcher = new ConfigWatcher(file, { onReload: () => {}, onReloadError: (error) => t.fail(String(error)) }, { ...FAST, fsWatch: false });
  t.teardown(() => watcher.close());
  const before = watcher.current();
  writeFileSync(file, bigConfigYaml(10_000).replace('requests_per_unit: 52\n', 'requests_per_unit: 7\n'));
  const limitOf = (config: CompiledConfig): number | undefined => config.domains.get('big')?.root.exact.get(exactKey('api_key', 'key-2'))?.rule?.limits[0]?.spec.requestsPerUnit;
  t.equal(limitOf(before), 52);

  // A "decision" every timer tick while the reload runs: which config it would use.
  const seen: CompiledConfig[] = [];
  let reloading = true;
  const decide = (): void => {
    seen.push(watcher.current());
    if (reloading) setTimeout(decide, 1);
  };
  setTimeout(decide, 1);
  const reloaded = watcher.reload('signal');
  t.equal(seen.length, 0, 'reload() returns before compiling anything');
  t.equal(await reloaded, true);
  reloading = false;
  const after = watcher.current();
  t.equal(limitOf(after), 7);
  const during = seen.filter((config) => config === before).length;
  t.ok(during > 0, `${during} decisions during the reload used the old config`);
  t.same(seen.filter((config) => config !== before && config !== after), [], 'every decision saw the old or the new config, whole');
  t.equal(seen.findIndex((config) => config === after), seen.length === during ? -1 : during, 'none saw the old one after the new one');
});

t.test('asks during a reload make one more reload after it, a signal reload if any ask was a signal', async (t) => {
  const h = harness(t, { ...FAST, fsWatch: false });
  const first = h.watcher.reload('signal');
  const second = h.watcher.reload('file');
  const third = h.watcher.reload('signal');
  t.equal(second, third, 'asks during a reload share the next one');
  t.same(await Promise.all([first, second]), [true, true], 'the next one ran as a signal: it reloads unchanged files');
  t.same(h.reloads.map((r) => r.reason), ['signal', 'signal'], 'three asks, two reloads');

  const fourth = h.watcher.reload('signal');
  const fifth = h.watcher.reload('file');
  t.same(await Promise.all([fourth, fifth]), [true, false], 'a file event during a reload, files unchanged: nothing new');
  t.equal(h.reloads.length, 3);
});

t.test('close() during a reload: it ends without a callback and the old config stays', async (t) => {
  const h = harness(t, { ...FAST, fsWatch: false });
  const before = h.watcher.current();
  writeFileSync(h.file, config('shop', 3));
  const reloading = h.watcher.reload('signal');
  h.watcher.close();
  t.equal(await reloading, false);
  t.equal(h.watcher.current(), before);
  t.same(h.reloads, []);
  t.same(h.errors, []);
  t.equal(await h.watcher.reload('signal'), false, 'a closed watcher does not reload');
});
