// How validated config files cross from the reload worker to the event loop
// cheaply. A compiled config cannot be handed over whole: structured-cloning
// it costs more than compiling it again (a 10,000-descriptor config clones to
// 8 MB and took 170-500 ms to deserialize, in one piece), so the worker sends
// the validated files instead, as JSON texts:
// - the descriptor tree, flattened in pre-order, each node with the number of
//   its children in place of its `descriptors` list, in short pieces the
//   event loop parses one at a time between requests (so even one node with
//   thousands of children arrives in small pieces);
// - the document (the file as written, for GET /v1/config) as one text,
//   parsed only when first asked for. Building it on every reload made as
//   many objects again as the tree, and every object a reload makes on the
//   event loop is copied by the garbage collector while decisions wait.
import type { ConfigFile, DescriptorNodeConfig } from './schema.js';
import type { CompileSteps, ValidatedFile } from './compile-domain.js';
import { deepFreeze } from './load.js';

/** One validated file: its top-level fields, its descriptor nodes in pieces, and its document. */
export interface TransferredFile {
  file: string;
  /** JSON of the config without its descriptor nodes (their count in their place). */
  header: string;
  /** JSON lists of config nodes, in pre-order. */
  pieces: string[];
  /** JSON of the document (the parsed file as written). */
  document: string;
}

/** Pieces of about this many characters: parsed in well under a millisecond. */
const PIECE_CHARS = 16_384;

type Plain = Record<string, unknown>;

/** A copy of `node` whose `descriptors` list (when a list) is its length. */
function withChildCount(node: object): Plain {
  const children = (node as { descriptors?: unknown }).descriptors;
  return Array.isArray(children) ? { ...node, descriptors: children.length } : { ...node };
}

/** The worker's side: each domain's validated files, as JSON texts. */
export function packValidated(domains: readonly (readonly ValidatedFile[])[]): TransferredFile[][] {
  return domains.map((files) => files.map(({ file, config, readDocument }) => {
    const pieces: string[] = [];
    let piece: string[] = [];
    let chars = 0;
    const visit = (node: DescriptorNodeConfig): void => {
      const text = JSON.stringify(withChildCount(node));
      piece.push(text);
      chars += text.length;
      if (chars >= PIECE_CHARS) {
        pieces.push(`[${piece.join(',')}]`);
        piece = [];
        chars = 0;
      }
      (node.descriptors ?? []).forEach(visit);
    };
    (config.descriptors ?? []).forEach(visit);
    if (piece.length > 0) pieces.push(`[${piece.join(',')}]`);
    return { file, header: JSON.stringify(withChildCount(config)), pieces, document: JSON.stringify(readDocument()) };
  }));
}

/** A node whose children are still arriving: where they go and how many are left. */
interface OpenList {
  nodes: Plain[];
  left: number;
}

/** Opens the list a node's count stands for (a new list in its place); undefined when no child is to come. */
function open(node: Plain): OpenList | undefined {
  const count = node.descriptors;
  if (typeof count !== 'number') return undefined;
  const list: OpenList = { nodes: [], left: count };
  node.descriptors = list.nodes;
  return count > 0 ? list : undefined;
}

/** A validated file whose document is parsed (and frozen, as the loader freezes it) when first read. */
function withLazyDocument(file: string, config: ConfigFile, documentText: string): ValidatedFile {
  let document: unknown;
  return {
    file,
    config,
    readDocument: () => {
      document ??= deepFreeze(JSON.parse(documentText) as unknown);
      return document;
    },
  };
}

/**
 * The event loop's side, in steps (one per piece): the validated files
 * packValidated was given. Each piece is let go once parsed: the texts in
 * `domains` are emptied as it goes, so a reply can be unpacked once.
 */
export function* unpackValidatedSteps(domains: readonly (readonly TransferredFile[])[]): CompileSteps<ValidatedFile[][]> {
  const result: ValidatedFile[][] = [];
  for (const files of domains) {
    const unpacked: ValidatedFile[] = [];
    for (const transferred of files) {
      const config = JSON.parse(transferred.header) as Plain;
      const stack: OpenList[] = [];
      const top = open(config);
      if (top !== undefined) stack.push(top);
      const { pieces } = transferred;
      for (let p = 0; p < pieces.length; p++) {
        const nodes = JSON.parse(pieces[p]!) as Plain[];
        // The texts are not needed again: they need not survive the next garbage collection.
        pieces[p] = '';
        for (const node of nodes) {
          const parent = stack.at(-1)!;
          parent.nodes.push(node);
          parent.left -= 1;
          const list = open(node);
          if (list !== undefined) stack.push(list);
          while (stack.length > 0 && stack.at(-1)!.left === 0) stack.pop();
        }
        yield;
      }
      unpacked.push(withLazyDocument(transferred.file, config as unknown as ConfigFile, transferred.document));
    }
    result.push(unpacked);
  }
  return result;
}
