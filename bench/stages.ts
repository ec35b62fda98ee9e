// Instructions per request by stage (decode, validate, match and keys,
// store, decision, encode, headers, metrics, route glue, framework, GC), for
// bare fastify and our server, from callgrind (see callgrind.ts):
//
//   node --import tsx bench/stages.ts [--api check|auth|both] [--dist DIR]
//        [--warm N] [--count N] [--no-bare] [--top N] [--save DIR] [--load FILE] [--redis URL]
//
// Two runs per server: one as it runs in production (the total), one with
// V8's --no-turbo-inlining so that every JS function keeps its own code and
// callgrind can tell them apart (the split; inlining saves a little, so the
// split's total is a few % higher). Each function's own instructions go to
// the stage of the nearest caller that is a stage root, shared among its
// callers in proportion to what each spent in it (as gprof propagates time).
// A function that belongs to no stage and has no caller is "framework".
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { GC_ENTRY, attributeSelf, countInstructions, parseDump, type CountedApi, type CountedServer, type FunctionCost } from './callgrind.js';

export const STAGES = [
  'decode', 'validate', 'match and keys', 'store', 'decision', 'encode', 'headers', 'metrics', 'route glue', 'GC', 'framework',
] as const;
export type Stage = (typeof STAGES)[number];

/**
 * Stage roots, first match wins. JS names come from V8's perf map:
 * "JS:*name file:///…/dist/core/limiter.js:22:17" (`*` optimized, `^` baseline, `~` interpreted).
 */
const ROOTS: readonly [RegExp, Stage][] = [
  [GC_ENTRY, 'GC'],
  // JSON text → JS values: V8's parser, fastify's JSON body parser (bare), our UTF-8 check.
  [/^Builtins_JsonParse|^v8::internal::JsonParser|secure-json-parse/, 'decode'],
  [/JS:.(checkBodyText|forwardedRequest|rawHeaderLookup|latin1ToLossless|decodeUtf8Lossless) |\/transport\/http\/client-address\.js|\/transport\/http\/forwarded-request\.js/, 'decode'],
  [/JS:.(parseCheckRequest|decodeCheckBody|resolveDomain|checkDecisionRequest|digestLongValues|checkText|checkHitsAddend|utf8Length|text|optionalHits) |\/core\/request-bounds\.js|\/transport\/http\/check-body\.js/, 'validate'],
  [/\/core\/(rules|keys|http-actions)\.js|JS:.(matchRules|matchRule|overrideRule|sharedEntries|descriptorsFromHttp) /, 'match and keys'],
  // The store: the memory store and bucket math; with --redis, our Redis store and the client (ioredis and its parser).
  [/\/store\/memory-store\.js|\/core\/bucket\.js|\/store\/redis\/|\/node_modules\/(ioredis|redis-parser|denque|cluster-key-slot|standard-as-callback)\//, 'store'],
  [/\/core\/response-headers\.js|JS:.(setDecisionHeaders|rateLimitHeaders|mostRestrictiveStatus|writeDecisionHeaders) |\/transport\/http\/decision-headers\.js/, 'headers'],
  [/JS:.(statusBody|checkResponseJson|statusJson) |fast-json-stringify|^Builtins_JsonStringify|JsonStringifier|\/transport\/http\/check-response\.js|^JS:.anonymous\d* :\d+:\d+$/, 'encode'],
  [/\/telemetry\/|prom-client|node:internal\/perf\//, 'metrics'],
  [/\/core\/limiter\.js|\/decision-service\.js|\/service\.js/, 'decision'],
  [/\/transport\/http\/server\.js/, 'route glue'],
  // What our code calls in fastify and node is theirs, but for reply.header/.code (counted with the caller).
  [/\/node_modules\/(fastify|find-my-way|avvio|@fastify|fast-querystring|light-my-request)\/|node:(_http|net|events|stream|internal\/(streams|process|async_hooks|http|timers|fixed_queue|util\/debuglog|errors|validators))/, 'framework'],
];

/** Framework functions our stages call for their own work: they count with the caller. */
const INHERITED = /JS:.(Reply\.)?(header|headers|code|status) .*\/node_modules\/fastify\/lib\/reply\.js/;

export function rootStage(name: string): Stage | undefined {
  if (INHERITED.test(name)) return undefined;
  for (const [pattern, stage] of ROOTS) if (pattern.test(name)) return stage;
  return undefined;
}

/** Own instructions of every function, attributed to stages (see the file comment). */
export function attribute(functions: ReadonlyMap<string, FunctionCost>): Map<Stage, number> {
  const shares = attributeSelf(functions, rootStage, 'framework');
  return new Map<Stage, number>(STAGES.map((stage) => [stage, shares.get(stage) ?? 0]));
}

export interface StageProfile {
  readonly label: string;
  /** Instructions per request as it runs (inlining on). */
  readonly total: number;
  /** Instructions per request by stage (inlining off). */
  readonly stages: Map<Stage, number>;
  readonly splitTotal: number;
  /** Functions with the most own instructions per request, for reading. */
  readonly top: [string, number][];
}

export async function profileStages(label: string, server: CountedServer, api: CountedApi, options: { dist?: string; warm: number; count: number; save?: string; serverArgs?: readonly string[] }): Promise<StageProfile> {
  const base = {
    server, api, warm: options.warm, count: options.count,
    ...(options.dist === undefined ? {} : { dist: options.dist }),
    ...(options.serverArgs === undefined || server === 'bare' ? {} : { serverArgs: options.serverArgs }),
  };
  const plain = await countInstructions(base);
  const split = await countInstructions({ ...base, v8Flags: ['--no-turbo-inlining'], profile: true });
  if (options.save !== undefined) {
    mkdirSync(options.save, { recursive: true });
    const file = join(options.save, label.replace(/[^\w.-]+/g, '_'));
    writeFileSync(`${file}.callgrind`, split.dump ?? '');
    writeFileSync(`${file}.map`, split.jitMap ?? '');
    writeFileSync(`${file}.json`, JSON.stringify({ label, total: plain.perRequest, splitTotal: split.perRequest, count: options.count }));
  }
  const functions = parseDump(split.dump ?? '', split.jitMap ?? '');
  const perRequest = new Map<Stage, number>();
  for (const [stage, ir] of attribute(functions)) perRequest.set(stage, ir / options.count);
  const top = [...functions].map(([name, cost]): [string, number] => [name, cost.self / options.count]).sort((a, b) => b[1] - a[1]);
  return { label, total: plain.perRequest, stages: perRequest, splitTotal: split.perRequest, top };
}

/** A profile saved by --save (to re-read it with other stage rules without re-running). */
export function loadProfile(file: string): StageProfile {
  const meta = JSON.parse(readFileSync(`${file}.json`, 'utf8')) as { label: string; total: number; splitTotal: number; count: number };
  const functions = parseDump(readFileSync(`${file}.callgrind`, 'utf8'), readFileSync(`${file}.map`, 'utf8'));
  const stages = new Map<Stage, number>();
  for (const [stage, ir] of attribute(functions)) stages.set(stage, ir / meta.count);
  const top = [...functions].map(([name, cost]): [string, number] => [name, cost.self / meta.count]).sort((a, b) => b[1] - a[1]);
  return { label: meta.label, total: meta.total, stages, splitTotal: meta.splitTotal, top };
}

export function stageTable(profiles: readonly StageProfile[]): string {
  const k = (n: number): string => (n / 1000).toFixed(1);
  const lines = [
    `| stage (k instructions / request) | ${profiles.map((p) => p.label).join(' | ')} |`,
    `| --- | ${profiles.map(() => '---:').join(' | ')} |`,
  ];
  for (const stage of STAGES) lines.push(`| ${stage} | ${profiles.map((p) => k(p.stages.get(stage) ?? 0)).join(' | ')} |`);
  lines.push(`| **sum of the split** (--no-turbo-inlining) | ${profiles.map((p) => `**${k(p.splitTotal)}**`).join(' | ')} |`);
  lines.push(`| **total as run** (inlining on) | ${profiles.map((p) => `**${k(p.total)}**`).join(' | ')} |`);
  return lines.join('\n');
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '');
if (isMain) {
  const { values } = parseArgs({
    options: {
      api: { type: 'string', default: 'both' },
      dist: { type: 'string' },
      label: { type: 'string', default: 'ours' },
      warm: { type: 'string', default: '40000' },
      count: { type: 'string', default: '3000' },
      'no-bare': { type: 'boolean' },
      top: { type: 'string', default: '0' },
      save: { type: 'string' },
      load: { type: 'string', multiple: true },
      redis: { type: 'string' },
    },
  });
  const apis: CountedApi[] = values.api === 'both' ? ['check', 'auth'] : [values.api as CountedApi];
  const opts = {
    warm: Number(values.warm), count: Number(values.count),
    ...(values.dist === undefined ? {} : { dist: values.dist }), ...(values.save === undefined ? {} : { save: values.save }),
    ...(values.redis === undefined ? {} : { serverArgs: ['--redis', values.redis] }),
  };
  const profiles: StageProfile[] = (values.load ?? []).map(loadProfile);
  if (values.load === undefined) for (const api of apis) {
    const path = api === 'check' ? 'POST /v1/check' : 'GET /v1/auth';
    if (values['no-bare'] !== true) profiles.push(await profileStages(`bare fastify ${path}`, 'bare', api, opts));
    profiles.push(await profileStages(`${values.label} ${path}`, 'ours', api, opts));
  }
  process.stdout.write(`${stageTable(profiles)}\n`);
  const top = Number(values.top);
  if (top > 0) {
    for (const profile of profiles) {
      process.stdout.write(`\n${profile.label}: top functions (own instructions / request, inlining off)\n`);
      for (const [name, ir] of profile.top.slice(0, top)) process.stdout.write(`${ir.toFixed(0).padStart(7)}  ${rootStage(name) ?? ''}  ${name.slice(0, 150)}\n`);
    }
  }
}
