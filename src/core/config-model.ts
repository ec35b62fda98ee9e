import type { RuleNode } from './rules.js';
import type { Algorithm } from './types.js';

/**
 * One action of an `http.descriptors` entry: Envoy's rate_limits "actions"
 * vocabulary. An action that finds no source makes the whole descriptor absent
 * (as in Envoy), except request_headers with skipIfAbsent, which is skipped.
 */
export type HttpAction =
  | { type: 'request_headers'; headerName: string; descriptorKey: string; skipIfAbsent: boolean }
  | { type: 'remote_address' }
  | { type: 'masked_remote_address'; v4PrefixMaskLen: number; v6PrefixMaskLen: number }
  | { type: 'generic_key'; descriptorKey: string; descriptorValue: string }
  | { type: 'query_parameters'; queryParameterName: string; descriptorKey: string; skipIfAbsent: boolean };

export interface CompiledDomain {
  name: string;
  /** File it came from (for messages and /v1/config). */
  source: string;
  algorithm: Algorithm;
  root: RuleNode;
  /** Each inner list produces one descriptor. */
  httpDescriptors: readonly (readonly HttpAction[])[];
  /** The parsed file as JSON (shown by GET /v1/config). */
  document: unknown;
}

export interface CompiledConfig {
  domains: ReadonlyMap<string, CompiledDomain>;
  /** Where it was loaded from (file or directory). */
  source: string;
  loadedAtMs: number;
}
