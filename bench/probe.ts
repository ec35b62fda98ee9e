// One real grpc-js call before a gRPC row: a run of gRPC errors must not be
// reported as speed (h2load only sees HTTP status 200 and cannot read the
// grpc-status trailer).
import * as grpc from '@grpc/grpc-js';
import { decodeResponse } from './grpc-messages.js';

export interface ProbeResult {
  readonly ok: boolean;
  /** e.g. "grpc-status 0, overall_code 1" or the error. */
  readonly detail: string;
}

const PROBE_DEADLINE_MS = 3000;

/** Calls `path` once with `request`; ok when grpc-status is 0 and `accept(response)` holds. */
export async function probeGrpc(port: number, path: string, request: Buffer, accept: (response: Record<string, unknown>) => string | undefined): Promise<ProbeResult> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const identity = (b: Buffer): Buffer => b;
  try {
    return await new Promise<ProbeResult>((resolve) => {
      client.makeUnaryRequest(path, identity, identity, request, { deadline: Date.now() + PROBE_DEADLINE_MS }, (error, bytes) => {
        if (error) {
          resolve({ ok: false, detail: `grpc-status ${error.code} ${error.details}` });
          return;
        }
        try {
          const response = bytes === undefined ? {} : (decodeResponse(path, bytes) as Record<string, unknown>);
          const problem = accept(response);
          resolve(problem === undefined ? { ok: true, detail: 'grpc-status 0' } : { ok: false, detail: `grpc-status 0 but ${problem}` });
        } catch (decodeError: unknown) {
          resolve({ ok: false, detail: `undecodable response: ${String(decodeError)}` });
        }
      });
    });
  } finally {
    client.close();
  }
}
