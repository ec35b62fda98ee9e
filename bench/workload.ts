// Which api_key each request carries. Every key has the same length, so the
// gRPC request files h2load reads can be rewritten in place (see rotating-body.ts).
export const BENCH_DOMAIN = 'bench';
/** Normal clients: key0000..key9999, limited to 1000/s each (bench.yaml). */
export const CLIENT_COUNT = 10000;
/** The attack shape's hot key, limited to 10/s (bench.yaml); same length as a client key. */
const HOT_KEY = 'hot-key';
/** One in this many of the attack shape's requests is a normal client's; the rest carry the hot key. */
const ATTACK_CLIENT_EVERY = 10;

export type Shape = 'spread' | 'attack';

export function clientKey(i: number): string {
  return `key${String(i % CLIENT_COUNT).padStart(4, '0')}`;
}

/**
 * A deterministic key sequence: `spread` walks the clients round-robin;
 * `attack` sends 9 of every 10 requests to the hot key, the 10th round-robin.
 */
export function keySequence(shape: Shape, offset = 0): () => string {
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
