// Our server's own count of decisions (ratelimit_decisions_total), scraped
// from GET /metrics before and after a measured run: how many decisions a row
// really made, by outcome — the check that gRPC errors are not counted as speed.

export type OutcomeCounts = Map<string, number>;

/** Pseudo-outcome carrying ratelimit_store_errors_total (failed Redis calls), not a decision. */
export const STORE_ERRORS = '#store_errors';

type DecisionLabel = 'outcome' | 'decided_by';

/** Sum of ratelimit_decisions_total by `label` (outcome, or who decided), plus STORE_ERRORS; throws when /metrics is unreachable. */
export async function scrapeDecisions(httpPort: number, label: DecisionLabel): Promise<OutcomeCounts> {
  return countDecisions(await metricsText(httpPort), label);
}

/** Both sums of one scrape: by outcome and by who decided. */
export async function scrapeOutcomesAndDeciders(httpPort: number): Promise<{ outcomes: OutcomeCounts; deciders: OutcomeCounts }> {
  const text = await metricsText(httpPort);
  return { outcomes: countDecisions(text, 'outcome'), deciders: countDecisions(text, 'decided_by') };
}

async function metricsText(httpPort: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  return response.text();
}

function countDecisions(text: string, label: DecisionLabel): OutcomeCounts {
  const labelValue = new RegExp(`${label}="([^"]*)"`);
  const counts: OutcomeCounts = new Map();
  for (const line of text.split('\n')) {
    if (line.startsWith('ratelimit_store_errors_total')) {
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (Number.isFinite(value)) counts.set(STORE_ERRORS, (counts.get(STORE_ERRORS) ?? 0) + value);
      continue;
    }
    if (!line.startsWith('ratelimit_decisions_total{')) continue;
    const outcome = labelValue.exec(line)?.[1] ?? '?';
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) counts.set(outcome, (counts.get(outcome) ?? 0) + value);
  }
  return counts;
}

export function outcomeDelta(before: OutcomeCounts, after: OutcomeCounts): OutcomeCounts {
  const delta: OutcomeCounts = new Map();
  for (const [outcome, value] of after) {
    const d = value - (before.get(outcome) ?? 0);
    if (d > 0) delta.set(outcome, d);
  }
  return delta;
}

export function total(counts: OutcomeCounts): number {
  let sum = 0;
  for (const [outcome, value] of counts) if (outcome !== STORE_ERRORS) sum += value;
  return sum;
}
