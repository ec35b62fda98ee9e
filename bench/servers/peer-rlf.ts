// The peer: rate-limiter-flexible's RateLimiterRedis (ioredis) behind the
// same bare fastify route. 1000 points/s per api_key, as bench.yaml's normal
// clients; the global cap key gets bench.yaml's cap. One EVALSHA per request. --redis URL for a single node, --redis-cluster host:port,... for
// an ioredis Cluster client (RateLimiterRedis accepts it: it only needs
// defineCommand; RateLimiterCluster is for node:cluster workers, not Redis).
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import { Cluster, Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { GLOBAL_CAP_KEY, GLOBAL_CAP_PER_S } from '../workload.js';

const { values } = parseArgs({ options: { port: { type: 'string' }, redis: { type: 'string' }, 'redis-cluster': { type: 'string' } } });

const client = values['redis-cluster'] !== undefined
  ? new Cluster(values['redis-cluster'].split(',').map((hp) => {
    const [host, port] = hp.split(':');
    return { host: host ?? '127.0.0.1', port: Number(port) };
  }), { enableOfflineQueue: false })
  : new Redis(values.redis ?? 'redis://127.0.0.1:6379', { enableOfflineQueue: false });
await new Promise<void>((resolve, reject) => {
  client.once('ready', () => resolve());
  client.once('error', reject);
});

const limiter = new RateLimiterRedis({ storeClient: client, keyPrefix: 'rlf', points: 1000, duration: 1 });
const capLimiter = new RateLimiterRedis({ storeClient: client, keyPrefix: 'rlf-cap', points: GLOBAL_CAP_PER_S, duration: 1 });

interface CheckBody { descriptors?: { entries?: { key?: string; value?: string }[] }[] }

const app = Fastify({ logger: false });
app.post<{ Body: CheckBody }>('/v1/check', async (request, reply) => {
  const key = request.body.descriptors?.[0]?.entries?.[0]?.value ?? '';
  reply.header('content-type', 'application/json');
  try {
    await (key === GLOBAL_CAP_KEY ? capLimiter : limiter).consume(key);
    return '{"overall_code":"OK"}';
  } catch (error: unknown) {
    if (error instanceof RateLimiterRes) {
      reply.code(429);
      return '{"overall_code":"OVER_LIMIT"}';
    }
    reply.code(503);
    return '{"error":"store"}';
  }
});
await app.listen({ host: '127.0.0.1', port: Number(values.port) });
process.on('SIGTERM', () => void app.close().then(() => client.quit()).then(() => process.exit(0)));
