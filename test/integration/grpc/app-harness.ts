// End-to-end: the real composition root (config loader, limiter, memory store)
// with gRPC clients on real sockets.
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { startApp, type RunningApp } from '../../../src/server/app.js';
import { resolveSettings } from '../../../src/server/settings.js';
import { clientConstructor } from '../../helpers/grpc.js';

export interface AppHarness {
  app: RunningApp;
  rls: grpc.Client;
  authz: grpc.Client;
  health: grpc.Client;
  close(): Promise<void>;
}

export async function startAppHarness(configPath: string, flags: Record<string, string | boolean> = {}): Promise<AppHarness> {
  const settings = resolveSettings(
    { config: configPath, 'http-port': '0', 'grpc-port': '0', 'admin-port': '0', host: '127.0.0.1', store: 'memory', ...flags },
    {},
  );
  const app = await startApp(settings, pino({ level: 'silent' }));
  const address = `127.0.0.1:${app.grpcPort}`;
  const credentials = grpc.credentials.createInsecure();
  const rls = new (clientConstructor('envoy.service.ratelimit.v3.RateLimitService'))(address, credentials);
  const authz = new (clientConstructor('envoy.service.auth.v3.Authorization'))(address, credentials);
  const health = new (clientConstructor('grpc.health.v1.Health'))(address, credentials);
  return {
    app, rls, authz, health,
    async close() {
      rls.close();
      authz.close();
      health.close();
      await app.stop();
    },
  };
}

/** Waits, if needed, so that a window of `unitMs` has at least `needMs` left (fixed windows align to the epoch). */
export async function awayFromWindowEdge(unitMs: number, needMs: number): Promise<void> {
  const left = unitMs - (Date.now() % unitMs);
  if (left < needMs) await new Promise((resolve) => setTimeout(resolve, left + 50));
}
