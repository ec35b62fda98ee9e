// Fallback gRPC load generator (when h2load is missing): a grpc-js client
// keeping --concurrency unary calls in flight for --seconds, in its own
// process. Prints one JSON line: calls, errors (grpc-status != 0), p50/p99.
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { AUTHZ_PATH, authzRequest, rlsRequest } from './grpc-messages.js';
import { percentile } from './load-result.js';
import { keySequence, type Shape } from './workload.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string' }, path: { type: 'string' }, shape: { type: 'string' },
    seconds: { type: 'string' }, concurrency: { type: 'string' },
  },
});
const port = Number(values.port);
const path = values.path ?? '';
const shape: Shape = values.shape === 'attack' ? 'attack' : 'spread';
const seconds = Number(values.seconds ?? '5');
const concurrency = Number(values.concurrency ?? '64');
const encode = path === AUTHZ_PATH ? authzRequest : rlsRequest;

const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
const identity = (b: Buffer): Buffer => b;
const next = keySequence(shape);
const cache = new Map<string, Buffer>();
const latencies: number[] = [];
const byCode: Record<string, number> = {};
let errors = 0;
const deadline = performance.now() + seconds * 1000;

function one(): Promise<void> {
  return new Promise((resolve) => {
    const key = next();
    let body = cache.get(key);
    if (body === undefined) {
      body = encode(key);
      cache.set(key, body);
    }
    const start = performance.now();
    client.makeUnaryRequest(path, identity, identity, body, (error) => {
      latencies.push(performance.now() - start);
      const code = String(error?.code ?? 0);
      byCode[code] = (byCode[code] ?? 0) + 1;
      if (error) errors++;
      resolve();
    });
  });
}

async function worker(): Promise<void> {
  while (performance.now() < deadline) await one();
}

await Promise.all(Array.from({ length: concurrency }, () => worker()));
client.close();
latencies.sort((a, b) => a - b);
process.stdout.write(`${JSON.stringify({ calls: latencies.length, errors, byCode, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) })}\n`);
