// Metrics of token budgets (overdraft limits) and reports: what was charged.
// Labels come from config only (the domain). A gauge of the debt itself
// would need one series per bucket key (a request value), so the debt is
// told by counting the charges that left a budget at or below zero instead
// (docs/budgets.md "Metrics").
import { Counter, type Registry } from 'prom-client';
import type { DecisionCharges } from '../core/types.js';

export class BudgetMetrics {
  readonly chargedTokens: Counter<'domain'>;
  readonly debtCharges: Counter<'domain'>;

  constructor(registry: Registry) {
    this.chargedTokens = new Counter({
      name: 'ratelimit_charged_tokens_total',
      help: 'Tokens charged that are recorded whatever the decision: charges on overdraft limits (token budgets) and every charge of POST /v1/report.',
      labelNames: ['domain'] as const,
      registers: [registry],
    });
    this.debtCharges = new Counter({
      name: 'ratelimit_budget_debt_charges_total',
      help: 'Charges that left a token budget (overdraft limit) at or below zero: its next checks are denied until refills pay the debt.',
      labelNames: ['domain'] as const,
      registers: [registry],
    });
  }

  /** Counts a decision's charges (a loaded domain's name: labels from config only). */
  count(domain: string, charges: DecisionCharges): void {
    this.chargedTokens.inc({ domain }, charges.tokens);
    if (charges.intoDebt > 0) this.debtCharges.inc({ domain }, charges.intoDebt);
  }
}
