// The shapes @grpc/proto-loader gives and takes for our protos (see LOADER_OPTIONS).
// Decoded requests are typed loosely (fields may be null/absent): they come off the wire.

/** grpc.health.v1 and google.rpc code numbers used here. */
export const HEALTH_STATUS = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const;
export const RPC_CODE_OK = 0;
export const RPC_CODE_RESOURCE_EXHAUSTED = 8;

/** RateLimitResponse.Code. */
export const RLS_CODE = { UNKNOWN: 0, OK: 1, OVER_LIMIT: 2 } as const;

/** HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD. */
export const OVERWRITE_IF_EXISTS_OR_ADD = 2;

export interface EntryMessage {
  key?: string | null;
  value?: string | null;
}

export interface RateLimitDescriptorMessage {
  entries?: EntryMessage[] | null;
  limit?: { requests_per_unit?: number | null; unit?: number | null } | null;
  /** UInt64Value: null when absent; `value` is a decimal string (longs: String). */
  hits_addend?: { value?: string | number | null } | null;
}

export interface RateLimitRequestMessage {
  domain?: string | null;
  descriptors?: RateLimitDescriptorMessage[] | null;
  hits_addend?: number | null;
}

export interface HeaderValue {
  key: string;
  value: string;
}

export interface DurationMessage {
  seconds: string;
  nanos: number;
}

export interface DescriptorStatusMessage {
  code: number;
  current_limit: { requests_per_unit: number; unit: number; name: string } | null;
  limit_remaining: number;
  duration_until_reset: DurationMessage | null;
}

export interface RateLimitResponseMessage {
  overall_code: number;
  statuses: DescriptorStatusMessage[];
  response_headers_to_add: HeaderValue[];
}

export interface HeaderValueOption {
  header: HeaderValue;
  append_action: number;
}

export interface CheckRequestMessage {
  attributes?: {
    source?: {
      address?: { socket_address?: { address?: string | null } | null } | null;
    } | null;
    request?: {
      http?: {
        method?: string | null;
        headers?: Record<string, string> | null;
        header_map?: { headers?: { key?: string | null; value?: string | null; raw_value?: Uint8Array | null }[] | null } | null;
        path?: string | null;
        host?: string | null;
        query?: string | null;
      } | null;
    } | null;
    context_extensions?: Record<string, string> | null;
  } | null;
}

export interface CheckResponseMessage {
  status: { code: number; message: string };
  ok_response?: { headers: HeaderValueOption[]; headers_to_remove: string[]; response_headers_to_add: HeaderValueOption[] };
  denied_response?: { status: { code: number }; headers: HeaderValueOption[]; body: string };
}
