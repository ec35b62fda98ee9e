// HTTP load: autocannon's Node API, run from the bench process (the server
// under test is another process). Each request carries the next key's body.
import autocannon from 'autocannon';
import type { LoadResult } from './load-result.js';
import { CLIENT_COUNT, checkBody, isScaleShape, keySequence, scaleKeys, type ScaleShape, type Shape } from './workload.js';

export const AUTOCANNON_CONNECTIONS = 32;

export interface HttpLoadOptions {
  readonly port: number;
  readonly path: string;
  readonly shape: Shape;
  readonly seconds: number;
  /** Called when load starts (after autocannon's setup, which takes seconds for 10,000 requests). */
  readonly onStart?: () => void;
}

/**
 * One prebuilt request per step of the key sequence (10,000 for `spread`).
 * Not setupRequest: autocannon rebuilds a request per call with it, which
 * made autocannon itself the bottleneck (26k vs 47k req/s on bare fastify).
 * Every connection walks the same list from the start; adjacent keys hash to
 * different slots, so in-flight requests still spread over cluster masters.
 */
const requestLists = new Map<Shape, autocannon.Request[]>();

function requestsFor(shape: Shape): autocannon.Request[] {
  let list = requestLists.get(shape);
  if (list === undefined) {
    if (isScaleShape(shape)) throw new Error(`${shape}: one list per connection (scaleRequestsFor)`);
    const next = keySequence(shape);
    list = Array.from({ length: CLIENT_COUNT }, () => ({ body: checkBody(next()) }));
    requestLists.set(shape, list);
  }
  return list;
}

/**
 * Scale workloads: each connection its own slice of the seeded key draws, so
 * connections do not send the same key in step (a shared list would put the
 * same key in flight on many connections at once, which coalescing would
 * merge). Long enough not to wrap within a measured run: ~800 requests/s per
 * connection at most here.
 */
const SCALE_REQUESTS_PER_CONNECTION = 4096;
const scaleLists = new Map<ScaleShape, autocannon.Request[][]>();

function scaleRequestsFor(shape: ScaleShape): autocannon.Request[][] {
  let lists = scaleLists.get(shape);
  if (lists === undefined) {
    const keys = scaleKeys(shape, AUTOCANNON_CONNECTIONS * SCALE_REQUESTS_PER_CONNECTION);
    lists = Array.from({ length: AUTOCANNON_CONNECTIONS }, (_, c) =>
      keys.slice(c * SCALE_REQUESTS_PER_CONNECTION, (c + 1) * SCALE_REQUESTS_PER_CONNECTION).map((key) => ({ body: checkBody(key) })));
    scaleLists.set(shape, lists);
  }
  return lists;
}

/** autocannon options that give each connection its requests. */
function requestOptions(shape: Shape): Pick<autocannon.Options, 'requests' | 'setupClient'> {
  if (!isScaleShape(shape)) return { requests: requestsFor(shape) };
  const lists = scaleRequestsFor(shape);
  let next = 0;
  return {
    // One request to build per connection at construction; setupClient swaps in the connection's own list.
    requests: lists[0]?.slice(0, 1) ?? [],
    setupClient: (client) => {
      const list = lists[next++ % lists.length];
      if (list !== undefined) client.setRequests(list);
    },
  };
}

export async function httpLoad(options: HttpLoadOptions): Promise<LoadResult> {
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({
      url: `http://127.0.0.1:${options.port}${options.path}`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      connections: AUTOCANNON_CONNECTIONS,
      pipelining: 1,
      duration: options.seconds,
      timeout: 10,
      ...requestOptions(options.shape),
    }, (error, done) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(done)));
    instance.on('start', () => options.onStart?.());
  });
  const statuses: Record<string, number> = {};
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statuses[code] = stat.count ?? 0;
  const denied = statuses['429'] ?? 0;
  const responses = Object.values(statuses).reduce((a, b) => a + b, 0);
  return {
    generator: `autocannon c=${AUTOCANNON_CONNECTIONS}`,
    responses,
    rate: responses / options.seconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.timeouts + Math.max(0, result.non2xx - denied),
    statuses,
    seconds: options.seconds,
  };
}
