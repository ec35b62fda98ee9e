// Where a problem is written in its file, so check-config and the start-up
// error say `file:line:column` (what editors and terminals jump to) next to
// the path inside the file.
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter } from 'yaml';
import { parsePath } from './describe-issue.js';

/** 1-based, as editors count. */
export interface Position {
  line: number;
  column: number;
}

function startOf(node: unknown): number | undefined {
  const range = (node as { range?: readonly number[] } | null | undefined)?.range;
  return range?.[0];
}

/**
 * Where the deepest written part of `path` (as `formatPath` writes it) starts
 * in `document`: a field's key, a list item; for '' the document's content.
 * A path that goes on past what is written (a missing field, a field that a
 * `<<` merge key brought in) points at the last part that is written.
 */
export function locate(document: Document, lineCounter: LineCounter, path: string): Position | undefined {
  let node: unknown = document.contents;
  let at = startOf(node);
  for (const segment of parsePath(path)) {
    if (isAlias(node)) node = node.resolve(document);
    if (isSeq(node) && typeof segment === 'number') {
      node = node.items[segment];
      if (node === undefined) break;
      at = startOf(node) ?? at;
    } else if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
      if (pair === undefined) break;
      at = startOf(pair.key) ?? at;
      node = pair.value;
    } else {
      break;
    }
  }
  if (at === undefined) return undefined;
  const { line, col } = lineCounter.linePos(at);
  return { line, column: col };
}
