// Which api_key each request carries. Every key has the same length, so the
// gRPC request files h2load reads can be rewritten in place (see rotating-body.ts).
// The scale workloads (uniform, zipf, hot) draw their keys from a seeded
// sampler instead, one list per HTTP connection (load-http.ts).
import { seededRandom, uniformSampler, zipfSampler } from './zipf.js';

export const BENCH_DOMAIN = 'bench';
/** Normal clients: key0000..key9999, limited to 1000/s each (bench.yaml). */
export const CLIENT_COUNT = 10000;
/** The attack shape's hot key, limited to 10/s (bench.yaml); same length as a client key. */
const HOT_KEY = 'hot-key';
/** One in this many of the attack shape's requests is a normal client's; the rest carry the hot key. */
const ATTACK_CLIENT_EVERY = 10;

/** The scale workloads: what a decision costs Redis and the sidecar (issue 18's table). */
export type ScaleShape = 'uniform' | 'zipf' | 'hot';
/** Round-robin workloads (every generator): 10,000 clients, or 90% on one over-limit key. */
export type RoundRobinShape = 'spread' | 'attack';
export type Shape = RoundRobinShape | ScaleShape;
export const SCALE_SHAPES: readonly ScaleShape[] = ['uniform', 'zipf', 'hot'];

/** Uniform and Zipf draw from key00000..key99999 (1000/s each, bench.yaml's default api_key limit). */
export const SCALE_KEY_COUNT = 100_000;
/** Zipf exponent of the busy-keys workload: rank 1 gets 1/H(100k, 1.1) ≈ 13.5% of the requests. */
const ZIPF_S = 1.1;
/** The hot key: one cap for the whole API, far above what one machine can send (bench.yaml; peer-rlf.ts). */
export const GLOBAL_CAP_KEY = 'global-cap';
export const GLOBAL_CAP_PER_S = 10_000_000;
/** Fixed so that ours and the peer, and every run, see the same key sequence. */
const SCALE_SEED = 18;

export function isScaleShape(shape: Shape): shape is ScaleShape {
  return (SCALE_SHAPES as readonly string[]).includes(shape);
}

function scaleKey(i: number): string {
  return `key${String(i % SCALE_KEY_COUNT).padStart(5, '0')}`;
}

/** `count` keys of a scale workload, drawn in a fixed order (uniform: a random one of 100k; zipf: s = 1.1 over 100k). */
export function scaleKeys(shape: ScaleShape, count: number): string[] {
  if (shape === 'hot') return Array.from({ length: count }, () => GLOBAL_CAP_KEY);
  const random = seededRandom(SCALE_SEED);
  const draw = shape === 'uniform' ? uniformSampler(SCALE_KEY_COUNT, random) : zipfSampler(SCALE_KEY_COUNT, ZIPF_S, random);
  return Array.from({ length: count }, () => scaleKey(draw()));
}

export function clientKey(i: number): string {
  return `key${String(i % CLIENT_COUNT).padStart(4, '0')}`;
}

/**
 * A deterministic key sequence: `spread` walks the clients round-robin;
 * `attack` sends 9 of every 10 requests to the hot key, the 10th round-robin.
 */
export function keySequence(shape: RoundRobinShape, offset = 0): () => string {
  let n = offset;
  let client = offset;
  return () => {
    n++;
    if (shape === 'attack' && n % ATTACK_CLIENT_EVERY !== 0) return HOT_KEY;
    return clientKey(client++);
  };
}

/** The HTTP /v1/check body for one key (bare fastify and the peer read the same body). */
export function checkBody(apiKey: string): string {
  return `{"domain":"${BENCH_DOMAIN}","descriptors":[{"entries":[{"key":"api_key","value":"${apiKey}"}]}]}`;
}
