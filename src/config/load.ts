// Reads `--config` (a file, or a directory of *.yaml / *.yml, one domain each),
// validates every file against the schema and compiles it. Problems throw one
// ConfigError listing every problem of every file, each naming the file, the
// path inside it and what is wrong.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, type Node as YamlNode } from 'yaml';
import { ConfigError, InternalError, errorMessage, type ConfigProblem } from '../errors.js';
import type { CompiledConfig, CompiledDomain } from '../core/config-model.js';
import { compileDomain, compileDomainSteps, type CompileSteps, type ValidatedFile } from './compile-domain.js';
import { describeAllIssues } from './describe-issue.js';
import { locate, type Position } from './locate.js';
import { BOOLEAN_FIELDS, configFileSchema } from './schema.js';
import { problemsBeyondSchema } from './valid-parts.js';

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

/** What sources say, in a few bytes: equal for equal names and texts (the watcher compares these). */
export function sourcesSignature(sources: readonly ConfigSource[]): string {
  const hash = createHash('sha256');
  for (const { file, text } of sources) hash.update(`${file}\u0000${text.length}\u0000`).update(text);
  return hash.digest('base64url');
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
 * YAML 1.1's booleans (yaml.org/type/bool.html) beyond YAML 1.2's
 * true/false: envoyproxy/ratelimit's decoder (go-yaml v2) reads `yes`, `on`,
 * `y`... as true into its boolean fields.
 */
const YAML_1_1_TRUE = /^(?:y|Y|yes|Yes|YES|on|On|ON)$/;
const YAML_1_1_FALSE = /^(?:n|N|no|No|NO|off|Off|OFF)$/;

/**
 * Reads scalars as envoyproxy/ratelimit's YAML decoder (go-yaml v2) does, so
 * its configs load unchanged: a string field keeps its text as written
 * (`value: 1.50` is "1.50", `value: yes` is "yes"), and an unquoted YAML 1.1
 * boolean in a boolean field is that boolean (`shadow_mode: yes`). The rest
 * of the file is read as YAML 1.2 (`yes` stays a string elsewhere, `010` is ten).
 */
function readScalarsAsEnvoyRatelimit(node: unknown): void {
  if (isSeq(node)) {
    for (const item of node.items) readScalarsAsEnvoyRatelimit(item);
    return;
  }
  if (!isMap(node)) return;
  for (const pair of node.items) {
    if (!isPair(pair) || !isScalar(pair.key)) continue;
    const name = pair.key.value;
    if (name === 'metadata' || typeof name !== 'string') continue; // metadata: free-form, left exactly as parsed
    const value = pair.value;
    if (!isScalar(value)) {
      readScalarsAsEnvoyRatelimit(value);
    } else if (STRING_FIELDS.has(name)
      && (typeof value.value === 'number' || typeof value.value === 'boolean') && value.source !== undefined) {
      value.value = value.source;
    } else if (BOOLEAN_FIELDS.has(name) && value.type === 'PLAIN' && typeof value.value === 'string') {
      if (YAML_1_1_TRUE.test(value.value)) value.value = true;
      else if (YAML_1_1_FALSE.test(value.value)) value.value = false;
    }
  }
}

/** Freezes `value` and everything in it (a file's document: GET /v1/config hands it out as it is). */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

export interface LoadOptions {
  /**
   * envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG: files naming the same domain
   * are joined into one (their top-level descriptors must differ). Without
   * it a domain defined twice is an error.
   */
  mergeDomains?: boolean;
}

/** One file parsed and checked: the validated file or its problems, and where a path of it is written. */
interface CheckedSource {
  validated: ValidatedFile | undefined;
  problems: ConfigProblem[];
  where(path: string): Position | undefined;
}

/**
 * Parses and validates one file: the validated file, or its problems (every
 * schema problem; of YAML syntax errors only the first, as later ones are
 * mostly its echoes).
 */
function validateSource(source: ConfigSource): CheckedSource {
  const { file, text } = source;
  const lineCounter = new LineCounter();
  const nowhere = (): undefined => undefined;
  const failed = (what: string, at?: Position): CheckedSource =>
    ({ validated: undefined, problems: [{ file, path: '', problem: what, ...at }], where: nowhere });
  const position = (offset: number): Position => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  // `merge`: envoyproxy/ratelimit's YAML decoder honours `<<: *anchor`, so we do too.
  const documents = Array.from(parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true }));
  for (const document of documents) {
    const syntaxError = document.errors[0];
    if (syntaxError !== undefined) return failed(`invalid YAML: ${syntaxError.message}`, position(syntaxError.pos[0]));
  }
  const filled = documents.filter((document) => document.contents !== null);
  const document = filled[0];
  if (document === undefined) return failed('the file is empty (expected a mapping with domain and descriptors)');
  if (filled.length > 1) {
    return failed(`holds ${filled.length} YAML documents (a "---" line starts another one); write one domain per file`,
      position(filled[1]!.range[0]));
  }
  readScalarsAsEnvoyRatelimit(document.contents as YamlNode);
  const where = (path: string): Position | undefined => locate(document, lineCounter, path);
  let plain: unknown;
  try {
    plain = document.toJS();
  } catch (error: unknown) {
    // e.g. an alias expanding too many times ("billion laughs")
    return failed(`invalid YAML: ${errorMessage(error)}`);
  }
  const parsed = configFileSchema.safeParse(plain);
  if (!parsed.success) {
    const problems = [
      ...describeAllIssues(parsed.error.issues).map(({ path, problem: what }) => ({ file, path, problem: what })),
      ...problemsBeyondSchema(file, plain, parsed.error.issues),
    ];
    return { validated: undefined, problems, where };
  }
  const frozen = deepFreeze(plain);
  return { validated: { file, config: parsed.data, readDocument: () => frozen }, problems: [], where };
}

/** A config that compiled, and the validated files of each domain it came from. */
interface Checked {
  config: CompiledConfig;
  domains: ValidatedFile[][];
}

function compileChecked(path: string, sources: readonly ConfigSource[], options: LoadOptions): Checked {
  const problems: ConfigProblem[] = [];
  const byDomain = new Map<string, ValidatedFile[]>();
  const whereIn = new Map<string, CheckedSource['where']>();
  for (const source of sources) {
    const { validated, problems: found, where } = validateSource(source);
    whereIn.set(source.file, where);
    problems.push(...found);
    if (validated === undefined) continue;
    const files = byDomain.get(validated.config.domain);
    if (files === undefined) {
      byDomain.set(validated.config.domain, [validated]);
    } else if (options.mergeDomains === true) {
      files.push(validated);
    } else {
      problems.push({
        file: source.file, path: 'domain',
        problem: `duplicate domain "${validated.config.domain}" (already defined in ${files[0]!.file}; --merge-domains joins such files)`,
      });
    }
  }
  const domains = new Map<string, CompiledDomain>();
  for (const [name, files] of byDomain) {
    const domain = compileDomain(files, problems);
    if (domain !== undefined) domains.set(name, domain);
  }
  if (problems.length > 0) {
    throw new ConfigError(problems.map((problem) =>
      (problem.line !== undefined ? problem : { ...problem, ...whereIn.get(problem.file)?.(problem.path) })));
  }
  return { config: Object.freeze({ domains, source: path, loadedAtMs: Date.now() }), domains: [...byDomain.values()] };
}

/**
 * Compiles already-read sources into one config. Throws one ConfigError with
 * every problem of every file (a domain defined twice without mergeDomains
 * included), each with its line and column where the file could be parsed.
 */
export function compileSources(path: string, sources: readonly ConfigSource[], options: LoadOptions = {}): CompiledConfig {
  return compileChecked(path, sources, options).config;
}

/**
 * Checks sources as compileSources does (throwing the same ConfigError) and
 * returns each domain's validated files: what compileValidatedSteps builds
 * the same config from, elsewhere (a reload checks in a worker thread).
 */
export function validateSources(path: string, sources: readonly ConfigSource[], options: LoadOptions = {}): ValidatedFile[][] {
  return compileChecked(path, sources, options).domains;
}

/**
 * Compiles what validateSources returned, in steps (see CompileSteps): the
 * config compileSources would have returned (the files are already grouped
 * by domain as the load options said), its descriptor nodes compiled on
 * first use (CompileMode 'lazy'). A problem it finds is an InternalError:
 * validation should have found it.
 */
export function* compileValidatedSteps(
  path: string,
  validated: readonly (readonly ValidatedFile[])[],
): CompileSteps<CompiledConfig> {
  const problems: ConfigProblem[] = [];
  const domains = new Map<string, CompiledDomain>();
  for (const files of validated) {
    const domain = yield* compileDomainSteps(files, problems, 'lazy');
    if (domain !== undefined) domains.set(domain.name, domain);
  }
  if (problems.length > 0) throw new InternalError(`a checked config failed to compile: ${new ConfigError(problems).message}`);
  return Object.freeze({ domains, source: path, loadedAtMs: Date.now() });
}

/**
 * Loads `path` (a file, or a directory of *.yaml / *.yml files, one domain per
 * file unless `mergeDomains`). Throws ConfigError whose message has one line
 * per problem, each naming the file, the line and column, the path inside it
 * and the problem, e.g.
 * `bad.yaml:7:9: descriptors[0].rate_limit.unit: unknown unit "fortnight" (expected second, ...)`.
 */
export function loadConfig(path: string, options: LoadOptions = {}): CompiledConfig {
  return compileSources(path, readConfigSources(path), options);
}

/** For `check-config`: the domains `path` defines, in name order. Throws ConfigError like loadConfig. */
export function checkConfig(path: string, options: LoadOptions = {}): { source: string; domains: string[] } {
  const config = loadConfig(path, options);
  return { source: path, domains: [...config.domains.keys()].sort() };
}
