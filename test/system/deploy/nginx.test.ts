// deploy/nginx/nginx.conf, run for real: NGINX (auth_request) -> openclaw-ratelimit
// (/v1/auth/nginx) -> a stand-in OpenClaw Rating API that counts the requests it sees.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import {
  REPO_ROOT, freePort, get, makeTempDir, missingServerBuild, startChild, startRateLimitServer,
  toolAvailability, waitFor, type Child, type RunningServer,
} from './helpers.js';


// api_key 3/minute, client address 6/minute: a keyed request counts against both.
// The host blocked.example is refused (0/minute); other hosts have no limit.
const CONFIG = `
domain: openclaw
descriptors:
  - key: api_key
    rate_limit: { unit: minute, requests_per_unit: 3 }
  - key: remote_address
    rate_limit: { unit: minute, requests_per_unit: 6 }
  - key: host
    value: blocked.example
    rate_limit: { unit: minute, requests_per_unit: 0 }
http:
  descriptors:
    - [ { request_headers: { header_name: x-api-key, descriptor_key: api_key } } ]
    - [ { remote_address: {} } ]
    - [ { request_headers: { header_name: ":authority", descriptor_key: host } } ]
`;

/** A GET with its own Host header (fetch always sends the URL's). */
function getWithHost(url: string, host: string, headers: Record<string, string> = {}): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { headers: { ...headers, host }, timeout: 5_000 }, (response) => {
      response.resume();
      response.on('end', () => resolve({ status: response.statusCode ?? 0 }));
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${url}: timed out`)));
    request.on('error', reject);
    request.end();
  });
}

/**
 * The shipped nginx.conf with the three documented values replaced (listen 80,
 * sidecar 127.0.0.1:8080, API 127.0.0.1:9000) and the paths a non-packaged run needs.
 */
export function nginxConfForTest(dir: string, ports: { listen: number; ratelimit: number; upstream: number }): string {
  const shipped = readFileSync(join(REPO_ROOT, 'deploy', 'nginx', 'nginx.conf'), 'utf8');
  const replaceOnce = (text: string, from: string, to: string): string => {
    if (!text.includes(from)) throw new Error(`deploy/nginx/nginx.conf no longer contains "${from}"`);
    return text.replace(from, to);
  };
  let conf = shipped;
  conf = replaceOnce(conf, 'listen 80;', `listen 127.0.0.1:${ports.listen};`);
  conf = replaceOnce(conf, 'server 127.0.0.1:8080', `server 127.0.0.1:${ports.ratelimit}`);
  conf = replaceOnce(conf, 'server 127.0.0.1:9000', `server 127.0.0.1:${ports.upstream}`);
  conf = replaceOnce(conf, 'access_log /dev/stdout', `access_log ${join(dir, 'access.log')}`);
  const temps = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((kind) => `    ${kind}_temp_path ${join(dir, kind)};`)
    .join('\n');
  conf = replaceOnce(conf, '\nhttp {\n', `\nhttp {\n${temps}\n`);
  return conf;
}

interface Upstream {
  server: Server;
  port: number;
  hits: number;
  lastHeaders: IncomingHttpHeaders | undefined;
}

async function startUpstream(): Promise<Upstream> {
  const upstream: Upstream = { server: createServer(), port: 0, hits: 0, lastHeaders: undefined };
  upstream.server.on('request', (request, response) => {
    upstream.hits += 1;
    upstream.lastHeaders = request.headers;
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ rating: 'AAA', path: request.url }));
  });
  await new Promise<void>((done) => upstream.server.listen(0, '127.0.0.1', done));
  const address = upstream.server.address();
  upstream.port = typeof address === 'object' && address !== null ? address.port : 0;
  return upstream;
}

const nginxTool = toolAvailability('nginx');
const missingBuild = missingServerBuild();

if (!nginxTool.ok && !nginxTool.fail) {
  t.test(`nginx auth_request integration: ${nginxTool.reason}`, { skip: true }, async () => {});
} else {
  t.test('NGINX auth_request in front of openclaw-ratelimit', async (t) => {
    if (!nginxTool.ok) {
      t.fail(nginxTool.reason);
      return;
    }
    if (missingBuild !== undefined) {
      t.fail(missingBuild);
      return;
    }
    const dir = makeTempDir('rl-nginx-');
    // Workers run as nobody when the test runs as root: they must reach the temp dirs.
    chmodSync(dir.path, 0o755);
    let ratelimit: RunningServer | undefined;
    let nginx: Child | undefined;
    const upstream = await startUpstream();
    t.teardown(async () => {
      await nginx?.stop('SIGQUIT');
      await ratelimit?.stop('SIGTERM');
      await new Promise<void>((done) => upstream.server.close(() => done()));
      upstream.server.closeAllConnections();
      dir.remove();
    });

    ratelimit = await startRateLimitServer(dir.path, CONFIG);
    const listen = await freePort();
    const confPath = join(dir.path, 'nginx.conf');
    writeFileSync(confPath, nginxConfForTest(dir.path, { listen, ratelimit: ratelimit.httpPort, upstream: upstream.port }));
    nginx = startChild(nginxTool.path, ['-p', dir.path, '-c', confPath, '-g', `daemon off; pid ${join(dir.path, 'nginx.pid')};`]);
    const edge = `http://127.0.0.1:${listen}`;
    await waitFor(`nginx on ${edge}`, async () => {
      if (nginx?.process.exitCode !== null) throw new Error(`nginx exited: ${nginx?.output()}`);
      return (await get(`${edge}/nginx-health`, {}, 1_000)).status === 200;
    }, 15_000);
    // Process output only in a failing assertion's message, not in every passing one.
    const says = (status: number, expected: number, what: string): string =>
      status === expected ? what : `${what}\nnginx:\n${nginx?.output()}\nopenclaw-ratelimit:\n${ratelimit?.output()}`;

    await t.test('the host the client asked for reaches the rules (:authority), and a client cannot name another', async (t) => {
      const blocked = await getWithHost(`${edge}/rating`, 'blocked.example', { 'x-api-key': 'k9' });
      t.equal(blocked.status, 429, 'Host: blocked.example is refused (was 200: the sidecar saw the upstream name "ratelimit")');
      t.equal(upstream.hits, 0, 'the API saw nothing');
      const spoofed = await get(`${edge}/rating`, { 'x-api-key': 'k9', 'x-forwarded-host': 'blocked.example' });
      t.equal(spoofed.status, 200, 'a client-sent X-Forwarded-Host is replaced by the Host NGINX serves');
      upstream.hits = 0; // that request took one of the address's 6: the tests below count from here
    });

    await t.test('allowed requests reach the API with X-RateLimit-* headers', async (t) => {
      for (const expectedRemaining of ['2', '1', '0']) {
        const response = await get(`${edge}/rating?id=1`, { 'x-api-key': 'k1' });
        t.equal(response.status, 200, says(response.status, 200, 'allowed'));
        t.same(await response.json(), { rating: 'AAA', path: '/rating?id=1' });
        t.equal(response.headers.get('x-ratelimit-limit'), '3', 'the api_key limit is the most restrictive');
        t.equal(response.headers.get('x-ratelimit-remaining'), expectedRemaining);
        t.ok(Number(response.headers.get('x-ratelimit-reset')) >= 1, 'X-RateLimit-Reset in seconds');
      }
      t.equal(upstream.hits, 3);
      t.match(upstream.lastHeaders?.['x-request-id'], /^[0-9a-f]{32}$/, 'X-Request-ID passed upstream');
      t.equal(upstream.lastHeaders?.['x-api-key'], 'k1', 'the API sees the client headers');
    });

    await t.test('the request over the api_key limit gets 429 and never reaches the API', async (t) => {
      const response = await get(`${edge}/rating?id=2`, {
        'x-api-key': 'k1',
        // A client cannot pick another (unlimited) domain: nginx.conf overrides it.
        'x-ratelimit-domain': 'some-other-domain',
      });
      t.equal(response.status, 429, says(response.status, 429, 'denied'));
      t.ok(Number(response.headers.get('retry-after')) >= 1, 'Retry-After >= 1');
      t.equal(response.headers.get('x-ratelimit-limit'), '3');
      t.equal(response.headers.get('x-ratelimit-remaining'), '0');
      t.match(response.headers.get('content-type'), /application\/json/);
      const body = await response.json() as { error?: string };
      t.equal(body.error, 'rate_limited');
      t.equal(upstream.hits, 3, 'the API saw nothing');
    });

    await t.test('requests without an API key fall back to the client-address limit', async (t) => {
      // The spoofed-host request and the three keyed ones took 4 of the address's 6; the denied ones took none.
      for (const expectedRemaining of ['1', '0']) {
        const response = await get(`${edge}/rating`);
        t.equal(response.status, 200, says(response.status, 200, 'allowed by the address limit'));
        t.equal(response.headers.get('x-ratelimit-limit'), '6', 'the remote_address limit');
        t.equal(response.headers.get('x-ratelimit-remaining'), expectedRemaining);
      }
      t.equal(upstream.hits, 5);
      // X-Real-IP from the client is not believed: nginx.conf sets it from $remote_addr.
      const response = await get(`${edge}/rating`, { 'x-real-ip': '203.0.113.9', 'x-forwarded-for': '203.0.113.9' });
      t.equal(response.status, 429);
      t.ok(Number(response.headers.get('retry-after')) >= 1);
      t.equal(response.headers.get('x-ratelimit-limit'), '6');
      t.equal(upstream.hits, 5, 'the API saw nothing');
    });

    await t.test('the sidecar drains on SIGTERM, then NGINX fails open', async (t) => {
      const code = await ratelimit?.stop('SIGTERM', 10_000);
      t.equal(code, 0, 'SIGTERM exits 0');
      const response = await get(`${edge}/rating`, { 'x-api-key': 'k1' });
      t.equal(response.status, 200, says(response.status, 200, 'fail open while the sidecar is down'));
      t.equal(response.headers.get('x-ratelimit-limit'), null, 'no decision, no headers');
      t.equal(upstream.hits, 6);
      const log = readFileSync(join(dir.path, 'access.log'), 'utf8');
      t.match(log, /rl_status=502/, 'the access log shows the sidecar was unreachable');
    });
  });
}
