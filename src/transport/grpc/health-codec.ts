// grpc.health.v1: HealthCheckRequest {1 service} bytes -> the service name,
// and HealthCheckResponse {1 status} -> bytes. Hand-written like the decision
// RPCs' codecs, so that bad bytes are INVALID_ARGUMENT here too (proto-loader's
// deserializer throws, and grpc-js answers a throwing deserializer INTERNAL).
import { WIRE_LEN, WIRE_VARINT, WireReader, decodeFailure, within } from './wire-reader.js';
import { WireWriter } from './wire-writer.js';

const SERVICE = 1 * 8 + WIRE_LEN;
const STATUS = 1 * 8 + WIRE_VARINT;
const REQUEST_FIELDS = 0b10;

/** A decoded HealthCheckRequest, in the shape the health handlers read. */
export interface HealthCheckRequest {
  service: string;
}

/** The service name asked about ('' = the server as a whole), or the Error saying why the bytes are not a request. */
export function decodeHealthCheckRequest(bytes: Buffer): HealthCheckRequest | Error {
  const r = new WireReader(bytes);
  const end = bytes.length;
  let service = '';
  let tag = 0;
  try {
    while (r.pos < end) {
      tag = 0;
      tag = r.tag(end);
      if (tag === SERVICE) service = r.string(end);
      else r.skip(tag, end, REQUEST_FIELDS);
    }
  } catch (error: unknown) {
    return decodeFailure(within(error, tag === 0 ? '' : tag >>> 3 === 1 ? 'service' : `(field ${tag >>> 3})`), 'HealthCheckRequest');
  }
  return { service };
}

const writer = new WireWriter();

/** HealthCheckResponse {1 status}; UNKNOWN (0) is written as an empty message. */
export function encodeHealthCheckResponse(response: { status: number }): Buffer {
  writer.reset();
  if (response.status !== 0) writer.uint(1, response.status);
  return writer.finish();
}

/** For clients of HEALTH_SERVICE_DEFINITION (tests): the response's status; throws on bad bytes (a client may). */
export function decodeHealthCheckResponse(bytes: Buffer): { status: number } {
  const r = new WireReader(bytes);
  let status = 0;
  while (r.pos < bytes.length) {
    const tag = r.tag(bytes.length);
    if (tag === STATUS) status = r.uint32(bytes.length);
    else r.skip(tag, bytes.length, 0b10);
  }
  return { status };
}
