import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { findProtoDir, loadPackageDefinition } from '../../../src/transport/grpc/proto-root.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

t.test('proto/ is found from src/ (tsx) and from dist/ (compiled) alike', async (t) => {
  t.equal(findProtoDir(join(ROOT, 'src', 'transport', 'grpc')), join(ROOT, 'proto'));
  t.equal(findProtoDir(join(ROOT, 'dist', 'transport', 'grpc')), join(ROOT, 'proto'));
  t.throws(() => findProtoDir('/'), /proto\/ directory not found/);
});

t.test('the package definition is loaded once and serves all three services', async (t) => {
  const first = loadPackageDefinition();
  t.equal(loadPackageDefinition(), first);
  for (const name of ['envoy.service.ratelimit.v3.RateLimitService', 'envoy.service.auth.v3.Authorization', 'grpc.health.v1.Health']) {
    t.ok(first[name], name);
  }
});
