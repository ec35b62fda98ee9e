// envoy.config.core.v3.HeaderValue {1 key, 2 value}, as both decision
// responses write it: RateLimitResponse.response_headers_to_add directly,
// CheckResponse inside a HeaderValueOption.
import { encode, messageWriter } from './message-table.js';

/** A header as rateLimitHeaders gives it: [name, value]. */
export type HeaderPair = readonly [string, string];

export const HEADER_VALUE = messageWriter<HeaderPair>([
  encode.string(1, (header) => header[0]),
  encode.string(2, (header) => header[1]),
]);
