// Seeded randomness, time budgets and failure reports for the fuzz suite.
//
//   FUZZ_SECONDS=N   budget of each fuzz test file (default 10 s under `npm test`)
//   FUZZ_SEED=S      the run's seed (default: random, printed)
//   FUZZ_CASE=I      run only case I of the seed (what a failure report prints)
//   FUZZ_CASE=A-B    run cases A to B, as many at a time as the full run did
//                    (for failures that need their neighbours, e.g. a shared HTTP/2 session)
//
// Case i draws only from its own generator, seeded from (seed, i): the same
// seed and case index give the same input whatever ran before or alongside it.
import { relative } from 'node:path';
import type { Test } from 'tap';

export const FUZZ_SECONDS = Number(process.env['FUZZ_SECONDS'] ?? 10);
export const FUZZ_SEED = process.env['FUZZ_SEED'] !== undefined ? Number(process.env['FUZZ_SEED']) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const CASES = /^(\d+)(?:-(\d+))?$/.exec(process.env['FUZZ_CASE'] ?? '');
/** First and last case to run when FUZZ_CASE is set. */
const FUZZ_CASE: { first: number; last: number } | undefined = CASES === null
  ? undefined
  : { first: Number(CASES[1]), last: Number(CASES[2] ?? CASES[1]) };
/** A case that takes longer than this is reported as a hang (each call in it has a shorter deadline of its own). */
const CASE_DEADLINE_MS = 20_000;
/** A run stops reporting after this many failures (they tend to be one bug many times). */
const MAX_FAILURES = 5;

/** mulberry32: small, fast, and good enough to pick inputs. */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 2 ** 32;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)]!;
  }

  /** A uint32 that is often an edge (0, 1, 127, 128, 2^31, 2^32-1, ...). */
  uint32(): number {
    if (this.chance(0.5)) return this.pick([0, 1, 2, 127, 128, 255, 256, 16_383, 16_384, 65_535, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1]);
    return this.int(2 ** 32);
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

export function caseRandom(seed: number, index: number): Random {
  return new Random((seed ^ Math.imul(index + 1, 0x9e37_79b1)) >>> 0);
}

/** Pieces text is built from: ASCII, valid multi-byte UTF-8, and bytes that are not UTF-8. */
const TEXT_PIECES: readonly Buffer[] = [
  'a', 'key', 'v', '0', ' ', '/', '?', '&', '=', ',', ':', '{', '}', '"', '\\', '%00', '*', '.', '-', '_',
  'é', 'ü', '日本', '😀', '\u200b', '\ufeff', '\u0000', '\t', '\ufffd',
].map((s) => Buffer.from(s)).concat([
  [0xff], [0xfe], [0x80], [0xbf], [0xc0, 0x80], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80],
  [0xf0, 0x9f, 0x98], [0xef, 0xbf, 0xbd],
].map((b) => Buffer.from(b)));

/** Text bytes of about `pieces` pieces, valid UTF-8 or not. */
export function randomText(random: Random, pieces: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < pieces; i++) parts.push(random.chance(0.6) ? Buffer.from([0x61 + random.int(26)]) : random.pick(TEXT_PIECES));
  return Buffer.concat(parts);
}

/** ASCII-only text (what an HTTP client can put in a header without escaping). */
export function randomAscii(random: Random, length: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789-_.'): string {
  let text = '';
  for (let i = 0; i < length; i++) text += alphabet[random.int(alphabet.length)];
  return text;
}

const INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x07, 0x08, 0x0a, 0x10, 0x12, 0x1a, 0x22, 0x7f, 0x80, 0x81, 0xff];

/** 1 to 4 random edits: bit flips, byte sets, truncation, insertion, deletion, duplication. */
export function mutateBytes(random: Random, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const edits = random.range(1, 4);
  for (let k = 0; k < edits; k++) {
    const at = b.length === 0 ? 0 : random.int(b.length);
    switch (random.int(7)) {
      case 0:
        if (b.length > 0) b[at] = b[at]! ^ (1 << random.int(8));
        break;
      case 1:
        if (b.length > 0) b[at] = random.chance(0.5) ? random.pick(INTERESTING_BYTES) : random.int(256);
        break;
      case 2:
        b = b.subarray(0, at);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), random.bytes(random.range(1, 8)), b.subarray(at)]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + random.range(1, 16)))]);
        break;
      case 5: {
        const end = Math.min(b.length, at + random.range(1, 32));
        b = Buffer.concat([b.subarray(0, end), b.subarray(at, end), b.subarray(end)]);
        break;
      }
      default:
        if (b.length > 0) b[at] = random.pick(INTERESTING_BYTES);
    }
  }
  return b;
}

/** One case: undefined when the answer was acceptable, else what was wrong. */
export type FuzzCase = (random: Random, index: number) => Promise<string | undefined>;

/**
 * Runs cases 0, 1, 2, ... (`concurrency` at a time) for `seconds`, or only
 * FUZZ_CASE when set. Reports each failure with the seed and case index that
 * reproduce it, and fails when too few cases ran to mean anything.
 */
export async function fuzz(
  t: Test,
  name: string,
  options: { seconds: number; concurrency?: number; minCases?: number; /** Cases that share state (replay the whole block). */ block?: number },
  oneCase: FuzzCase,
): Promise<number> {
  const started = Date.now();
  const failures: { index: number; failure: string }[] = [];
  let next = FUZZ_CASE?.first ?? 0;
  const last = FUZZ_CASE?.last ?? Number.POSITIVE_INFINITY;
  // A replay runs past the budget: it is as long as the cases it names.
  const budgetMs = FUZZ_CASE === undefined ? options.seconds * 1000 : Number.POSITIVE_INFINITY;
  let cases = 0;
  const worker = async (): Promise<void> => {
    while (next <= last && Date.now() - started < budgetMs && failures.length < MAX_FAILURES) {
      const index = next++;
      let failure: string | undefined;
      let timer: NodeJS.Timeout | undefined;
      const hang = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`did not finish within ${CASE_DEADLINE_MS} ms (a hang)`), CASE_DEADLINE_MS);
      });
      try {
        failure = await Promise.race([oneCase(caseRandom(FUZZ_SEED, index), index), hang]);
      } catch (error: unknown) {
        failure = `threw ${error instanceof Error ? error.stack ?? error.message : String(error)}`;
      } finally {
        clearTimeout(timer);
      }
      cases++;
      if (failure !== undefined) failures.push({ index, failure });
    }
  };
  const single = FUZZ_CASE !== undefined && FUZZ_CASE.first === FUZZ_CASE.last;
  await Promise.all(Array.from({ length: single ? 1 : options.concurrency ?? 1 }, worker));
  const file = relative(process.cwd(), process.argv[1] ?? 'test/fuzz');
  t.comment(`${name}: ${cases} cases, seed ${FUZZ_SEED}`);
  for (const { index, failure } of failures) {
    const block = options.block ?? 1;
    const cases = block === 1 ? `${index}` : `${index - (index % block)}-${index - (index % block) + block - 1}`;
    t.fail(`${name}: case ${index}: ${failure} (reproduce: FUZZ_SEED=${FUZZ_SEED} FUZZ_CASE=${cases} npx tap ${file})`);
  }
  if (failures.length === 0) t.pass(`${name}: ${cases} cases, every answer acceptable`);
  const minCases = FUZZ_CASE === undefined ? options.minCases ?? 20 : 1 + FUZZ_CASE.last - FUZZ_CASE.first;
  t.ok(cases >= minCases, `${name}: at least ${minCases} cases ran (${cases})`);
  return cases;
}
