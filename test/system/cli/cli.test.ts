import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { resolveSettings } from '../../../src/server/settings.js';
import { MAIN, spawnServer, waitFor } from '../../helpers/process.js';

const example = fileURLToPath(new URL('../../../examples/openclaw.yaml', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'rl-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 20_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const limitYaml = (rpu: number) => `domain: app
descriptors:
  - key: api_key
    rate_limit: { unit: hour, requests_per_unit: ${rpu} }
`;
const checkBody = JSON.stringify({ descriptors: [{ entries: [{ key: 'api_key', value: 'k' }] }] });
async function remaining(url: string): Promise<number> {
  const response = await fetch(`${url}/v1/check`, {
    method: 'POST',
    body: JSON.stringify({ descriptors: [{ entries: [{ key: 'api_key', value: 'probe' }], hits_addend: 0 }] }),
  });
  const json = (await response.json()) as { statuses: Array<{ limit: { requests_per_unit: number } }> };
  return json.statuses[0]!.limit.requests_per_unit;
}

t.test('check-config: exit 0 on a good config, 2 with the reason on a bad one', async (t) => {
  const good = run(['check-config', example]);
  t.equal(good.code, 0);
  t.match(good.stdout, /OK \(1 domain: openclaw\)/);
  const badFile = join(dir, 'bad.yaml');
  writeFileSync(badFile, 'domain: x\ndescriptors:\n  - key: a\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n');
  const bad = run(['check-config', badFile]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /bad\.yaml:\d+:\d+: descriptors\[0\]\.rate_limit\.unit: .*fortnight/);
  t.equal(run(['check-config', join(dir, 'missing.yaml')]).code, 2);
  t.equal(run(['check-config']).code, 2);
  const several = run(['check-config', example, badFile]);
  t.equal(several.code, 2, 'regression: every path is checked, not only the first (check-config rules/*.yaml in CI)');
  t.match(several.stdout, /openclaw\.yaml: OK/);
  t.match(several.stderr, /bad\.yaml:\d+:\d+: descriptors\[0\]\.rate_limit\.unit/);
  t.equal(run(['check-config', '--config', example]).code, 2, 'an option is a usage error, not a path');
});

t.test('check-config reports every problem of every file, each at its file:line:column', async (t) => {
  const rules = join(dir, 'many');
  mkdirSync(rules);
  writeFileSync(join(rules, 'a.yaml'), 'domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight, requests_per_unit: -1 }\n');
  writeFileSync(join(rules, 'b.yaml'), 'domain: b\ndescriptors:\n  - key: k\n    ratelimit: { unit: second, requests_per_unit: 1 }\n');
  const result = run(['check-config', rules]);
  t.equal(result.code, 2);
  t.same(result.stderr.trim().split('\n'), [
    `${join(rules, 'a.yaml')}:4:19: descriptors[0].rate_limit.unit: unknown unit "fortnight" (expected second, minute, hour, day, week, month or year)`,
    `${join(rules, 'a.yaml')}:4:36: descriptors[0].rate_limit.requests_per_unit: expected a whole number of requests, 0 or more, got -1`,
    `${join(rules, 'b.yaml')}:4:5: descriptors[0].ratelimit: unknown key (did you mean "rate_limit"?)`,
  ]);
});

t.test('check-config --merge-domains checks as serve would load', async (t) => {
  const rules = join(dir, 'merged');
  mkdirSync(rules);
  writeFileSync(join(rules, 'a.yaml'), limitYaml(5));
  writeFileSync(join(rules, 'b.yaml'), 'domain: app\ndescriptors:\n  - key: user\n    rate_limit: { unit: minute, requests_per_unit: 5, algorithm: sliding_window }\n');
  t.match(run(['check-config', rules]).stderr, /b\.yaml:1:1: domain: duplicate domain "app"/);
  t.match(run(['check-config', '--merge-domains', rules]), { code: 0, stdout: /OK \(1 domain: app\)/ });
  t.match(run(['check-config', rules], { RL_MERGE_DOMAINS: 'true' }), { code: 0 }, 'RL_MERGE_DOMAINS as for serve');
  // Every store decides every algorithm: --store is no check-config flag (it was, while a store could lack one).
  t.equal(run(['check-config', '--store', 'redis', rules]).code, 2, '--store is an unknown flag of check-config');
});

t.test('usage errors exit 2 and say why', async (t) => {
  const unknownCommand = run(['frobnicate']);
  t.equal(unknownCommand.code, 2);
  t.equal(unknownCommand.stderr, 'unknown command "frobnicate": the commands are serve, check-config, inspect, reset and version\n'
    + 'run "openclaw-ratelimit help" for what each does\n', 'two lines, not the whole usage');
  // The command line parser's refusals in our words (node's own add advice about `--` that misleads here).
  for (const [args, words] of [
    [['serve', '--config', example, '--nope'], 'unknown flag --nope'],
    [['serve', '--config', example, '--http-port'], '--http-port needs a value'],
    [['serve', '--help=yes'], '--help takes no value'],
    [['serve', 'extra'], 'unexpected argument "extra": this command takes flags only'],
    [['check-config', '--config', example], 'check-config takes the config files or directories themselves, without --config: check-config PATH [PATH ...]'],
  ] as const) {
    const refused = run([...args]);
    t.equal(refused.code, 2, args.join(' '));
    t.equal(refused.stderr.split('\n')[0], words, args.join(' '));
  }
  const badPort = run(['serve', '--config', example, '--http-port', 'eighty']);
  t.equal(badPort.code, 2);
  t.match(badPort.stderr, /--http-port \(RL_HTTP_PORT\)/);
  const badPolicy = run(['serve', '--config', example], { RL_ON_STORE_FAILURE: 'maybe' });
  t.equal(badPolicy.code, 2);
  t.match(badPolicy.stderr, /RL_ON_STORE_FAILURE/);
  t.equal(run(['serve']).code, 2, '--config is required');
  const noTimeout = run(['serve', '--config', example], { RL_HTTP_REQUEST_TIMEOUT_MS: '0' });
  t.equal(noTimeout.code, 2, 'a request timeout of 0 (never) is refused');
  t.match(noTimeout.stderr, /--http-request-timeout-ms \(RL_HTTP_REQUEST_TIMEOUT_MS\): expected an integer from 100/);
  const badCidr = run(['serve', '--config', example, '--trusted-proxies', '10.0.0.0/33']);
  t.equal(badCidr.code, 2, 'a bad CIDR is a usage error like any other flag');
  t.match(badCidr.stderr, /--trusted-proxies \(RL_TRUSTED_PROXIES\): "10\.0\.0\.0\/33" has a bad prefix length/);
  const badConfig = join(dir, 'broken.yaml');
  writeFileSync(badConfig, 'domain: [');
  const start = run(['serve', '--config', badConfig, '--http-port', '0', '--grpc-port', '0']);
  t.equal(start.code, 2, 'an invalid config at start-up is fatal with exit 2');
  t.match(start.stderr, /broken\.yaml/);
  const typo = run(['serve', '--config', example, '--default-domain', 'opencalw', '--http-port', '0', '--grpc-port', '0']);
  t.equal(typo.code, 2, 'regression: a --default-domain that is not loaded would silently turn limiting off');
  t.match(typo.stderr, /--default-domain "opencalw" is not a loaded domain \(loaded: openclaw\)/);
});

t.test('--help: serve, the top level and check-config each print their usage and exit 0', async (t) => {
  const help = run(['serve', '--help']);
  t.equal(help.code, 0);
  for (const name of ['--http-port', '--redis-cluster', '--on-store-failure', '--http-request-timeout-ms',
    '--http-keep-alive-timeout-ms', '--http-max-connections', 'RL_HTTP_PORT']) {
    t.match(help.stdout, name);
  }
  t.same(help.stdout.split('\n').filter((line) => line.length > 80), [], 'fits 80 columns');
  t.equal(run(['--help']).stdout, help.stdout, 'the top-level --help is the same text');
  const check = run(['check-config', '--help']);
  t.equal(check.code, 0);
  t.notMatch(check.stdout, /--store/);
  t.match(check.stdout, /--merge-domains/);
  const unknown = run(['check-config', '--nope', example]);
  t.equal(unknown.code, 2, 'check-config parses its flags as serve does: an unknown one is a usage error');
  t.match(unknown.stderr, /--nope/);
  t.match(unknown.stderr, /openclaw-ratelimit check-config --help/);
});

t.test('env vars configure serve; flags win over them', async (t) => {
  const file = join(dir, 'env.yaml');
  writeFileSync(file, limitYaml(7));
  const server = await spawnServer(['--http-port', '0'], { RL_CONFIG: file, RL_HTTP_PORT: '1' });
  t.teardown(() => server.stop());
  t.equal(await remaining(server.httpUrl), 7, 'RL_CONFIG was read; --http-port 0 won over RL_HTTP_PORT=1');
});

t.test('hot reload: a file edit takes effect; a broken edit keeps the old config and is counted', async (t) => {
  const file = join(dir, 'hot.yaml');
  writeFileSync(file, limitYaml(10));
  const server = await spawnServer(['--config', file]);
  t.teardown(() => server.stop());
  t.equal(await remaining(server.httpUrl), 10);
  writeFileSync(file, limitYaml(20));
  await waitFor('reload after edit', async () => (await remaining(server.httpUrl)) === 20, 10_000);
  t.pass('edit reloaded');
  const metricsText = async (): Promise<string> => (await fetch(`${server.httpUrl}/metrics`)).text();
  t.match(await metricsText(), /\nratelimit_config_last_reload_successful 1\n/, 'the files on disk are in force');
  writeFileSync(file, 'domain: app\ndescriptors: [ { key: a, rate_limit: { unit: parsec } } ]\n');
  await waitFor('failure counted', async () => /config_reloads_total\{result="failure"\} [1-9]/.test(await metricsText()), 10_000);
  t.equal(await remaining(server.httpUrl), 20, 'the old config stays in force');
  t.match(server.output(), /config reload failed/);
  t.match(await metricsText(), /\nratelimit_config_last_reload_successful 0\n/, 'and the gauge says the files on disk are not (a restart would refuse them)');
  writeFileSync(file, limitYaml(30));
  await waitFor('reload after the fix', async () => (await remaining(server.httpUrl)) === 30, 10_000);
  t.match(await metricsText(), /\nratelimit_config_last_reload_successful 1\n/, 'fixed: 1 again');
});

t.test('SIGHUP reloads the config', async (t) => {
  const file = join(dir, 'hup.yaml');
  writeFileSync(file, limitYaml(4));
  const server = await spawnServer(['--config', file]);
  t.teardown(() => server.stop());
  // Rewrite with the same mtime-independent content change, then signal.
  writeFileSync(file, limitYaml(40));
  server.child.kill('SIGHUP');
  await waitFor('reload after SIGHUP', async () => (await remaining(server.httpUrl)) === 40, 10_000);
  t.match(server.output(), /SIGHUP/);
});

t.test('SIGTERM: in-flight requests finish, then exit 0', async (t) => {
  const server = await spawnServer(['--config', example]);
  // Start a request whose body is still arriving when SIGTERM lands.
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(`${server.httpUrl}/v1/check`, { method: 'POST', headers: { 'content-length': String(checkBody.length) } }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => { body += chunk.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.write(checkBody.slice(0, 10));
    setTimeout(() => {
      server.child.kill('SIGTERM');
      setTimeout(() => req.end(checkBody.slice(10)), 300);
    }, 100);
  });
  const answered = await response;
  t.equal(answered.status, 200, 'the in-flight decision was answered');
  t.match(answered.body, /"overall_code":"OK"/);
  t.equal(await server.exited, 0, 'exit code 0');
  t.match(server.output(), /draining/);
  t.match(server.output(), /"stopped"/);
  t.ok(readFileSync(example, 'utf8').length > 0);
});

t.test('regression: SIGTERM exits even when stdout is a closed pipe (serve | head -1)', async (t) => {
  const server = await spawnServer(['--config', example]);
  server.child.stdout!.destroy(); // the reader goes away: every later log line meets EPIPE
  await new Promise((resolve) => setTimeout(resolve, 100));
  server.child.kill('SIGTERM');
  const code = await Promise.race([server.exited, new Promise((resolve) => setTimeout(() => resolve('still running after 5 s'), 5_000))]);
  if (code === 'still running after 5 s') server.child.kill('SIGKILL');
  t.equal(code, 0);
});

t.test('--region/--regions are checked at start-up, each mistake named (exit 2)', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--region', 'a'], /give --region \(RL_REGION\) and --regions \(RL_REGIONS\) together/],
    [['--region', 'a', '--regions', 'a=redis://127.0.0.1:1'], /--regions \(RL_REGIONS\): give at least two regions/],
    [['--region', 'x', '--regions', 'a=redis://127.0.0.1:1;b=redis://127.0.0.1:2', '--redis', 'redis://127.0.0.1:1'],
      /--region \(RL_REGION\): "x" is not one of --regions \(a, b\)/],
    [['--region', 'a', '--regions', 'a=redis://127.0.0.1:9;b=redis://127.0.0.1:2', '--redis', 'redis://127.0.0.1:1'],
      /region "a" must have this sidecar's own Redis address \(redis:\/\/127\.0\.0\.1:1\)/],
    [['--region', 'a', '--regions', 'a=redis://127.0.0.1:1;b=memcached://x:1', '--redis', 'redis://127.0.0.1:1'],
      /region "b": expected redis:\/\/host:port, rediss:\/\/host:port or redis-cluster:\/\/host:port,host:port/],
    [['--region', 'a', '--regions', 'a=redis://127.0.0.1:1;a=redis://127.0.0.1:2', '--redis', 'redis://127.0.0.1:1'], /region "a" is given twice/],
    [['--region', 'a', '--regions', 'a=redis://127.0.0.1:1;b=redis-cluster://h:1?nat=h:1>nowhere'], /region "b" nat: "nowhere" is not host:port/],
    [['--region', 'a', '--regions', 'a=redis://127.0.0.1:1;b=redis://127.0.0.1:2'], /--regions needs the Redis store/],
  ];
  for (const [flags, message] of cases) {
    const result = run(['serve', '--config', example, ...flags]);
    t.equal(result.code, 2, flags.join(' '));
    t.match(result.stderr, message);
  }
});

t.test('scope: global is a token-bucket limit and shows in check-config and /v1/config', async (t) => {
  const file = join(dir, 'global.yaml');
  writeFileSync(file, 'domain: g\ndescriptors:\n  - key: api_key\n    rate_limit: { unit: second, requests_per_unit: 5, scope: global }\n');
  t.match(run(['check-config', file]), { code: 0, stdout: /OK \(1 domain: g\)/ });
  const bad = join(dir, 'global-window.yaml');
  writeFileSync(bad, 'domain: g\ndescriptors:\n  - key: api_key\n    rate_limit: { unit: second, requests_per_unit: 5, scope: global, algorithm: fixed_window }\n');
  const refused = run(['check-config', bad]);
  t.equal(refused.code, 2);
  t.match(refused.stderr, /descriptors\[0\]\.rate_limit\.scope: global applies only to token_bucket limits \(this limit uses fixed_window\)/);
  const typo = join(dir, 'global-typo.yaml');
  writeFileSync(typo, 'domain: g\ndescriptors:\n  - key: api_key\n    rate_limit: { unit: second, requests_per_unit: 5, scope: planet }\n');
  t.match(run(['check-config', typo]).stderr, /rate_limit\.scope: expected region or global, got "planet"/);
  const server = await spawnServer(['--config', file]);
  t.teardown(() => server.stop());
  const shown = await (await fetch(`${server.httpUrl}/v1/config`)).json() as { domains: { config: { descriptors: { rate_limit: { scope: string } }[] } }[] };
  t.equal(shown.domains[0]!.config.descriptors[0]!.rate_limit.scope, 'global', '/v1/config shows the scope');
});

t.test('--redis-sentinel and --redis-sentinel-master: checked at start-up, read from RL_*, and they imply the Redis store', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--redis-sentinel', '127.0.0.1:26379'], /give --redis-sentinel \(RL_REDIS_SENTINEL\) and --redis-sentinel-master \(RL_REDIS_SENTINEL_MASTER\) together/],
    [['--redis-sentinel-master', 'mymaster'], /give --redis-sentinel \(RL_REDIS_SENTINEL\) and --redis-sentinel-master/],
    [['--redis-sentinel', 'sentinel-without-port', '--redis-sentinel-master', 'm'], /--redis-sentinel \(RL_REDIS_SENTINEL\): expected host:port,host:port,\.\.\./],
    [['--redis-sentinel', '127.0.0.1:26379', '--redis-sentinel-master', 'm', '--redis', 'redis://127.0.0.1:6379'],
      /give one of --redis, --redis-cluster or --redis-sentinel, not several/],
    [['--redis-sentinel-password', 'x'], /--redis-sentinel-username and --redis-sentinel-password need --redis-sentinel/],
    [['--region', 'a', '--regions', 'a=redis://127.0.0.1:1;b=redis://127.0.0.1:2', '--redis-sentinel', '127.0.0.1:26379',
      '--redis-sentinel-master', 'm'], /--regions does not support --redis-sentinel yet/],
  ];
  // In-process (one spawn each would add seconds): the same resolveSettings that serve runs before it exits 2.
  for (const [flags, message] of cases) {
    const raw: Record<string, string> = { config: example };
    for (let i = 0; i < flags.length; i += 2) raw[flags[i]!.slice(2)] = flags[i + 1]!;
    t.throws(() => resolveSettings(raw, {}), { name: 'SettingsError', message }, flags.join(' '));
  }
  const help = run(['serve', '--help']).stdout;
  for (const name of ['--redis-sentinel VALUE', 'RL_REDIS_SENTINEL)', '--redis-sentinel-master', 'RL_REDIS_SENTINEL_MASTER',
    '--redis-sentinel-password', 'RL_REDIS_SENTINEL_PASSWORD', '--redis-sentinel-username', 'RL_REDIS_SENTINEL_USERNAME']) {
    t.match(help, name, `--help shows ${name}`);
  }
  // No Sentinel listens there: the store is Redis (not memory) and the failure policy decides until one answers.
  const server = await spawnServer(['--config', example, '--redis-connect-wait-ms', '0'],
    { RL_REDIS_SENTINEL: '127.0.0.1:1', RL_REDIS_SENTINEL_MASTER: 'nowhere' });
  t.teardown(() => server.stop());
  const readyz = await (await fetch(`${server.httpUrl}/readyz`)).text();
  t.match(readyz, /redis sentinel:\S+ .*deciding with: store-failure policy/, 'the Redis store, from RL_REDIS_SENTINEL*');
  t.match(server.output(), /"store":"redis"/);
});
