// The capped hot key (issue 18's target): one key limited to 200/s, burst 200
// (bench.yaml `capped-key`), saturated through three of our sidecars on one
// Redis deployment at their defaults (local leases on). Over the measured
// run the sidecars together must admit at most what the bucket allows
// (burst + rate × T) and, leases stranding little, at least 85 % of rate × T.
import autocannon from 'autocannon';
import type { TargetCheck } from './report.js';
import { scrapeDecisions, type OutcomeCounts } from './server-metrics.js';
import { startOurServer, type ServerUnderTest } from './servers.js';
import { checkBody } from './workload.js';

const CAPPED_KEY = 'capped-key';
const RATE_PER_S = 200;
const BURST = 200;
const SIDECARS = 3;
/** Connections per sidecar: together far more than 200/s. */
const CONNECTIONS = 8;
/** At least this share of rate × T admitted (issue 18). */
const MIN_SHARE = 0.85;

export interface CappedResult {
  /** From before the first generator started to after the last one stopped: every admission falls inside. */
  readonly seconds: number;
  readonly requests: number;
  readonly admitted: number;
  readonly others: number;
  /** Decisions by who decided (decided_by), summed over the sidecars; STORE_ERRORS counts their failed Redis calls. */
  readonly deciders: OutcomeCounts;
}

/** Saturates the capped key through three sidecars for `seconds`; counts what they admitted. */
export async function cappedKeyRun(root: string, serverArgs: string[], seconds: number): Promise<CappedResult> {
  const servers: ServerUnderTest[] = [];
  try {
    for (let i = 0; i < SIDECARS; i++) servers.push(await startOurServer(root, serverArgs));
    const startedMs = performance.now();
    const results = await Promise.all(servers.map((server) => new Promise<autocannon.Result>((resolve, reject) => {
      autocannon({
        url: `http://127.0.0.1:${server.httpPort}/v1/check`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: checkBody(CAPPED_KEY),
        connections: CONNECTIONS,
        duration: seconds,
        timeout: 10,
      }, (error, done) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(done)));
    })));
    const elapsedS = (performance.now() - startedMs) / 1000;
    const deciders: OutcomeCounts = new Map();
    for (const server of servers) {
      for (const [by, count] of await scrapeDecisions(server.httpPort!, 'decided_by')) deciders.set(by, (deciders.get(by) ?? 0) + count);
    }
    let admitted = 0;
    let requests = 0;
    let others = 0;
    for (const result of results) {
      for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) {
        const count = stat.count ?? 0;
        requests += count;
        if (code === '200') admitted += count;
        else if (code !== '429') others += count;
      }
      others += result.errors + result.timeouts;
    }
    return { seconds: elapsedS, requests, admitted, others, deciders };
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
}

/**
 * The target as a check. T is the wall time from before the three
 * generators start to after the last stops (each runs `seconds`, but on a
 * busy machine they do not start together): every admission falls inside
 * it, so burst + rate × T bounds them.
 */
export function cappedKeyCheck(result: CappedResult | undefined): TargetCheck {
  const name = `capped hot key (${RATE_PER_S}/s, burst ${BURST}) through ${SIDECARS} sidecars: ≤ burst + rate × T and ≥ ${MIN_SHARE * 100} % of rate × T`;
  if (result === undefined) return { name, pass: undefined, detail: 'no result' };
  const bound = BURST + RATE_PER_S * result.seconds;
  const floor = MIN_SHARE * RATE_PER_S * result.seconds;
  const deciders = [...result.deciders].filter(([, n]) => n > 0).map(([by, n]) => `${by} ${n}`).join(', ');
  const detail = `${result.admitted} admitted of ${result.requests} in ${result.seconds.toFixed(2)} s (bound ${bound.toFixed(0)}, ${(100 * result.admitted / (RATE_PER_S * result.seconds)).toFixed(1)} % of rate × T); decided by: ${deciders}`
    + (result.others > 0 ? `; ${result.others} errors or other statuses` : '');
  return { name, pass: result.admitted <= bound && result.admitted >= floor && result.others === 0, detail };
}
