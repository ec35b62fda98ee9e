// grpc.health.v1: HealthCheckRequest {1 service} bytes -> the service name,
// and HealthCheckResponse {1 status} -> bytes, with the field tables of
// message-table.ts like the decision RPCs' codecs, so that bad bytes are
// INVALID_ARGUMENT here too (proto-loader's deserializer throws, and grpc-js
// answers a throwing deserializer INTERNAL).
import { decode, encode, messageReader, messageWriter, readMessage, writeMessage } from './message-table.js';
import { WireReader, decodeFailure } from './wire-reader.js';
import { WireWriter } from './wire-writer.js';

/** A decoded HealthCheckRequest, in the shape the health handlers read. */
export interface HealthCheckRequest {
  service: string;
}

interface HealthCheckResponse {
  status: number;
}

const HEALTH_CHECK_REQUEST = messageReader<HealthCheckRequest>('HealthCheckRequest', [
  decode.string(1, 'service', (request, text) => { request.service = text; }),
]);

// HealthCheckResponse {1 status}; UNKNOWN (0) is written as an empty message.
const HEALTH_CHECK_RESPONSE_OUT = messageWriter<HealthCheckResponse>([
  encode.uint(1, (response) => (response.status === 0 ? undefined : response.status)),
]);
const HEALTH_CHECK_RESPONSE_IN = messageReader<HealthCheckResponse>('HealthCheckResponse', [
  decode.enum(1, 'status', (response, value) => { response.status = value; }),
]);

/** The service name asked about ('' = the server as a whole), or the Error saying why the bytes are not a request. */
export function decodeHealthCheckRequest(bytes: Buffer): HealthCheckRequest | Error {
  const request: HealthCheckRequest = { service: '' };
  try {
    readMessage(new WireReader(bytes), bytes.length, HEALTH_CHECK_REQUEST, request, undefined);
    return request;
  } catch (error: unknown) {
    return decodeFailure(error, HEALTH_CHECK_REQUEST.name);
  }
}

export function encodeHealthCheckResponse(response: HealthCheckResponse): Buffer {
  const w = new WireWriter();
  writeMessage(w, HEALTH_CHECK_RESPONSE_OUT, response);
  return w.finish();
}

/** For clients of HEALTH_SERVICE_DEFINITION (tests): the response's status; throws on bad bytes (a client may). */
export function decodeHealthCheckResponse(bytes: Buffer): HealthCheckResponse {
  const response: HealthCheckResponse = { status: 0 };
  readMessage(new WireReader(bytes), bytes.length, HEALTH_CHECK_RESPONSE_IN, response, undefined);
  return response;
}
