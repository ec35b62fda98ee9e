// gRPC interoperability checked by code we did not write: Python's grpcio (a
// C-core gRPC implementation) and protobuf, with message types declared from
// Envoy's published protos in test/system/grpc/fixtures/interop_client.py, call the
// server process's RateLimitService, Authorization and Health.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { spawnServer } from '../../helpers/process.js';

/** Debian's interpreter, which python3-grpcio installs for (a pyenv python3 on PATH may lack grpc). */
const PYTHON = '/usr/bin/python3';
const CLIENT = fileURLToPath(new URL('./fixtures/interop_client.py', import.meta.url));
const CLIENT_TIMEOUT_MS = 60_000;

/** Whether /usr/bin/python3 can import grpc; missing is a failure under CI=true or RL_REQUIRE_TOOLS=1, else a skip. */
function grpcioAvailability(): { ok: true } | { ok: false; reason: string; fail: boolean } {
  const probe = spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { encoding: 'utf8', timeout: 20_000 });
  if (probe.status === 0) return { ok: true };
  return {
    ok: false,
    reason: `python3-grpcio is not installed for ${PYTHON} (${(probe.error?.message ?? probe.stderr).trim().split('\n').pop()}); `
      + 'scripts/install-test-tools.sh installs it',
    fail: process.env['CI'] === 'true' || process.env['RL_REQUIRE_TOOLS'] === '1',
  };
}

interface DescriptorStatus {
  code: string;
  current_limit?: { requests_per_unit: number; unit: string };
  limit_remaining: number;
  duration_until_reset?: { seconds: string; nanos: number };
}
interface RlsResult { overall_code: string; statuses: DescriptorStatus[] }
interface AuthzResult { code: number; http_response: string | null; http_status?: number; headers?: Record<string, string> }
interface InteropOutput {
  grpcio: string;
  rls: RlsResult[];
  rls_override: RlsResult;
  rls_empty_domain: { code: string; details?: string };
  authz: AuthzResult[];
  health: Record<string, string>;
}

function runClient(target: string, domain: string): Promise<InteropOutput> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [CLIENT, target, domain], { timeout: CLIENT_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error !== null) {
        reject(new Error(`interop_client.py failed: ${error.message}\n${stderr}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as InteropOutput);
      } catch {
        reject(new Error(`interop_client.py printed no JSON:\n${stdout}\n${stderr}`));
      }
    });
  });
}

const grpcio = grpcioAvailability();
if (!grpcio.ok && !grpcio.fail) {
  t.test(`Python grpcio interop: ${grpcio.reason}`, { skip: true }, async () => {});
} else {
  t.test('a Python grpcio client: ShouldRateLimit, ext_authz Check and health interoperate', async (t) => {
    if (!grpcio.ok) {
      t.fail(grpcio.reason);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'rl-interop-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, 'interop.yaml');
    writeFileSync(config, [
      'domain: interop',
      'descriptors:',
      '  - key: api_key',
      '    rate_limit: { unit: minute, requests_per_unit: 2 }',
      'http:',
      '  descriptors:',
      '    - [ { request_headers: { header_name: x-api-key, descriptor_key: api_key } } ]',
      '',
    ].join('\n'));
    const server = await spawnServer(['--config', config]);
    t.teardown(() => server.stop());
    const out = await runClient(`127.0.0.1:${server.grpcPort}`, 'interop');
    t.comment(`grpcio ${out.grpcio}`);

    // RateLimitService: 2 per minute, so OK, OK, OVER_LIMIT; one status per descriptor with the limit.
    t.same(out.rls.map((r) => r.overall_code), ['OK', 'OK', 'OVER_LIMIT']);
    t.same(out.rls.map((r) => r.statuses.map((s) => s.code)), [['OK'], ['OK'], ['OVER_LIMIT']]);
    t.same(out.rls.map((r) => r.statuses[0]!.limit_remaining), [1, 0, 0]);
    for (const response of out.rls) {
      t.match(response.statuses[0]!.current_limit, { requests_per_unit: 2, unit: 'MINUTE' });
      const seconds = Number(response.statuses[0]!.duration_until_reset?.seconds);
      t.ok(seconds > 0 && seconds <= 60, `duration_until_reset ${seconds} s: within the minute`);
    }
    t.match(out.rls_override, { overall_code: 'OK', statuses: [{ code: 'OK', current_limit: { requests_per_unit: 7, unit: 'HOUR' }, limit_remaining: 4 }] },
      "the descriptor's limit override replaces the configured limit; its hits_addend (UInt64Value) takes 3");
    t.match(out.rls_empty_domain, { code: 'INVALID_ARGUMENT', details: /domain/ }, 'an empty domain is INVALID_ARGUMENT, as a gRPC status');

    // ext_authz: allowed twice (code 0, ok_response with x-ratelimit-*), then denied (code 8, 429, retry-after).
    t.same(out.authz.map((a) => [a.code, a.http_response]), [[0, 'ok_response'], [0, 'ok_response'], [8, 'denied_response']]);
    t.match(out.authz[0]!.headers, { 'x-ratelimit-limit': '2', 'x-ratelimit-remaining': '1' });
    t.match(out.authz[1]!.headers, { 'x-ratelimit-limit': '2', 'x-ratelimit-remaining': '0' });
    const denied = out.authz[2]!;
    t.equal(denied.http_status, 429, 'denied_response.status.code 429');
    t.match(denied.headers, { 'x-ratelimit-remaining': '0' });
    const retryAfter = Number(denied.headers?.['retry-after']);
    t.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter} s`);

    t.same(out.health, { '': 'SERVING', 'envoy.service.ratelimit.v3.RateLimitService': 'SERVING' });
  });
}
