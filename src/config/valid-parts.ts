// A file that fails the schema is still checked for everything else: the
// descriptor nodes (and top-level fields) the schema refused are dropped, the
// rest is validated again (refinements the first pass skipped, such as
// duplicate descriptors, run now) and compiled (burst on a window, duplicate
// limits, unrepresentable numbers). Every problem found is reported at its
// path in the file as written, so check-config lists them all in one run.
import type { z } from 'zod';
import type { ConfigProblem } from '../errors.js';
import { compileDomain } from './compile-domain.js';
import { describeAllIssues, formatPath, parsePath } from './describe-issue.js';
import { configFileSchema } from './schema.js';

type Issue = z.core.$ZodIssue;
type Segment = string | number;

/** Each round drops what the previous one refused; a few rounds reach every refinement. */
const MAX_ROUNDS = 4;

/** A node's identity: without a valid key and value the node itself goes (dropping only them would invent duplicates). */
const IDENTITY_FIELDS: ReadonlySet<PropertyKey> = new Set(['key', 'value']);

/**
 * What to drop for a problem at `path`: the offending field of the deepest
 * descriptor node holding it (`descriptors[2].rate_limit`, so the node's
 * children are still checked), the node itself when the fault is the node or
 * its key or value, all of `http`, or a top-level field. Undefined when
 * nothing smaller than the file can go (the domain, the list as a whole).
 */
function dropTarget(path: readonly PropertyKey[]): Segment[] | undefined {
  if (path[0] === 'http') return ['http'];
  let end = -1;
  for (let i = 1; i < path.length; i++) {
    if (path[i - 1] === 'descriptors' && typeof path[i] === 'number') end = i;
  }
  if (end >= 0) {
    const field = path[end + 1];
    const keepsNode = typeof field === 'string' && !IDENTITY_FIELDS.has(field);
    return path.slice(0, keepsNode ? end + 2 : end + 1) as Segment[];
  }
  const top = path[0];
  return typeof top === 'string' && top !== 'domain' && top !== 'descriptors' && path.length === 1 ? [top] : undefined;
}

function targetsOf(issue: Issue): (Segment[] | undefined)[] {
  if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => dropTarget([...issue.path, key]));
  return [dropTarget(issue.path)];
}

interface Pruned {
  value: unknown;
  /** A path in the pruned value → the same place in the file as written. */
  toOriginal(path: readonly PropertyKey[]): PropertyKey[];
}

function prune(original: unknown, dropped: ReadonlySet<string>): Pruned {
  /** For each `descriptors` list (by its path in the original), the original index of each kept node. */
  const keptIndices = new Map<string, number[]>();
  const build = (node: unknown, path: Segment[]): unknown => {
    if (Array.isArray(node)) {
      const isDescriptorList = path.at(-1) === 'descriptors' && path[0] !== 'http';
      const kept: number[] = [];
      const items: unknown[] = [];
      node.forEach((item, index) => {
        if (isDescriptorList && dropped.has(JSON.stringify([...path, index]))) return;
        kept.push(index);
        items.push(build(item, [...path, index]));
      });
      if (isDescriptorList) keptIndices.set(JSON.stringify(path), kept);
      return items;
    }
    if (node !== null && typeof node === 'object') {
      const copy: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(node)) {
        if (!dropped.has(JSON.stringify([...path, key]))) copy[key] = build(value, [...path, key]);
      }
      return copy;
    }
    return node;
  };
  const value = build(original, []);
  return {
    value,
    toOriginal(path) {
      const result: PropertyKey[] = [];
      for (const segment of path) {
        const kept = typeof segment === 'number' ? keptIndices.get(JSON.stringify(result)) : undefined;
        result.push(kept?.[segment as number] ?? segment);
      }
      return result;
    },
  };
}

/**
 * The problems of `plain` (which failed the schema with `issues`) that the
 * schema could not see: found in what is left after dropping what it refused.
 * Paths are those of the file as written; none repeats one of `issues`.
 */
export function problemsBeyondSchema(file: string, plain: unknown, issues: readonly Issue[]): ConfigProblem[] {
  const dropped = new Set<string>();
  const found: ConfigProblem[] = [];
  const seen = new Set(describeAllIssues(issues).map(({ path, problem }) => `${path}\u0000${problem}`));
  const add = (path: string, problem: string): void => {
    const id = `${path}\u0000${problem}`;
    if (seen.has(id)) return;
    seen.add(id);
    found.push({ file, path, problem });
  };
  let refused: readonly Issue[] = issues;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    for (const issue of refused) {
      for (const target of targetsOf(issue)) {
        if (target === undefined) return found; // the file cannot be checked further without it
        dropped.add(JSON.stringify(target));
      }
    }
    const pruned = prune(plain, dropped);
    const parsed = configFileSchema.safeParse(pruned.value);
    if (!parsed.success) {
      refused = parsed.error.issues.map((issue) => ({ ...issue, path: pruned.toOriginal(issue.path) }) as Issue);
      for (const { path, problem } of describeAllIssues(refused)) add(path, problem);
      continue;
    }
    const compileProblems: ConfigProblem[] = [];
    compileDomain([{ file, config: parsed.data, readDocument: () => pruned.value }], compileProblems);
    for (const { path, problem } of compileProblems) add(formatPath(pruned.toOriginal(parsePath(path))), problem);
    return found;
  }
  return found;
}
