// How validated config files cross from the reload worker to the event loop
// cheaply. A compiled config cannot be handed over whole: structured-cloning
// it costs more than compiling it again (a 10,000-descriptor config clones to
// 8 MB and took 170-500 ms to deserialize, in one piece), so the worker sends
// the validated files instead, as short JSON texts the event loop parses one
// at a time between requests. A file's descriptor tree is flattened in
// pre-order, each node with the number of its children in place of its
// `descriptors` list, so even one node with thousands of children arrives in
// small pieces.
import type { ConfigFile, DescriptorNodeConfig } from './schema.js';
import type { CompileSteps, ValidatedFile } from './compile-domain.js';

/** One validated file: its top-level fields, then its descriptor nodes in pieces. */
export interface TransferredFile {
  file: string;
  /** JSON of [config, document] without their descriptor nodes (a count in their place). */
  header: string;
  /** JSON lists of [config node, document node] pairs, in pre-order. */
  pieces: string[];
}

/** Pieces of about this many characters: parsed in well under a millisecond. */
const PIECE_CHARS = 16_384;

type Plain = Record<string, unknown>;

/**
 * A copy of `node` whose `descriptors` list (when a list) is its length.
 * Absent and null stay as they are: the document shows what was written.
 */
function withChildCount(node: object): Plain {
  const children = (node as { descriptors?: unknown }).descriptors;
  return Array.isArray(children) ? { ...node, descriptors: children.length } : { ...node };
}

function childrenOf(node: unknown): unknown[] {
  const children = (node as { descriptors?: unknown } | undefined)?.descriptors;
  return Array.isArray(children) ? children : [];
}

/** The worker's side: each domain's validated files, as JSON texts. */
export function packValidated(domains: readonly (readonly ValidatedFile[])[]): TransferredFile[][] {
  return domains.map((files) => files.map(({ file, config, document }) => {
    const pieces: string[] = [];
    let piece: string[] = [];
    let chars = 0;
    const visit = (node: DescriptorNodeConfig, documentNode: unknown): void => {
      const pair = JSON.stringify([withChildCount(node), withChildCount(documentNode as object)]);
      piece.push(pair);
      chars += pair.length;
      if (chars >= PIECE_CHARS) {
        pieces.push(`[${piece.join(',')}]`);
        piece = [];
        chars = 0;
      }
      const documentChildren = childrenOf(documentNode);
      (node.descriptors ?? []).forEach((child, i) => visit(child, documentChildren[i]));
    };
    const documentTop = childrenOf(document);
    (config.descriptors ?? []).forEach((node, i) => visit(node, documentTop[i]));
    if (piece.length > 0) pieces.push(`[${piece.join(',')}]`);
    return { file, header: JSON.stringify([withChildCount(config), withChildCount(document as object)]), pieces };
  }));
}

function freezeDeep(value: unknown): void {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) freezeDeep(child);
  }
}

/** A node whose children are still arriving: where they go and how many are left. */
interface OpenList {
  nodes: Plain[];
  documents: unknown[];
  left: number;
}

/**
 * Opens the lists a pair's counts stand for (a new list in place of each
 * count) and freezes the document node, all but that list. Returns the open
 * list, or undefined when no child is to come.
 */
function open(node: Plain, document: Plain): OpenList | undefined {
  for (const [key, value] of Object.entries(document)) if (key !== 'descriptors') freezeDeep(value);
  const count = node.descriptors;
  if (typeof count !== 'number') {
    Object.freeze(document);
    return undefined;
  }
  const list: OpenList = { nodes: [], documents: [], left: count };
  node.descriptors = list.nodes;
  document.descriptors = list.documents;
  Object.freeze(document);
  if (count > 0) return list;
  Object.freeze(list.documents);
  return undefined;
}

/**
 * The event loop's side, in steps (one per piece): the validated files
 * packValidated was given, their documents frozen as the loader freezes them.
 */
export function* unpackValidatedSteps(domains: readonly (readonly TransferredFile[])[]): CompileSteps<ValidatedFile[][]> {
  const result: ValidatedFile[][] = [];
  for (const files of domains) {
    const unpacked: ValidatedFile[] = [];
    for (const { file, header, pieces } of files) {
      const [config, document] = JSON.parse(header) as [Plain, Plain];
      const stack: OpenList[] = [];
      const top = open(config, document);
      if (top !== undefined) stack.push(top);
      for (const piece of pieces) {
        for (const [node, documentNode] of JSON.parse(piece) as [Plain, Plain][]) {
          const parent = stack.at(-1)!;
          parent.nodes.push(node);
          parent.documents.push(documentNode);
          parent.left -= 1;
          const list = open(node, documentNode);
          if (list !== undefined) stack.push(list);
          while (stack.length > 0 && stack.at(-1)!.left === 0) Object.freeze(stack.pop()!.documents);
        }
        yield;
      }
      unpacked.push({ file, config: config as unknown as ConfigFile, document });
    }
    result.push(unpacked);
  }
  return result;
}
