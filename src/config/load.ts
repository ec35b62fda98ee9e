// Reads `--config` (a file, or a directory of *.yaml / *.yml, one domain each),
// validates every file against the schema and compiles it. Any problem throws
// ConfigError naming the file, the path inside it and what is wrong.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { ConfigError, errorMessage } from '../errors.js';
import type { CompiledConfig, CompiledDomain } from '../core/config-model.js';
import { compileDomain } from './compile-domain.js';
import { describeIssues } from './describe-issue.js';
import { configFileSchema } from './schema.js';

/** One config file's text, read before anything is compiled (the watcher compares these). */
export interface ConfigSource {
  file: string;
  text: string;
}

const CONFIG_FILE_PATTERN = /\.ya?ml$/i;

function systemProblem(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'cannot read: no such file or directory';
  if (code === 'EACCES') return 'cannot read: permission denied';
  return `cannot read: ${errorMessage(error)}`;
}

/** The config files under `path` in name order; dot-files (Kubernetes' `..data`) are skipped. */
export function listConfigFiles(path: string): string[] {
  let isDirectory: boolean;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch (error: unknown) {
    throw new ConfigError(path, '', systemProblem(error));
  }
  if (!isDirectory) return [path];
  let names: string[];
  try {
    names = readdirSync(path);
  } catch (error: unknown) {
    throw new ConfigError(path, '', systemProblem(error));
  }
  const files = names
    .filter((name) => !name.startsWith('.') && CONFIG_FILE_PATTERN.test(name))
    .sort()
    .map((name) => join(path, name))
    .filter((file) => {
      try {
        return statSync(file).isFile(); // follows symlinks, as a ConfigMap mount needs
      } catch {
        return false; // a dangling symlink mid-swap: not a config file (yet)
      }
    });
  if (files.length === 0) {
    throw new ConfigError(path, '', 'no *.yaml or *.yml files in this directory');
  }
  return files;
}

export function readConfigSources(path: string): ConfigSource[] {
  return listConfigFiles(path).map((file) => {
    try {
      return { file, text: readFileSync(file, 'utf8') };
    } catch (error: unknown) {
      throw new ConfigError(file, '', systemProblem(error));
    }
  });
}

/** Fields that are strings in the format even when YAML reads `value: 200` as a number. */
const STRING_FIELDS = new Set([
  'domain', 'key', 'value', 'name', 'header_name', 'descriptor_key', 'descriptor_value', 'query_parameter_name',
]);

/**
 * Gives string fields their text as written (`value: 1.50` is "1.50", not 1.5),
 * as envoyproxy/ratelimit's YAML decoder does, so such configs load unchanged.
 */
function keepStringFieldsAsWritten(node: unknown): void {
  if (isSeq(node)) {
    for (const item of node.items) keepStringFieldsAsWritten(item);
    return;
  }
  if (!isMap(node)) return;
  for (const pair of node.items) {
    if (!isPair(pair) || !isScalar(pair.key)) continue;
    const name = pair.key.value;
    if (name === 'metadata') continue; // free-form, left exactly as parsed
    const value = pair.value;
    if (typeof name === 'string' && STRING_FIELDS.has(name) && isScalar(value)
      && (typeof value.value === 'number' || typeof value.value === 'boolean') && value.source !== undefined) {
      value.value = value.source;
    } else {
      keepStringFieldsAsWritten(value);
    }
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** Parses, validates and compiles one file. Throws ConfigError. */
export function compileSource(source: ConfigSource): CompiledDomain {
  const { file, text } = source;
  const lineCounter = new LineCounter();
  // `merge`: envoyproxy/ratelimit's YAML decoder honours `<<: *anchor`, so we do too.
  const document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true });
  const syntaxError = document.errors[0];
  if (syntaxError !== undefined) {
    const at = lineCounter.linePos(syntaxError.pos[0]);
    throw new ConfigError(file, '', `invalid YAML at line ${at.line}, column ${at.col}: ${syntaxError.message}`);
  }
  if (document.contents === null) {
    throw new ConfigError(file, '', 'the file is empty (expected a mapping with domain and descriptors)');
  }
  keepStringFieldsAsWritten(document.contents as YamlNode);
  let plain: unknown;
  try {
    plain = document.toJS();
  } catch (error: unknown) {
    // e.g. an alias expanding too many times ("billion laughs")
    throw new ConfigError(file, '', `invalid YAML: ${errorMessage(error)}`);
  }
  const parsed = configFileSchema.safeParse(plain);
  if (!parsed.success) {
    const { path, problem } = describeIssues(parsed.error.issues);
    throw new ConfigError(file, path, problem);
  }
  return compileDomain(file, parsed.data, deepFreeze(plain));
}

/** Compiles already-read sources into one config. Throws ConfigError (also for a domain defined twice). */
export function compileSources(path: string, sources: readonly ConfigSource[], loadedAtMs = Date.now()): CompiledConfig {
  const domains = new Map<string, CompiledDomain>();
  for (const source of sources) {
    const domain = compileSource(source);
    const earlier = domains.get(domain.name);
    if (earlier !== undefined) {
      throw new ConfigError(source.file, 'domain', `duplicate domain "${domain.name}" (already defined in ${earlier.source})`);
    }
    domains.set(domain.name, domain);
  }
  return Object.freeze({ domains, source: path, loadedAtMs });
}

/**
 * Loads `path` (a file, or a directory of *.yaml / *.yml files, one domain per
 * file). Throws ConfigError whose message names the file, the path inside it
 * and the problem, e.g.
 * `bad.yaml: descriptors[0].rate_limit.unit: unknown unit "fortnight" (expected second, ...)`.
 */
export function loadConfig(path: string): CompiledConfig {
  return compileSources(path, readConfigSources(path));
}

/** For `check-config`: the domains `path` defines, in name order. Throws ConfigError like loadConfig. */
export function checkConfig(path: string): { source: string; domains: string[] } {
  const config = loadConfig(path);
  return { source: path, domains: [...config.domains.keys()].sort() };
}
