// The Node HTTP server under fastify: what happens on the wire around the
// routes — TLS, timeouts, the connection cap, CONNECT, malformed requests, drain.
import { createServer, ServerResponse, type IncomingMessage, type RequestListener, type Server, type ServerOptions } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContextOptions } from 'node:tls';
import type { ErrorCode } from '../../errors.js';
import type { TlsMaterial } from '../tls-files.js';

/** How long and how many: the bounds that keep slow or idle clients from holding the process. */
export interface HttpConnectionLimits {
  /** Longest time to receive one whole request, headers and body (then 408 and close). */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. Keep it above the proxies' own idle timeouts. */
  keepAliveTimeoutMs: number;
  /** Most open connections; beyond, new connections are closed at once. */
  maxConnections: number;
}

export const DEFAULT_HTTP_CONNECTION_LIMITS: Readonly<HttpConnectionLimits> = Object.freeze({
  requestTimeoutMs: 10_000,
  // NGINX's upstream keepalive_timeout is 60 s: ours must be longer, or NGINX
  // may reuse a connection we are closing.
  keepAliveTimeoutMs: 75_000,
  maxConnections: 8_192,
});

/**
 * Forward auth carries the client's headers. Node's default (16 KiB) would
 * answer 431 to a client with big headers, which NGINX turns into a 500 and
 * fail-open; Envoy caps request headers at 60 KiB by default.
 */
const MAX_HEADER_BYTES = 64 * 1024;

/** On drain, an idle keep-alive connection may already carry a request on its way: wait this long before closing idle ones. */
const HTTP_DRAIN_IDLE_GRACE_MS = 1_000;

/**
 * Node checks requestTimeout/headersTimeout only every
 * connectionsCheckingInterval (30 s by default, so a 10 s timeout could fire
 * after 40 s): check ten times per timeout, at most once a second.
 */
export function connectionsCheckingIntervalMs(requestTimeoutMs: number): number {
  return Math.min(1_000, Math.max(25, Math.floor(requestTimeoutMs / 10)));
}

/** Our JSON error shape, for answers written below fastify. */
function errorJson(code: ErrorCode, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

function rawResponse(status: number, reason: string, body: string, extraHeaders = ''): string {
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`
    + `${extraHeaders}Connection: close\r\n\r\n${body}`;
}

/**
 * fastify's clientErrorHandler: requests Node could not take (too slow, too
 * big, malformed) get a 4xx in our error shape, then the connection closes.
 */
export function writeClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  // As Node itself: never write over a response that has begun.
  const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && inFlight?.headersSent !== true) {
    let answer: string;
    if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      answer = rawResponse(408, 'Request Timeout', errorJson('RL_ERR_REQUEST_TIMEOUT', 'the request did not arrive in time'));
    } else if (error.code === 'HPE_HEADER_OVERFLOW') {
      answer = rawResponse(431, 'Request Header Fields Too Large',
        errorJson('RL_ERR_HEADERS_TOO_LARGE', `request headers over ${MAX_HEADER_BYTES} bytes`));
    } else {
      answer = rawResponse(400, 'Bad Request', errorJson('RL_ERR_BAD_HTTP', 'malformed HTTP request'));
    }
    socket.write(answer);
  }
  socket.destroy();
}

/**
 * CONNECT (a proxy tunnel request) never reaches fastify: Node hands such
 * requests to the server's 'connect' event, and without a listener it
 * closes the socket without a word (curl exit 52). Answer 405 instead.
 */
function refuseConnect(socket: Duplex, timeoutMs: number): void {
  // The socket has left Node's HTTP machinery (and its timeouts): bound it here.
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.on('error', () => socket.destroy());
  socket.end(rawResponse(405, 'Method Not Allowed',
    errorJson('RL_ERR_METHOD_NOT_ALLOWED', 'CONNECT is not supported: this is a rate-limit decision server, not a proxy'),
    'Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n'));
}

export interface HttpWireOptions {
  limits: HttpConnectionLimits;
  /** HTTPS with this certificate and key (and mTLS with its client CA); plain HTTP when absent. */
  tls?: TlsMaterial | undefined;
}

function secureContextOptions(material: TlsMaterial): SecureContextOptions {
  return { cert: material.cert, key: material.key, ...(material.clientCa === undefined ? {} : { ca: material.clientCa }) };
}

/**
 * The Node server fastify runs on (its serverFactory), and its drain.
 * HTTP/1.1, over TLS when given a certificate.
 */
export class HttpWire {
  /** An https.Server when TLS is on (it has every http.Server method fastify uses). */
  readonly server: Server;
  private readonly secureServer: HttpsServer | undefined;
  private draining = false;
  private drained: Promise<'drained' | 'cut'> | undefined;
  /** Every open TCP connection, TLS handshakes in progress included (which http's own list does not know). */
  private readonly sockets = new Set<Duplex>();

  constructor(fastifyHandler: RequestListener, options: HttpWireOptions) {
    const { limits } = options;
    const isDraining = (): boolean => this.draining;
    // Every response written while draining says Connection: close, whenever
    // its request began: Node then closes the connection after it, and the
    // client opens its next request elsewhere instead of meeting a reset.
    class DrainAwareResponse extends ServerResponse {
      override writeHead(...args: unknown[]): this {
        if (isDraining() && !this.headersSent) this.setHeader('connection', 'close');
        return (ServerResponse.prototype.writeHead as (...a: unknown[]) => this).apply(this, args);
      }
    }
    const listener: RequestListener = (request, response) => {
      // The content type is never ours to judge: /v1/check always reads JSON
      // and forward auth ignores bodies. Left in place, fastify answers an
      // unparseable one with 415 before any route runs — on forward auth
      // that is a non-decision NGINX turns into fail-open. (Wire level only:
      // fastify.inject does not pass here.)
      // Set to undefined rather than deleted: `delete` turns the headers
      // object into a slow dictionary for every later lookup of the request.
      if (request.headers['content-type'] !== undefined) request.headers['content-type'] = undefined;
      fastifyHandler(request, response);
    };
    const serverOptions: ServerOptions = {
      maxHeaderSize: MAX_HEADER_BYTES,
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: connectionsCheckingIntervalMs(limits.requestTimeoutMs),
      ServerResponse: DrainAwareResponse as typeof ServerResponse,
    };
    if (options.tls === undefined) {
      this.server = createServer(serverOptions, listener);
    } else {
      const mtls = options.tls.clientCa !== undefined;
      this.secureServer = createHttpsServer({
        ...serverOptions,
        ...secureContextOptions(options.tls),
        requestCert: mtls,
        rejectUnauthorized: mtls,
        // A handshake is part of the request's time: a slow one must not hold a connection either.
        handshakeTimeout: limits.requestTimeoutMs,
      }, listener);
      this.server = this.secureServer as unknown as Server;
    }
    this.server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    this.server.maxConnections = limits.maxConnections;
    this.server.on('connect', (_request: IncomingMessage, socket: Duplex) => refuseConnect(socket, limits.requestTimeoutMs));
    this.server.on('connection', (socket: Duplex) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  /**
   * Rotation: new handshakes present this certificate (and check clients
   * against this CA); open connections carry on. The material must already
   * be checked (see checkTlsMaterial). A no-op on plain HTTP.
   */
  setTls(material: TlsMaterial): void {
    this.secureServer?.setSecureContext(secureContextOptions(material));
  }

  /**
   * Stops accepting connections; every response from now on carries
   * Connection: close; after HTTP_DRAIN_IDLE_GRACE_MS (at most half the
   * budget) idle connections are closed; connections still busy end after
   * their response. At `timeoutMs` whatever is left is cut. Resolves
   * 'drained' or 'cut'; never rejects. (http.Server#close would close idle
   * keep-alive connections at once — a request already on its way on one
   * meets a reset — and stop the request-timeout checks.)
   */
  drain(timeoutMs: number): Promise<'drained' | 'cut'> {
    this.drained ??= this.runDrain(timeoutMs);
    return this.drained;
  }

  private async runDrain(timeoutMs: number): Promise<'drained' | 'cut'> {
    this.draining = true;
    const started = performance.now();
    const allClosed = new Promise<void>((resolve) => {
      if (!this.server.listening) {
        resolve();
        return;
      }
      NetServer.prototype.close.call(this.server, () => resolve());
    });
    const within = (ms: number): Promise<boolean> => new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.max(0, ms));
      void allClosed.then(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (await within(Math.min(HTTP_DRAIN_IDLE_GRACE_MS, timeoutMs / 2))) return 'drained';
    this.server.closeIdleConnections();
    if (await within(timeoutMs - (performance.now() - started))) return 'drained';
    for (const socket of this.sockets) socket.destroy();
    await allClosed;
    return 'cut';
  }
}
