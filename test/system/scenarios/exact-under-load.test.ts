/**
 * SPEC §9, issue 9: "one global limit" holds when the machine is busy, with
 * DEFAULT settings (50 ms Redis deadline, local fallback, breaker on).
 *
 * 3 real sidecars share a real Redis Cluster (3 masters + 3 replicas); each
 * round sends 20 clients × 15 simultaneous requests on a 10/hour limit over
 * the three sidecars, on fresh keys. Exactly 200 must be allowed every round,
 * no decision may come from the failure policy and no breaker may open:
 *  A. 5 rounds on a shared 2-core machine;
 *  B. 5 rounds while two CPU-burning processes run beside them;
 *  C. 5 rounds (with the burners) where each request carries two descriptors
 *     served by different masters, so every denial goes through the refund
 *     path: the other bucket must lose exactly what the allowed requests took.
 *     (Its limit, 20, is above the 15 requests per client: when both limits
 *     bind inside one burst, takes that are about to be refunded can deny
 *     others meanwhile — the accepted transient under-admission of SPEC §2,
 *     measured in docs/redis.md "How a decision reaches Redis".)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import tap, { type Test } from 'tap';
import { clusterSlot } from '../../../src/store/redis/cluster-slot.js';
import { slotTagFor } from '../../../src/core/keys.js';
import { startRedisCluster } from '../../helpers/redis.js';
import {
  check, flat, getText, metric, startSidecar, statuses, tally, warmUp, writeConfig,
  type Answer, type Descriptor, type Sidecar,
} from './lib.js';

tap.setTimeout(240_000);

const CONFIG = [
  'domain: scenario',
  'descriptors:',
  '  - key: api_key',
  '    rate_limit: { unit: hour, requests_per_unit: 10 }',
  '  - key: client_ip',
  '    rate_limit: { unit: hour, requests_per_unit: 20 }',
  '',
].join('\n');

const config = writeConfig(tap, CONFIG);
const cluster = await startRedisCluster({ t: tap, masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });
const sidecars: Sidecar[] = [];
// Default flags: nothing but the cluster address and the config.
for (const name of ['a', 'b', 'c']) sidecars.push(await startSidecar(tap, { name, config, cluster }));
await warmUp(sidecars);

/** Two processes that burn a core each until stopped. */
function startBurners(): () => void {
  const burners: ChildProcess[] = [0, 1].map(() => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  const stop = (): void => {
    for (const burner of burners) burner.kill('SIGKILL');
  };
  tap.teardown(stop);
  return stop;
}

/** The master serving a slot, from CLUSTER SLOTS of a live node. */
async function slotOwners(): Promise<(slot: number) => string> {
  const text = await cluster.nodes.find((n) => n.running)!.cli('--json', 'CLUSTER', 'SLOTS');
  const ranges = JSON.parse(text) as [number, number, [string, number, string]][];
  return (slot) => {
    const range = ranges.find(([from, to]) => slot >= from && slot <= to);
    return range === undefined ? '?' : `${range[2][0]}:${range[2][1]}`;
  };
}

/** A client_ip value of its own (`10.round.client.x`) whose bucket lives on another master than the api_key's. */
function ipOnAnotherMaster(apiKey: string, round: number, client: number, owner: (slot: number) => string): string {
  const slotOf = (key: string, value: string): number => clusterSlot(`{${slotTagFor([{ key, value }])}}`);
  const keyOwner = owner(slotOf('api_key', apiKey));
  for (let i = 0; ; i++) {
    const ip = `10.${round}.${client}.${i}`;
    if (owner(slotOf('client_ip', ip)) !== keyOwner) return ip;
  }
}

interface RoundResult {
  answers: Answer[];
  clients: string[];
}

/** 20 clients × 15 simultaneous requests, request i of client c through sidecar (c*15+i) % 3. */
async function round(descriptorsOf: (client: number) => Descriptor[], clients: string[]): Promise<RoundResult> {
  const answers = await Promise.all(clients.flatMap((_, c) =>
    Array.from({ length: 15 }, (_, i) => check(sidecars[(c * 15 + i) % 3]!, descriptorsOf(c), 10_000))));
  return { answers, clients };
}

async function policyDecisions(): Promise<number[]> {
  return Promise.all(sidecars.map((s) => metric(s, 'ratelimit_store_failure_decisions_total')));
}

async function breakerOpenings(): Promise<number> {
  let opened = 0;
  for (const sidecar of sidecars) opened += sidecar.proc.output().split('\n').filter((l) => l.includes('"redis circuit open')).length;
  return opened;
}

async function extensions(): Promise<number> {
  return (await Promise.all(sidecars.map((s) => metric(s, 'ratelimit_redis_deadline_extensions_total')))).reduce((a, b) => a + b, 0);
}

function assertExact(t: Test, result: RoundResult, label: string): void {
  const counts = tally(result.answers);
  const ms = result.answers.map((a) => a.ms).sort((a, b) => a - b);
  t.comment(`${label}: ${JSON.stringify(counts)}, latency median ${ms[150]!.toFixed(0)} ms, max ${ms[299]!.toFixed(0)} ms`);
  t.same(Object.keys(counts).filter((s) => s !== '200' && s !== '429'), [], `${label}: every answer is 200 or 429`);
  t.equal(counts['200'] ?? 0, 200, `${label}: exactly 200 allowed`);
  const off = result.clients.filter((_, c) => result.answers.slice(c * 15, c * 15 + 15).filter((a) => a.status === 200).length !== 10);
  t.same(off, [], `${label}: every client allowed exactly 10`);
}

await tap.test('A. 5 rounds of 20 clients × 15 simultaneous requests at default settings: exactly 200 each', async (t) => {
  const errorsBefore = await policyDecisions();
  const extendedBefore = await extensions();
  for (let r = 0; r < 5; r++) {
    const clients = Array.from({ length: 20 }, (_, c) => `a${r}-client-${c}`);
    assertExact(t, await round((c) => [flat('api_key', clients[c]!)], clients), `round A${r + 1}`);
  }
  t.same(await policyDecisions(), errorsBefore, 'no decision came from the failure policy');
  t.equal(await breakerOpenings(), 0, 'no circuit breaker opened');
  t.comment(`deadlines extended for event-loop lag: ${(await extensions()) - extendedBefore}`);
});

await tap.test('B. the same with two CPU-burning processes on the 2-core machine', async (t) => {
  const stop = startBurners();
  try {
    const errorsBefore = await policyDecisions();
    for (let r = 0; r < 5; r++) {
      const clients = Array.from({ length: 20 }, (_, c) => `b${r}-client-${c}`);
      assertExact(t, await round((c) => [flat('api_key', clients[c]!)], clients), `round B${r + 1} (2 burners)`);
    }
    t.same(await policyDecisions(), errorsBefore, 'no decision came from the failure policy');
    t.equal(await breakerOpenings(), 0, 'no circuit breaker opened');
  } finally {
    stop();
  }
});

await tap.test('C. two descriptors on different masters per request (refund path), with the burners', async (t) => {
  const owner = await slotOwners();
  const stop = startBurners();
  try {
    const errorsBefore = await policyDecisions();
    for (let r = 0; r < 5; r++) {
      const clients = Array.from({ length: 20 }, (_, c) => `c${r}-client-${c}`);
      const ips = clients.map((client, c) => ipOnAnotherMaster(client, r, c, owner));
      const result = await round((c) => [flat('api_key', clients[c]!), flat('client_ip', ips[c]!)], clients);
      assertExact(t, result, `round C${r + 1} (2 burners, 2 masters per request)`);
      // Every denial was the api_key's: the client_ip bucket lost exactly the 10 allowed, the 5 denied were given back.
      const left = await Promise.all(ips.map((ip, c) => check(sidecars[c % 3]!, [flat('client_ip', ip, 0)])));
      const wrong = left.map((a, c) => [ips[c], statuses(a)[0]?.limit_remaining]).filter(([, remaining]) => remaining !== 10);
      t.same(wrong, [], `round C${r + 1}: every client_ip bucket has exactly 20 − 10 = 10 left (refunds exact)`);
    }
    t.same(await policyDecisions(), errorsBefore, 'no decision came from the failure policy');
    t.equal(await breakerOpenings(), 0, 'no circuit breaker opened');
  } finally {
    stop();
  }
  const text = (await getText(sidecars[0]!, '/metrics')).text;
  t.match(text, /ratelimit_redis_call_duration_seconds_count\{node="127\.0\.0\.1:\d+"\} \d+/, 'Redis call latency per master is exported');
  t.match(text, /nodejs_eventloop_lag_p99_seconds \d/, 'event-loop delay is exported');
});
