// Every RL_* variable, metric name, HTTP path and port written in deploy/, the
// Dockerfile and docs/deploy.md is one the real server has: checked against
// `node dist/main.js serve --help` and a running server's answers.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { resolveSettings } from '../../../src/server/settings.js';
import {
  REPO_ROOT, SERVER_ENTRY, get, makeTempDir, missingServerBuild, run, startRateLimitServer, type RunningServer,
} from './helpers.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Doc = any;

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

const DEPLOY_FILES = [
  ...filesUnder(join(REPO_ROOT, 'deploy')),
  join(REPO_ROOT, 'Dockerfile'),
  join(REPO_ROOT, 'docs', 'deploy.md'),
];
const text = (path: string): string => readFileSync(path, 'utf8');
const rel = (path: string): string => relative(REPO_ROOT, path);

/** name -> files that mention it */
function collect(pattern: RegExp, files = DEPLOY_FILES): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const file of files) {
    for (const match of text(file).matchAll(pattern)) {
      const name = match[1] ?? match[0];
      found.set(name, [...(found.get(name) ?? []), rel(file)]);
    }
  }
  return found;
}

const OUTCOMES = ['ok', 'over_limit', 'shadow_over_limit', 'store_failure'];
const APIS = ['http_check', 'http_auth', 'http_auth_nginx', 'grpc_rls', 'grpc_authz'];
const RELOAD_RESULTS = ['success', 'failure'];

const compose = parse(text(join(REPO_ROOT, 'deploy', 'compose', 'docker-compose.yaml')), { merge: true }) as Doc;
const example = parse(text(join(REPO_ROOT, 'examples', 'openclaw.yaml'))) as Doc;

const missingBuild = missingServerBuild();
const ENVOY_FILES = readdirSync(join(REPO_ROOT, 'deploy', 'envoy')).filter((name) => name.endsWith('.yaml')).sort();

/** Every HttpConnectionManager in an Envoy config, with its HTTP filters. */
function connectionManagers(envoy: Doc): Doc[] {
  return ((envoy.static_resources?.listeners ?? []) as Doc[]).flatMap((listener) => ((listener.filter_chains ?? []) as Doc[]))
    .flatMap((chain) => ((chain.filters ?? []) as Doc[]))
    .filter((filter) => filter.name === 'envoy.filters.network.http_connection_manager')
    .map((filter) => filter.typed_config as Doc);
}

t.test('regression: no shipped Envoy config skips clients on private networks (use_remote_address + request_type: external)', async (t) => {
  let checked = 0;
  for (const file of ENVOY_FILES) {
    const envoy = parse(text(join(REPO_ROOT, 'deploy', 'envoy', file))) as Doc;
    for (const manager of connectionManagers(envoy)) {
      // With use_remote_address and no internal_address_config, RFC 1918 clients are "internal".
      const privateIsInternal = manager.use_remote_address === true && manager.internal_address_config === undefined;
      for (const filter of (manager.http_filters ?? []) as Doc[]) {
        if (filter.name !== 'envoy.filters.http.ratelimit') continue;
        checked++;
        const requestType = filter.typed_config?.request_type ?? 'both';
        t.ok(!privateIsInternal || requestType === 'both', `${file}: the rate-limit filter applies to every client (request_type ${requestType})`);
      }
    }
  }
  t.equal(checked, 2, 'both rate-limit filter configs were read (plain and TLS)');
});

t.test('TLS Envoy configs: the plain config plus TLS (h2, CA, SAN, client certificate) on the ratelimit cluster', async (t) => {
  const variants = ENVOY_FILES.filter((name) => name.endsWith('-tls.yaml'));
  t.same(variants, ['envoy-ext-authz-tls.yaml', 'envoy-ratelimit-tls.yaml']);
  for (const file of variants) {
    const source = text(join(REPO_ROOT, 'deploy', 'envoy', file));
    const tls = parse(source) as Doc;
    const plain = parse(text(join(REPO_ROOT, 'deploy', 'envoy', file.replace('-tls.yaml', '.yaml')))) as Doc;
    const cluster = (tls.static_resources.clusters as Doc[]).find((c) => c.name === 'ratelimit');
    const socket = cluster.transport_socket;
    t.equal(socket?.name, 'envoy.transport_sockets.tls', `${file}: a TLS transport socket`);
    t.equal(socket.typed_config['@type'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext');
    const context = socket.typed_config.common_tls_context;
    t.same(context.alpn_protocols, ['h2'], `${file}: ALPN h2 (grpc-js serves gRPC over TLS only with h2)`);
    t.ok(context.validation_context.trusted_ca.filename, `${file}: the server certificate is verified against a CA`);
    t.ok(context.validation_context.match_typed_subject_alt_names.length > 0, `${file}: and its name`);
    t.ok(context.tls_certificates[0].certificate_chain.filename && context.tls_certificates[0].private_key.filename,
      `${file}: Envoy's client certificate for --tls-client-ca (mTLS)`);
    for (const variable of ['RL_TLS_CERT', 'RL_TLS_KEY', 'RL_TLS_CLIENT_CA']) t.match(source, variable, `${file} says how to run the sidecar: ${variable}`);
    delete cluster.transport_socket;
    t.same(tls, plain, `${file}: otherwise the same as the plain config (they cannot drift)`);
  }
});

t.test('against the built server', async (t) => {
  if (missingBuild !== undefined) return void t.fail(missingBuild);

  const help = run(process.execPath, [SERVER_ENTRY, 'serve', '--help']);
  t.equal(help.status, 0, `serve --help exits 0: ${help.stderr}`);
  const helpEnv = new Set([...help.stdout.matchAll(/\bRL_[A-Z0-9_]+\b/g)].map((m) => m[0]));
  /** A flag's entry in --help: its line and the wrapped lines under it, up to the next flag or group. */
  const entryOf = (flag: string): string =>
    new RegExp(`^ {2}--${flag}\\b[^\\n]*(\\n {3,}[^\\n]*)*`, 'm').exec(help.stdout)?.[0] ?? '';
  const defaultOf = (flag: string): string | undefined =>
    /\(default\s+([^;)]+)/.exec(entryOf(flag))?.[1]?.replace(/\s+/g, ' ');
  const httpPort = Number(defaultOf('http-port'));
  const grpcPort = Number(defaultOf('grpc-port'));

  t.test('every RL_* variable in deploy/ is listed by serve --help', async (t) => {
    t.ok(helpEnv.size >= 10, `--help lists the variables (${helpEnv.size} found)`);
    for (const [name, files] of collect(/\b(RL_[A-Z0-9_]+)\b/g)) {
      t.ok(helpEnv.has(name), `${name} (${files.join(', ')})`);
    }
  });

  t.test('the default ports are the ones deploy/ uses', async (t) => {
    t.equal(httpPort, 8080, 'HTTP 8080');
    t.equal(grpcPort, 8081, 'gRPC 8081');
    const dockerfile = text(join(REPO_ROOT, 'Dockerfile'));
    t.match(dockerfile, new RegExp(`^EXPOSE ${httpPort} ${grpcPort}$`, 'm'), 'Dockerfile EXPOSE');
    t.match(dockerfile, /127\.0\.0\.1:' \+ \(process\.env\.RL_HTTP_PORT \|\| 8080\) \+ '\/healthz/, 'HEALTHCHECK on the HTTP port');
    t.match(dockerfile, /ENTRYPOINT \["node", "dist\/main\.js"\]/, 'exec-form entry point: node is PID 1 and gets SIGTERM');
    const nginx = text(join(REPO_ROOT, 'deploy', 'nginx', 'nginx.conf'));
    t.match(nginx, new RegExp(`upstream ratelimit \\{\\s*server 127\\.0\\.0\\.1:${httpPort}\\b`), 'nginx upstream ratelimit');
    t.match(nginx, /proxy_pass http:\/\/ratelimit\/v1\/auth\/nginx;/, 'nginx asks /v1/auth/nginx');
    for (const file of ENVOY_FILES) {
      const envoy = parse(text(join(REPO_ROOT, 'deploy', 'envoy', file))) as Doc;
      const cluster = (envoy.static_resources.clusters as Doc[]).find((c) => c.name === 'ratelimit');
      const socket = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
      t.equal(socket.port_value, grpcPort, `${file}: cluster ratelimit on the gRPC port`);
      t.ok(cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']
        .explicit_http_config.http2_protocol_options, `${file}: HTTP/2 to the sidecar`);
    }
    const prometheus = parse(text(join(REPO_ROOT, 'deploy', 'prometheus', 'prometheus.yaml'))) as Doc;
    const job = (prometheus.scrape_configs as Doc[]).find((c) => c.job_name === 'openclaw-ratelimit');
    t.equal(job.metrics_path, '/metrics');
    for (const target of job.static_configs[0].targets as string[]) {
      const [host, port] = target.split(':');
      t.equal(Number(port), httpPort, `scrape ${target} on the HTTP port`);
      t.ok(compose.services[host ?? ''], `${host} is a compose service`);
    }
  });

  t.test('the admin port (no authentication) stays on loopback and is published nowhere', async (t) => {
    const adminPort = Number(defaultOf('admin-port'));
    t.equal(adminPort, 8082, 'admin listener on 8082 by default');
    t.equal(defaultOf('admin-host'), '127.0.0.1', 'bound to loopback by default');
    for (const [port, files] of collect(new RegExp(`\\b(${adminPort})\\b`, 'g'))) t.fail(`port ${port} appears in ${files.join(', ')}`);
    for (const [name, files] of collect(/\b(RL_ADMIN_HOST)\b/g)) t.fail(`${name} is set in ${files.join(', ')}: the admin listener stays on loopback`);
    t.match(text(join(REPO_ROOT, 'Dockerfile')), new RegExp(`^EXPOSE ${httpPort} ${grpcPort}$`, 'm'), 'the Dockerfile exposes only HTTP and gRPC');
    for (const name of ['ratelimit-1', 'ratelimit-2']) {
      t.equal(resolveSettings({}, compose.services[name].environment as Record<string, string>).adminHost, '127.0.0.1', `${name}: admin on loopback`);
    }
  });

  t.test('compose wiring', async (t) => {
    for (const name of ['ratelimit-1', 'ratelimit-2']) {
      const service = compose.services[name];
      const env = service.environment as Record<string, string>;
      t.doesNotThrow(() => resolveSettings({}, env), `${name}: the server accepts its RL_* values`);
      const settings = resolveSettings({}, env);
      t.equal(settings.httpPort, httpPort);
      t.equal(settings.grpcPort, grpcPort);
      t.equal(settings.fallbackDivisor, 'auto', 'divisor follows the sidecars sharing Redis');
      t.ok((service.volumes as string[]).some((v) => v.endsWith(`:${settings.config.replace(/\/$/, '')}:ro`)), 'rules mounted at RL_CONFIG');
      t.ok(service.networks.edge.aliases.includes('ratelimit'), 'the "ratelimit" alias the proxies use');
      for (const node of settings.redisCluster ?? []) {
        const [host] = node.split(':');
        const redis = compose.services[host ?? ''];
        t.ok(redis, `${node} is a compose service`);
        t.match(String(redis?.command), new RegExp(`--cluster-announce-hostname ${host}\\b`), `${host} announces its name`);
        t.match(String(redis?.command), /--cluster-preferred-endpoint-type hostname/);
      }
      t.equal(settings.redisCluster?.length, 6, 'all six nodes as seeds');
      const nginxIp = compose.services.nginx.networks.edge.ipv4_address as string;
      t.ok(settings.trustedProxies.includes(`${nginxIp}/32`), 'nginx is a trusted proxy (X-Real-IP)');
    }
    const rating = compose.services['openclaw-rating'];
    t.match(rating.command.join(' '), /listen\(9000\)/, 'the stand-in API listens on 9000, as the proxies expect');
  });

  t.test('Envoy configs use the example config\'s domain and descriptor keys', async (t) => {
    const keys = new Set<string>();
    const walk = (nodes: Doc[] | undefined): void => {
      for (const node of nodes ?? []) {
        keys.add(node.key as string);
        walk(node.descriptors);
      }
    };
    walk(example.descriptors);
    const authz = parse(text(join(REPO_ROOT, 'deploy', 'envoy', 'envoy-ext-authz.yaml'))) as Doc;
    const routes = authz.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes as Doc[];
    const domains = routes
      .map((r) => r.typed_per_filter_config?.['envoy.filters.http.ext_authz']?.check_settings?.context_extensions?.domain)
      .filter((d) => d !== undefined);
    t.same([...new Set(domains)], [example.domain], 'ext_authz context_extensions domain');
    const authzFilter = authz.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config;
    t.equal(authzFilter.transport_api_version, 'V3');
    t.ok(Number.parseFloat(authzFilter.grpc_service.timeout) <= 0.2, 'ext_authz timeout <= 200 ms');

    const rls = parse(text(join(REPO_ROOT, 'deploy', 'envoy', 'envoy-ratelimit.yaml'))) as Doc;
    const hcm = rls.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const filter = hcm.http_filters[0].typed_config;
    t.equal(filter.domain, example.domain, 'ratelimit filter domain');
    t.equal(filter.rate_limit_service.transport_api_version, 'V3');
    for (const route of hcm.route_config.virtual_hosts[0].routes as Doc[]) {
      for (const limit of (route.route.rate_limits ?? []) as Doc[]) {
        for (const action of limit.actions as Doc[]) {
          const key = action.request_headers?.descriptor_key ?? action.generic_key?.descriptor_key
            ?? (action.remote_address !== undefined ? 'remote_address' : undefined);
          t.ok(keys.has(key), `descriptor key ${key} is in examples/openclaw.yaml`);
        }
      }
    }
  });

  const dir = makeTempDir('rl-consistency-');
  let server: RunningServer | undefined;
  t.teardown(async () => {
    await server?.stop('SIGTERM');
    dir.remove();
  });
  server = await startRateLimitServer(dir.path, text(join(REPO_ROOT, 'examples', 'openclaw.yaml')));
  const base = server.base;

  t.test('every metric name in deploy/ is exported by /metrics', async (t) => {
    const response = await get(`${base}/metrics`);
    t.equal(response.status, 200);
    const exposition = await response.text();
    const types = new Map([...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const names = collect(/(?<![\w.@-])(ratelimit_[a-z0-9_]+)/g);
    t.ok(names.size >= 5, `metric names found in deploy/ (${[...names.keys()].join(', ')})`);
    for (const [name, files] of names) {
      const histogramBase = name.replace(/_(bucket|sum|count)$/, '');
      const ok = types.has(name) || (histogramBase !== name && types.get(histogramBase) === 'histogram');
      t.ok(ok, `${name} (${files.join(', ')})`);
    }
    for (const [value, files] of collect(/outcome=~?"([^"]+)"/g)) t.ok(OUTCOMES.includes(value), `outcome "${value}" (${files.join(', ')})`);
    for (const [value, files] of collect(/api=~?"([a-z_]+)"/g)) t.ok(APIS.includes(value), `api "${value}" (${files.join(', ')})`);
    for (const [value, files] of collect(/result=~?"([^"]+)"/g)) t.ok(RELOAD_RESULTS.includes(value), `result "${value}" (${files.join(', ')})`);
    t.equal(types.get('ratelimit_decision_duration_seconds'), 'histogram');
  });

  t.test('every server path in deploy/ answers', async (t) => {
    const paths = collect(/(\/(?:healthz|readyz|healthcheck|metrics|v1\/[a-z/]*[a-z]))\b/g);
    for (const required of ['/healthz', '/readyz', '/metrics', '/v1/auth/nginx']) t.ok(paths.has(required), `${required} is used`);
    for (const [path, files] of paths) {
      if (path === '/v1/check') {
        // POST only: a route that exists answers a bad body with 400, never 404.
        const response = await fetch(`${base}${path}`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(5_000) });
        t.equal(response.status, 400, `POST ${path} -> ${response.status} (${files.join(', ')})`);
        continue;
      }
      const response = await get(`${base}${path}`);
      t.equal(response.status, 200, `GET ${path} -> ${response.status} (${files.join(', ')})`);
    }
  });
});
