import { startApp, type RunningApp } from '../../src/server/app.js';
import { resolveSettings } from '../../src/server/settings.js';
import { createLogger } from '../../src/telemetry/logger.js';

/** Starts the real server in-process on free loopback ports; flags as on the command line. */
export async function startServer(flags: Record<string, string | boolean>): Promise<RunningApp & { url: string }> {
  const settings = resolveSettings({ host: '127.0.0.1', 'http-port': '0', 'grpc-port': '0', 'admin-port': '0', ...flags }, {});
  const app = await startApp(settings, createLogger('silent'));
  return { ...app, url: `http://127.0.0.1:${app.httpPort}` };
}
