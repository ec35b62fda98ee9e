// The JSON body of a POST /v1/check answer, written as text directly: the
// status of each descriptor from a few fixed fragments, and each limit's
// object built once per compiled limit. Byte for byte what fastify's compiled
// serializer (fast-json-stringify) made of CHECK_RESPONSE_SCHEMA before
// (test/unit/http/check-response.test.ts compares the two).
import type { Decision, DescriptorStatus, ReportedLimit } from '../../core/types.js';
import { InternalError } from '../../errors.js';

/** JSON text of a status's `limit` object, kept per compiled (frozen) limit. */
const limitJsonCache = new WeakMap<ReportedLimit, string>();

function limitObjectJson(limit: ReportedLimit): string {
  let json = `{"requests_per_unit":${integerJson(limit.requestsPerUnit)},"unit":${JSON.stringify(limit.unit)},"burst":${integerJson(limit.burst)}`;
  if (limit.unitMultiplier !== undefined) json += `,"unit_multiplier":${integerJson(limit.unitMultiplier)}`;
  if (limit.name !== undefined) json += `,"name":${JSON.stringify(limit.name)}`;
  return `${json}}`;
}

/** A status's `limit` object as JSON text (the admin API's statuses write it too). */
export function limitJson(limit: ReportedLimit): string {
  let json = limitJsonCache.get(limit);
  if (json === undefined) {
    json = limitObjectJson(limit);
    // Compiled limits are frozen and live as long as their config; anything else is written each time.
    if (Object.isFrozen(limit)) limitJsonCache.set(limit, json);
  }
  return json;
}

/** An `integer` as fast-json-stringify writes it: integers as they are, other numbers truncated, NaN and ±Infinity an error. */
export function integerJson(n: number): string {
  if (Number.isInteger(n)) return `${n}`;
  const integer = Math.trunc(n);
  if (!Number.isFinite(integer)) throw new InternalError(`The value "${n}" cannot be converted to an integer.`);
  return `${integer}`;
}

function statusJson(status: DescriptorStatus): string {
  const over = status.code === 'OVER_LIMIT';
  let json = over ? '{"code":"OVER_LIMIT","limit":' : `{"code":${status.code === 'OK' ? '"OK"' : JSON.stringify(status.code)},"limit":`;
  json += status.limit === null ? 'null' : limitJson(status.limit);
  json += `,"limit_remaining":${integerJson(status.limitRemaining)},"duration_until_reset_ms":${integerJson(status.durationUntilResetMs)}`;
  if (over) json += `,"retry_after_s":${integerJson(status.retryAfterS)}`;
  if (status.unsatisfiable === true) json += ',"unsatisfiable":true';
  json += debtJson(status);
  return `${json}}`;
}

/**
 * The `"debt"` member of a status for an overdraft limit at or below zero
 * (`,"debt":<whole tokens owed, rounded up>`), else ''. Takes a status or a
 * bucket outcome (core/algorithms/table.ts inspectStoredState gives one):
 * every HTTP answer that reports a bucket writes its debt with this.
 */
export function debtJson(reported: { readonly debt?: number | undefined }): string {
  return reported.debt === undefined ? '' : `,"debt":${integerJson(reported.debt)}`;
}

/** `{ overall_code, statuses: [ { code, limit, limit_remaining, duration_until_reset_ms, retry_after_s?, unsatisfiable?, debt? } ] }`. */
export function checkResponseJson(decision: Decision): string {
  let json = decision.overallCode === 'OK' ? '{"overall_code":"OK","statuses":[' : `{"overall_code":${JSON.stringify(decision.overallCode)},"statuses":[`;
  const { statuses } = decision;
  for (let i = 0; i < statuses.length; i++) {
    if (i > 0) json += ',';
    json += statusJson(statuses[i]!);
  }
  return `${json}]}`;
}
