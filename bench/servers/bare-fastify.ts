// Baseline: fastify doing no work — POST /v1/check parses the JSON body like
// ours and replies a constant; /v1/auth/* (forward auth: no body) replies a
// constant too. One node process, as our server.
import { parseArgs } from 'node:util';
import Fastify from 'fastify';

const { values } = parseArgs({ options: { port: { type: 'string' } } });
const REPLY = '{"overall_code":"OK","statuses":[{"code":"OK","limit":null,"limit_remaining":0,"duration_until_reset_ms":0}]}';
const AUTH_REPLY = '{"overall_code":"OK"}';

const app = Fastify({ logger: false });
app.post('/v1/check', async (_request, reply) => {
  reply.header('content-type', 'application/json');
  return REPLY;
});
app.all('/v1/auth/*', async (_request, reply) => {
  reply.header('content-type', 'application/json');
  return AUTH_REPLY;
});
await app.listen({ host: '127.0.0.1', port: Number(values.port) });
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
