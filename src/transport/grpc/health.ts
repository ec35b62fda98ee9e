// grpc.health.v1.Health: Check and Watch.
import { status, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js';
import { sendableDetails } from './grpc-errors.js';
import type { HealthCheckRequest } from './health-codec.js';

/** grpc.health.v1.HealthCheckResponse.ServingStatus. */
const HEALTH_STATUS = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const;

/** Service names we answer for: the server as a whole, envoyproxy/ratelimit's name, our services. */
const HEALTH_SERVICE_NAMES: ReadonlySet<string> = new Set([
  '',
  'ratelimit',
  'envoy.service.ratelimit.v3.RateLimitService',
  'envoy.service.auth.v3.Authorization',
]);

/** How often Watch re-reads readiness to push a change. */
const HEALTH_WATCH_INTERVAL_MS = 1000;

/** A decoded request (health-codec.ts), or the Error saying why the bytes were not one. */
type HealthRequest = HealthCheckRequest | Error;
interface HealthResponse { status: number }

export interface HealthHandlers {
  Check(call: ServerUnaryCall<HealthRequest, HealthResponse>, callback: sendUnaryData<HealthResponse>): void;
  Watch(call: ServerWritableStream<HealthRequest, HealthResponse>): void;
  /** Ends every open Watch stream (a server cannot finish shutting down while one is open). */
  endWatches(): void;
}

export function createHealthHandlers(serving: () => boolean): HealthHandlers {
  const watches = new Set<ServerWritableStream<HealthRequest, HealthResponse>>();
  const current = () => (serving() ? HEALTH_STATUS.SERVING : HEALTH_STATUS.NOT_SERVING);
  return {
    Check(call, callback) {
      if (call.request instanceof Error) {
        callback({ code: status.INVALID_ARGUMENT, details: sendableDetails(call.request.message) });
        return;
      }
      const name = call.request.service;
      if (!HEALTH_SERVICE_NAMES.has(name)) {
        callback({ code: status.NOT_FOUND, details: sendableDetails(`unknown service "${name}"`) });
        return;
      }
      callback(null, { status: current() });
    },
    Watch(call) {
      if (call.request instanceof Error) {
        call.emit('error', { code: status.INVALID_ARGUMENT, details: sendableDetails(call.request.message) });
        return;
      }
      const name = call.request.service;
      if (!HEALTH_SERVICE_NAMES.has(name)) {
        // The protocol: SERVICE_UNKNOWN, and keep the stream open.
        call.write({ status: HEALTH_STATUS.SERVICE_UNKNOWN });
        watches.add(call);
        call.on('cancelled', () => watches.delete(call));
        call.on('close', () => watches.delete(call));
        return;
      }
      let last = current();
      call.write({ status: last });
      watches.add(call);
      const timer = setInterval(() => {
        const now = current();
        if (now !== last) {
          last = now;
          call.write({ status: now });
        }
      }, HEALTH_WATCH_INTERVAL_MS);
      timer.unref();
      const stop = () => {
        clearInterval(timer);
        watches.delete(call);
      };
      call.on('cancelled', stop);
      call.on('close', stop);
    },
    endWatches() {
      for (const call of watches) {
        call.write({ status: HEALTH_STATUS.NOT_SERVING });
        call.end();
      }
      watches.clear();
    },
  };
}
