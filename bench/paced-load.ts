// One constant-rate latency run from the command line (the bench runs the
// same through load-rate.ts), for targeted measurements:
//
//   node --import tsx bench/paced-load.ts --port P [--api http|rls|authz] --rate N [--seconds S]
//
// Prints the RateLoadResult as one JSON line.
import { parseArgs } from 'node:util';
import { AUTHZ_PATH, RLS_PATH, authzRequest, rlsRequest } from './grpc-messages.js';
import { rateLoad } from './load-rate.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string' }, api: { type: 'string', default: 'http' },
    rate: { type: 'string' }, seconds: { type: 'string', default: '5' },
  },
});
const api = values.api === 'rls' || values.api === 'authz' ? values.api : 'http';
const target = api === 'http' ? { path: '/v1/check' }
  : api === 'rls' ? { path: RLS_PATH, encode: rlsRequest } : { path: AUTHZ_PATH, encode: authzRequest };
const result = await rateLoad({ ...target, port: Number(values.port), rate: Number(values.rate), seconds: Number(values.seconds) });
process.stdout.write(`${JSON.stringify(result)}\n`);
