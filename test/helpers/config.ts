// Rules for core tests: a YAML text loaded the way the server loads a file,
// and descriptors written as key/value pairs.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { loadConfig } from '../../src/config/load.js';
import type { Descriptor } from '../../src/core/types.js';

/** `yaml` written to a temporary shop.yaml (removed at teardown) and loaded as the server would. */
export function configFromYaml(t: Pick<Test, 'teardown'>, yaml: string): ReturnType<typeof loadConfig> {
  const dir = mkdtempSync(join(tmpdir(), 'rl-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'shop.yaml'), yaml);
  return loadConfig(join(dir, 'shop.yaml'));
}

/** d('api_key', 'k1', 'path', '/x') → a descriptor with those entries in order. */
export function d(...pairs: string[]): Descriptor {
  const entries = [];
  for (let i = 0; i < pairs.length; i += 2) entries.push({ key: pairs[i]!, value: pairs[i + 1]! });
  return { entries };
}
