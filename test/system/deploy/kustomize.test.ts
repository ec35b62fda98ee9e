// deploy/k8s: both kustomizations render, and what they render matches the server:
// probe paths and ports, RL_* names and values, the rules mount, the Envoy wiring.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse, parseAllDocuments } from 'yaml';
import { FLAGS, envName, resolveSettings } from '../../../src/server/settings.js';
import { REPO_ROOT, run, toolAvailability } from './helpers.js';

const kubectl = toolAvailability('kubectl');

// Loose shapes: the rendered YAML is checked field by field below.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Doc = any;
/** The `t` a subtest callback receives. */
type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

const RL_NAMES = new Set(Object.keys(FLAGS).map(envName));
const HTTP_PORT = Number(FLAGS['http-port'].default);
const GRPC_PORT = Number(FLAGS['grpc-port'].default);

function render(dir: string): Doc[] {
  const result = run(kubectl.ok ? kubectl.path : 'kubectl', ['kustomize', dir]);
  if (result.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout).map((doc) => doc.toJS() as Doc);
}

function find(docs: Doc[], kind: string, name: string): Doc {
  const found = docs.find((doc) => doc?.kind === kind && doc?.metadata?.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name} in the output`);
  return found;
}

function findConfigMap(docs: Doc[], prefix: string): Doc {
  const found = docs.find((doc) => doc?.kind === 'ConfigMap' && String(doc?.metadata?.name).startsWith(prefix));
  if (found === undefined) throw new Error(`no ConfigMap ${prefix}* in the output`);
  return found;
}

function portNumber(container: Doc, port: unknown): number {
  if (typeof port === 'number') return port;
  const named = (container.ports as Doc[]).find((p) => p.name === port);
  if (named === undefined) throw new Error(`container ${container.name} has no port named ${String(port)}`);
  return named.containerPort as number;
}

/** The checks every openclaw-ratelimit container must pass, sidecar or shared. */
function checkRateLimitContainer(t: TapTest, docs: Doc[], podSpec: Doc): void {
  const container = (podSpec.containers as Doc[]).find((c) => c.name === 'openclaw-ratelimit');
  t.ok(container, 'an openclaw-ratelimit container');
  if (container === undefined) return;
  t.same(container.args, ['serve'], 'runs `serve` (the image entry point is node dist/main.js)');
  t.same((container.ports as Doc[]).map((p) => p.containerPort).sort(), [HTTP_PORT, GRPC_PORT]);

  const envMap = findConfigMap(docs, 'openclaw-ratelimit-env');
  t.equal((container.envFrom as Doc[])[0]?.configMapRef?.name, envMap.metadata.name, 'env from the generated ConfigMap');
  const env: Record<string, string> = { ...envMap.data };
  for (const entry of (container.env ?? []) as Doc[]) {
    t.ok(RL_NAMES.has(entry.name), `${entry.name} is a real flag's variable`);
    if (entry.value !== undefined) env[entry.name] = entry.value;
  }
  for (const name of Object.keys(envMap.data)) t.ok(RL_NAMES.has(name), `${name} is a real flag's variable`);
  // Every value is one the server accepts (the password comes from a Secret at run time).
  t.doesNotThrow(() => resolveSettings({}, env), 'the server accepts these RL_* values');
  const settings = resolveSettings({}, env);
  t.equal(settings.httpPort, portNumber(container, 'rl-http'), 'RL_HTTP_PORT = the rl-http port');
  t.equal(settings.grpcPort, portNumber(container, 'rl-grpc'), 'RL_GRPC_PORT = the rl-grpc port');
  t.equal(settings.store, 'redis', 'a Redis Cluster is configured');
  t.equal(settings.fallbackDivisor, 'auto', 'RL_FALLBACK_DIVISOR auto: the deciding replicas are counted in Redis');
  const password = (container.env as Doc[]).find((e) => e.name === 'RL_REDIS_PASSWORD');
  t.ok(password?.valueFrom?.secretKeyRef?.name, 'the Redis password comes from a Secret');

  t.equal(container.livenessProbe?.httpGet?.path, '/healthz');
  t.equal(portNumber(container, container.livenessProbe?.httpGet?.port), HTTP_PORT);
  t.equal(container.readinessProbe?.httpGet?.path, '/readyz');
  t.equal(portNumber(container, container.readinessProbe?.httpGet?.port), HTTP_PORT);

  t.ok(container.resources?.requests?.cpu && container.resources?.limits?.memory, 'requests and limits');
  t.equal(container.securityContext?.readOnlyRootFilesystem, true, 'read-only root filesystem');
  t.equal(container.securityContext?.allowPrivilegeEscalation, false);
  t.ok(podSpec.securityContext?.runAsNonRoot === true || container.securityContext?.runAsNonRoot === true, 'non-root');
  const sleep = container.lifecycle?.preStop?.exec?.command as string[] | undefined;
  t.equal(sleep?.[0], 'sleep', 'a preStop sleep lets the endpoints drain before SIGTERM');
  t.ok(podSpec.terminationGracePeriodSeconds >= Number(sleep?.[1]) + 10, 'grace period covers preStop + drain');

  // The rules: a directory mount (no subPath, so ConfigMap edits reach the file) at RL_CONFIG.
  const mount = (container.volumeMounts as Doc[]).find((m) => m.name === 'rules');
  t.equal(`${String(mount?.mountPath).replace(/\/$/, '')}/`, settings.config.replace(/\/?$/, '/'), 'rules mounted at RL_CONFIG');
  t.equal(mount?.subPath, undefined, 'no subPath: the kubelet updates the files in place');
  const volume = (podSpec.volumes as Doc[]).find((v) => v.name === 'rules');
  t.equal(volume?.configMap?.name, 'openclaw-ratelimit-rules', 'the rules ConfigMap keeps its name (no hash suffix)');
  const rules = find(docs, 'ConfigMap', 'openclaw-ratelimit-rules');
  const domains = Object.values(rules.data as Record<string, string>).map((text) => (parse(text) as Doc).domain);
  t.same(domains, ['openclaw'], 'the rules ConfigMap holds the openclaw domain');
}

function envoyConfig(docs: Doc[], podSpec: Doc): Doc {
  const volume = (podSpec.volumes as Doc[]).find((v) => v.name === 'envoy-config');
  const map = find(docs, 'ConfigMap', volume?.configMap?.name);
  return parse(map.data['envoy.yaml'] as string) as Doc;
}

function clusterAddress(envoy: Doc, name: string): { address: string; port: number } {
  const cluster = (envoy.static_resources.clusters as Doc[]).find((c) => c.name === name);
  const socket = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
  return { address: socket.address, port: socket.port_value };
}

/**
 * The shipped deploy/envoy/envoy-ext-authz.yaml with its two upstream addresses replaced,
 * and its admin API on loopback (in a pod every other pod could reach it; compose
 * publishes it on the host's loopback instead).
 */
function shippedExtAuthz(ratelimitAddress: string, apiAddress: string): Doc {
  const envoy = parse(readFileSync(join(REPO_ROOT, 'deploy', 'envoy', 'envoy-ext-authz.yaml'), 'utf8')) as Doc;
  for (const cluster of envoy.static_resources.clusters as Doc[]) {
    const socket = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    socket.address = cluster.name === 'ratelimit' ? ratelimitAddress : apiAddress;
  }
  envoy.admin.address.socket_address.address = '127.0.0.1';
  return envoy;
}

/** A container's preStop sleep, seconds (0 without one). */
function preStopSeconds(container: Doc): number {
  const command = container.lifecycle?.preStop?.exec?.command as string[] | undefined;
  return command?.[0] === 'sleep' ? Number(command[1]) : 0;
}

if (!kubectl.ok && !kubectl.fail) {
  t.test(`kustomize checks: ${kubectl.reason}`, { skip: true }, async () => {});
} else {
  t.test('base: the API pod with Envoy and openclaw-ratelimit sidecars', async (t) => {
    if (!kubectl.ok) return void t.fail(kubectl.reason);
    const docs = render(join(REPO_ROOT, 'deploy', 'k8s', 'base'));
    const deployment = find(docs, 'Deployment', 'openclaw-rating');
    const podSpec = deployment.spec.template.spec;
    t.same((podSpec.containers as Doc[]).map((c) => c.name).sort(), ['envoy', 'openclaw-ratelimit', 'rating-api']);
    checkRateLimitContainer(t, docs, podSpec);

    const envoy = envoyConfig(docs, podSpec);
    t.same(clusterAddress(envoy, 'ratelimit'), { address: '127.0.0.1', port: GRPC_PORT }, 'Envoy calls the sidecar gRPC port');
    const api = (podSpec.containers as Doc[]).find((c) => c.name === 'rating-api');
    t.same(clusterAddress(envoy, 'openclaw_rating'), { address: '127.0.0.1', port: portNumber(api, 'api') });
    t.same(envoy, shippedExtAuthz('127.0.0.1', '127.0.0.1'), 'the same as deploy/envoy/envoy-ext-authz.yaml but for the addresses and the admin on loopback');
    const envoyContainer = (podSpec.containers as Doc[]).find((c) => c.name === 'envoy');
    const listener = envoy.static_resources.listeners[0].address.socket_address.port_value;
    t.equal(portNumber(envoyContainer, 'http'), listener, 'the envoy container exposes its listener');
    t.equal(envoy.admin.address.socket_address.address, '127.0.0.1', 'Envoy\'s admin API (no authentication) on loopback');
    t.notOk((envoyContainer.ports as Doc[]).some((p) => p.containerPort === envoy.admin.address.socket_address.port_value), 'nor listed as a port');
    t.equal(portNumber(envoyContainer, envoyContainer.readinessProbe?.tcpSocket?.port), listener, 'readiness: the client listener');

    // Shutdown: every preStop starts at once; Envoy serves until its own ends, so the API
    // and openclaw-ratelimit must outlive it, and the grace period the sidecar's drain too.
    const ratelimitContainer = (podSpec.containers as Doc[]).find((c) => c.name === 'openclaw-ratelimit');
    const envoyStops = preStopSeconds(envoyContainer);
    t.ok(envoyStops >= 10, `Envoy keeps serving ${envoyStops} s: endpoint removal, then requests in flight`);
    t.ok(preStopSeconds(api) >= envoyStops, 'the API answers Envoy until Envoy stops (it got SIGTERM at once before)');
    t.ok(preStopSeconds(ratelimitContainer) > envoyStops, 'openclaw-ratelimit answers every check Envoy sends');
    t.ok(podSpec.terminationGracePeriodSeconds >= preStopSeconds(ratelimitContainer) + 10, 'the grace period covers its drain too');

    const service = find(docs, 'Service', 'openclaw-rating');
    t.equal(service.spec.ports[0].targetPort, 'http', 'clients go through Envoy');
    t.same(service.spec.selector, deployment.spec.template.metadata.labels);
  });

  t.test('shared-service overlay: openclaw-ratelimit as its own Deployment', async (t) => {
    if (!kubectl.ok) return void t.fail(kubectl.reason);
    const docs = render(join(REPO_ROOT, 'deploy', 'k8s', 'overlays', 'shared-service'));
    const api = find(docs, 'Deployment', 'openclaw-rating');
    const apiPod = api.spec.template.spec;
    t.same((apiPod.containers as Doc[]).map((c) => c.name).sort(), ['envoy', 'rating-api'], 'no sidecar left in the API pods');
    t.notOk((apiPod.volumes as Doc[]).some((v) => v.name === 'rules'), 'nor its volumes');

    for (const doc of docs) {
      t.equal(doc.metadata?.labels?.['app.kubernetes.io/part-of'], 'openclaw', `${doc.kind} ${doc.metadata?.name} is labelled part-of openclaw`);
    }
    const shared = find(docs, 'Deployment', 'openclaw-ratelimit');
    t.equal(shared.spec.replicas, 3);
    checkRateLimitContainer(t, docs, shared.spec.template.spec);

    const service = find(docs, 'Service', 'openclaw-ratelimit');
    t.equal(service.spec.clusterIP, 'None', 'headless: Envoy balances gRPC over every replica');
    t.same(service.spec.selector, shared.spec.template.metadata.labels);
    t.same((service.spec.ports as Doc[]).map((p) => p.port).sort(), [HTTP_PORT, GRPC_PORT]);

    const pdb = find(docs, 'PodDisruptionBudget', 'openclaw-ratelimit');
    t.same(pdb.spec.selector.matchLabels, shared.spec.template.metadata.labels);

    const envoy = envoyConfig(docs, apiPod);
    t.same(clusterAddress(envoy, 'ratelimit'), { address: 'openclaw-ratelimit', port: GRPC_PORT }, 'Envoy calls the Service');
    t.same(envoy, shippedExtAuthz('openclaw-ratelimit', '127.0.0.1'), 'the same as deploy/envoy/envoy-ext-authz.yaml but for the addresses and the admin on loopback');
  });
}

t.test('the Kubernetes rules are the example config (the copy cannot drift)', async (t) => {
  const { loadConfig } = await import('../../../src/config/load.js');
  const strip = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8').split('\n').filter((line) => !line.startsWith('#')).join('\n');
  t.equal(strip('deploy/k8s/base/rules/openclaw.yaml'), strip('examples/openclaw.yaml'), 'same rules, comments aside');
  const compiled = loadConfig(join(REPO_ROOT, 'deploy/k8s/base/rules/openclaw.yaml'));
  t.same([...compiled.domains.keys()], ['openclaw']);
});
