// Turns a schema violation into the one line an operator reads at start-up or in
// `check-config`: the path inside the file and what is wrong, in config words.
import type { z } from 'zod';
import { KNOWN_KEYS, HTTP_ACTION_NAMES, type ObjectKind } from './schema.js';

type Issue = z.core.$ZodIssue;
type PathSegment = PropertyKey;

/** `descriptors[2].rate_limit.unit`, `http.descriptors[0][1].request_headers`. */
export function formatPath(path: readonly PathSegment[]): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else text += text === '' ? String(segment) : `.${String(segment)}`;
  }
  return text;
}

/** The inverse of formatPath: `descriptors[2].rate_limit.burst` → ['descriptors', 2, 'rate_limit', 'burst']. */
export function parsePath(text: string): (string | number)[] {
  return [...text.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!));
}

/** Which kind of object sits at `path`, so an unknown key can be compared with the right key list. */
function objectKindAt(path: readonly PathSegment[]): ObjectKind | undefined {
  const n = path.length;
  if (n === 0) return 'file';
  const last = path[n - 1];
  const parent = path[n - 2];
  if (path[0] === 'http') {
    if (n === 1) return 'http';
    if (n === 4) return 'action';
    if (n === 5 && typeof last === 'string' && (HTTP_ACTION_NAMES as readonly string[]).includes(last)) {
      return last as ObjectKind;
    }
    return undefined;
  }
  if (last === 'rate_limit') return 'rate_limit';
  if (typeof last === 'number' && parent === 'rate_limits') return 'rate_limit';
  if (typeof last === 'number' && parent === 'replaces') return 'replaces';
  if (typeof last === 'number' && parent === 'descriptors') return 'descriptor';
  return undefined;
}

/** Edit distance where swapping two neighbours counts as one typo (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const above = rows[i - 1]!;
      let best = Math.min(above[j]! + 1, row[j - 1]! + 1, above[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      row.push(best);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}

/** The known key a misspelling most likely meant: same letters ignoring case and `_`/`-`, or a few typos away. */
export function closestKey(unknown: string, known: readonly string[]): string | undefined {
  const squash = (key: string): string => key.toLowerCase().replace(/[_-]/g, '');
  const same = known.find((key) => squash(key) === squash(unknown));
  if (same !== undefined) return same;
  const tolerance = Math.max(1, Math.min(4, Math.floor(unknown.length / 4)));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const key of known) {
    const distance = editDistance(unknown.toLowerCase(), key);
    if (distance <= tolerance && distance < bestDistance) {
      best = key;
      bestDistance = distance;
    }
  }
  return best;
}

function unknownKeyProblem(kind: ObjectKind | undefined, key: string): string {
  if (kind === 'action') {
    return `unknown action (supported: ${HTTP_ACTION_NAMES.join(', ')})`;
  }
  // The two places operators confuse: settings of the node vs settings of its limit.
  if (kind === 'descriptor' && KNOWN_KEYS.rate_limit.includes(key)) {
    return 'not allowed here (it belongs inside rate_limit)';
  }
  if (kind === 'rate_limit' && KNOWN_KEYS.descriptor.includes(key)) {
    return 'not allowed here (it belongs on the descriptor, next to rate_limit)';
  }
  if (kind === 'file' && KNOWN_KEYS.descriptor.includes(key)) {
    return 'not allowed at the top level (it belongs on an entry of descriptors)';
  }
  if (kind === undefined) return 'unknown key';
  const known = KNOWN_KEYS[kind];
  if (known.length === 0) return 'unknown key (this mapping takes no keys: write {})';
  const guess = closestKey(key, known);
  return guess === undefined
    ? `unknown key (expected ${known.join(', ')})`
    : `unknown key (did you mean "${guess}"?)`;
}

export interface IssueDescription {
  /** Inside the file, e.g. `descriptors[0].rate_limit.unit`; '' for the whole file. */
  path: string;
  problem: string;
}

function isMissingField(issue: Issue): boolean {
  return issue.message === 'is required' || issue.message.startsWith('is required ');
}

/** Segments of a path as written in a message, for prefix comparisons. */
function segments(path: readonly PathSegment[]): string[] {
  return path.map((segment) => String(segment));
}

function startsWith(path: readonly string[], prefix: readonly string[]): boolean {
  return prefix.length <= path.length && prefix.every((segment, i) => path[i] === segment);
}

/**
 * Every problem of one file, one per unknown key, unknown keys first (they
 * usually explain what follows), otherwise in the order zod found them. What
 * an unknown key explains is left out: an "is required" next to it (a
 * misspelled `requests_per_unit` also makes it missing) or below it under
 * its name (a `unit` written on the descriptor leaves `rate_limit.unit`
 * missing), and a complaint about the object itself (an action whose only
 * key is unknown has no type).
 */
export function describeAllIssues(issues: readonly Issue[]): IssueDescription[] {
  const unknowns: { at: string[]; keys: string[] }[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') unknowns.push({ at: segments(issue.path), keys: issue.keys });
  }
  const explained = (issue: Issue): boolean => {
    const path = segments(issue.path);
    return unknowns.some(({ at, keys }) => {
      if (!startsWith(path, at)) return false;
      if (path.length === at.length) return issue.code === 'custom';
      if (!isMissingField(issue)) return false;
      return path.length === at.length + 1 || keys.includes(path[path.length - 1]!);
    });
  };
  const unknown: IssueDescription[] = [];
  const other: IssueDescription[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        unknown.push({ path: formatPath([...issue.path, key]), problem: unknownKeyProblem(objectKindAt(issue.path), key) });
      }
    } else if (!explained(issue)) {
      other.push({ path: formatPath(issue.path), problem: issue.message });
    }
  }
  const described = [...unknown, ...other];
  return described.length === 0 ? [{ path: '', problem: 'invalid' }] : described;
}
