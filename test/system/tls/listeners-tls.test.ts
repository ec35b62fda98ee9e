// SPEC §12: TLS on both listeners, mTLS, rotation without restart. Real TLS
// clients (node:https, node:tls, grpc-js over TLS) against the real server,
// certificates made by openssl in a temp dir.
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { TlsConfigError } from '../../../src/errors.js';
import { clientConstructor } from '../../helpers/grpc.js';
import { RawHttpConnection } from '../../helpers/http1.js';
import { MAIN, spawnServer } from '../../helpers/process.js';
import { startServer } from '../../helpers/server.js';
import { makePki, type Issued } from '../../helpers/tls.js';
import { waitFor } from '../../helpers/wait.js';

const config = fileURLToPath(new URL('../../fixtures/shop.yaml', import.meta.url));
const pki = makePki();
t.teardown(() => pki.remove());
const ca = readFileSync(pki.ca);
const SERVING = 1; // grpc.health.v1.HealthCheckResponse.ServingStatus

interface ClientCert { cert: Buffer; key: Buffer }
interface HttpsAnswer { status: number; body: string; serial: string }

function httpsRequest(port: number, path: string, options: { client?: ClientCert; method?: string; body?: string } = {}): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path, method: options.method ?? 'GET', ca, agent: false,
      ...(options.client === undefined ? {} : { cert: options.client.cert, key: options.client.key }),
      timeout: 10_000,
    }, (res) => {
      const serial = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber;
      let body = '';
      res.on('data', (chunk: Buffer) => { body += chunk.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, serial }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A fresh handshake on `port`; resolves with the serial number the server presented. */
function handshakeSerial(port: number, alpn?: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, ...(alpn === undefined ? {} : { ALPNProtocols: alpn }) }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial);
    });
    socket.on('error', reject);
  });
}

type Unary = (request: object, callback: (error: grpc.ServiceError | null, response?: { status?: string | number }) => void) => void;
function grpcHealth(port: number, credentials: grpc.ChannelCredentials): Promise<{ error: grpc.ServiceError | null; status?: string | number }> {
  // The certificate names localhost and 127.0.0.1; an IP as TLS server name is deprecated (RFC 6066).
  const Health = clientConstructor('grpc.health.v1.Health') as unknown as new (
    address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions) => grpc.Client;
  const client = new Health(`127.0.0.1:${port}`, credentials,
    { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' });
  return new Promise((resolve) => {
    const check = (client as unknown as { Check: Unary }).Check.bind(client);
    check({ service: '' }, (error, response) => {
      client.close();
      resolve({ error, status: response?.status });
    });
  });
}

/** Installs an issued certificate as the live files, each by an atomic rename (as a Secret update does). */
function install(issued: Issued, live: { cert: string; key: string }, parts: Array<'cert' | 'key'> = ['key', 'cert']): void {
  for (const part of parts) {
    const next = `${live[part]}.next`;
    copyFileSync(issued[part], next);
    renameSync(next, live[part]);
  }
}

async function metric(port: number, name: string): Promise<number> {
  const text = (await httpsRequest(port, '/metrics')).body;
  return Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\d+)`, 'm').exec(text)?.[1] ?? Number.NaN);
}

t.test('TLS on both listeners; certificate rotation without restart', async (t) => {
  const first = pki.issue('server-1', 'server');
  const live = { cert: join(pki.dir, 'live-cert.pem'), key: join(pki.dir, 'live-key.pem') };
  install(first, live);
  const server = await startServer({ config, 'tls-cert': live.cert, 'tls-key': live.key });
  t.teardown(() => server.stop());

  const health = await httpsRequest(server.httpPort, '/healthz');
  t.equal(health.status, 200, 'HTTPS answers');
  t.equal(health.serial, first.serial);
  const body = '{"descriptors":[{"entries":[{"key":"api_key","value":"tls"}]}]}';
  const decision = await httpsRequest(server.httpPort, '/v1/check', { method: 'POST', body });
  t.equal(decision.status, 200);
  t.match(JSON.parse(decision.body), { overall_code: 'OK' });
  const tlsGrpc = await grpcHealth(server.grpcPort, grpc.credentials.createSsl(ca));
  t.equal(tlsGrpc.error, null, 'gRPC over TLS answers');
  t.equal(tlsGrpc.status, SERVING);
  t.equal(await handshakeSerial(server.grpcPort, ['h2']), first.serial, 'the gRPC listener presents the same certificate');
  const plain = await grpcHealth(server.grpcPort, grpc.credentials.createInsecure());
  t.not(plain.error, null, 'a plain-text gRPC client gets no answer');

  const second = pki.issue('server-2', 'server');
  install(second, live);
  await waitFor('HTTPS handshakes present the new certificate', async () => (await handshakeSerial(server.httpPort)) === second.serial, 15_000, 100);
  await waitFor('gRPC handshakes present the new certificate', async () => (await handshakeSerial(server.grpcPort, ['h2'])) === second.serial, 15_000, 100);
  t.pass('both listeners rotated without a restart');
  t.equal((await httpsRequest(server.httpPort, '/healthz')).status, 200);
  t.equal((await grpcHealth(server.grpcPort, grpc.credentials.createSsl(ca))).status, SERVING, 'a new gRPC channel works with the new certificate');
  t.equal(await metric(server.httpPort, 'ratelimit_tls_reloads_total{result="success"}'), 1);

  // Half a rotation (the cert written, its key not yet): the old pair stays in use.
  const third = pki.issue('server-3', 'server');
  install(third, live, ['cert']);
  await waitFor('the unusable pair is counted', async () => (await metric(server.httpPort, 'ratelimit_tls_reloads_total{result="failure"}')) === 1, 15_000, 100);
  t.equal(await handshakeSerial(server.httpPort), second.serial, 'HTTPS still presents the last good certificate');
  t.equal(await handshakeSerial(server.grpcPort, ['h2']), second.serial, 'so does gRPC');
  t.equal(await metric(server.httpPort, 'ratelimit_tls_last_reload_successful'), 0, 'the files on disk are not the ones in use');
  install(third, live, ['key']);
  await waitFor('the completed pair is used', async () => (await handshakeSerial(server.httpPort)) === third.serial
    && (await handshakeSerial(server.grpcPort, ['h2'])) === third.serial, 15_000, 100);
  t.equal(await metric(server.httpPort, 'ratelimit_tls_reloads_total{result="failure"}'), 1, 'the failure was reported once, not every poll');
  t.equal(await metric(server.httpPort, 'ratelimit_tls_last_reload_successful'), 1, 'and in use again once the pair is whole');
});

t.test('mTLS: --tls-client-ca refuses clients without a certificate it signed', async (t) => {
  const serverCert = pki.issue('mtls-server', 'server');
  const client = pki.issue('client-1', 'client');
  const clientCert: ClientCert = { cert: readFileSync(client.cert), key: readFileSync(client.key) };
  const stranger = makePki('another-ca');
  t.teardown(() => stranger.remove());
  const strangerIssued = stranger.issue('stranger', 'client');
  const strangerCert: ClientCert = { cert: readFileSync(strangerIssued.cert), key: readFileSync(strangerIssued.key) };
  const server = await startServer({ config, 'tls-cert': serverCert.cert, 'tls-key': serverCert.key, 'tls-client-ca': pki.ca });
  t.teardown(() => server.stop());

  t.equal((await httpsRequest(server.httpPort, '/healthz', { client: clientCert })).status, 200, 'a client certificate signed by the CA is let in');
  await t.rejects(httpsRequest(server.httpPort, '/healthz'), /certificate required|ECONNRESET|socket hang up/,
    'a client without a certificate gets no answer');
  await t.rejects(httpsRequest(server.httpPort, '/healthz', { client: strangerCert }), /unknown ca|ECONNRESET|socket hang up/,
    'nor does one signed by another CA');

  const withCert = await grpcHealth(server.grpcPort, grpc.credentials.createSsl(ca, clientCert.key, clientCert.cert));
  t.equal(withCert.status, SERVING, 'gRPC with a client certificate');
  const withoutCert = await grpcHealth(server.grpcPort, grpc.credentials.createSsl(ca));
  t.not(withoutCert.error, null, 'gRPC without a client certificate is refused');
  const strangerGrpc = await grpcHealth(server.grpcPort, grpc.credentials.createSsl(ca, strangerCert.key, strangerCert.cert));
  t.not(strangerGrpc.error, null, 'gRPC with a certificate of another CA is refused');
});

t.test('bad TLS settings and files are refused at start-up, naming the problem (exit 2)', async (t) => {
  const good = pki.issue('startup', 'server');
  const other = pki.issue('startup-other', 'server');
  const garbage = join(pki.dir, 'garbage.pem');
  writeFileSync(garbage, 'not a certificate\n');
  const run = (args: string[]) => spawnSync(process.execPath, [MAIN, 'serve', '--config', config, '--http-port', '0', '--grpc-port', '0', ...args],
    { encoding: 'utf8', timeout: 20_000 });

  const onlyCert = run(['--tls-cert', good.cert]);
  t.equal(onlyCert.status, 2);
  t.match(onlyCert.stderr, /give --tls-cert \(RL_TLS_CERT\) and --tls-key \(RL_TLS_KEY\) together/);
  const caAlone = run(['--tls-client-ca', pki.ca]);
  t.equal(caAlone.status, 2);
  t.match(caAlone.stderr, /--tls-client-ca \(RL_TLS_CLIENT_CA\) needs --tls-cert and --tls-key/);
  const missing = run(['--tls-cert', join(pki.dir, 'nope.pem'), '--tls-key', good.key]);
  t.equal(missing.status, 2);
  t.match(missing.stderr, /nope\.pem: cannot read/);
  const notPem = run(['--tls-cert', garbage, '--tls-key', good.key]);
  t.equal(notPem.status, 2);
  t.match(notPem.stderr, /garbage\.pem.*not a usable certificate/);
  const mismatched = run(['--tls-cert', good.cert, '--tls-key', other.key]);
  t.equal(mismatched.status, 2, 'a key that is not the certificate\'s');
  t.match(mismatched.stderr, /not a usable certificate, key/);
  await t.rejects(startServer({ config, 'tls-cert': garbage, 'tls-key': good.key }), TlsConfigError);
});

t.test('a client stuck in the TLS handshake cannot hold the drain past --shutdown-timeout-ms (exit 0)', async (t) => {
  const issued = pki.issue('drain-server', 'server');
  const server = await spawnServer(['--config', config, '--tls-cert', issued.cert, '--tls-key', issued.key,
    '--shutdown-timeout-ms', '2000', '--http-request-timeout-ms', '600000']);
  t.teardown(() => server.stop('SIGKILL'));
  const silent = await RawHttpConnection.open(server.httpPort); // TCP only: no ClientHello ever comes
  t.equal((await httpsRequest(server.httpPort, '/healthz')).status, 200, 'the server is up');
  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0);
  await silent.closed;
  t.pass('the half-open handshake was cut');
  t.match(server.output(), /HTTP drain time over/);
});
