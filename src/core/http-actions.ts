// PLACEHOLDER owned by the config engineer: applies `http.descriptors` actions to a request.
import type { HttpAction } from './config-model.js';
import type { Entry } from './types.js';

/** The parts of an HTTP request the actions read. */
export interface HttpRequestInput {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Raw query string without '?', '' when none. */
  query: string;
  authority: string;
  /** Header by lower-case name; several values joined with ','. */
  header(lowerCaseName: string): string | undefined;
  /** Client address, already resolved through trusted proxies. */
  remoteAddress: string;
}

export function descriptorsFromHttp(
  _actions: readonly (readonly HttpAction[])[],
  _request: HttpRequestInput,
): Entry[][] {
  throw new Error('not implemented yet');
}
