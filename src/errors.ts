// Errors with stable codes; translated to HTTP/gRPC status in one place per protocol.

export type ErrorCode =
  | 'RL_ERR_INVALID_REQUEST'
  | 'RL_ERR_BODY_TOO_LARGE'
  | 'RL_ERR_UNKNOWN_DOMAIN'
  | 'RL_ERR_NO_DOMAIN'
  | 'RL_ERR_STORE_UNAVAILABLE'
  | 'RL_ERR_CONFIG'
  | 'RL_ERR_TLS'
  // Written below fastify (src/transport/http/node-server.ts), for requests no route sees:
  | 'RL_ERR_REQUEST_TIMEOUT'
  | 'RL_ERR_HEADERS_TOO_LARGE'
  | 'RL_ERR_BAD_HTTP'
  | 'RL_ERR_METHOD_NOT_ALLOWED';

export class RateLimitError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A request the caller got wrong; `field` names what (e.g. "descriptors[0].entries[1].value"). */
export class InvalidRequestError extends RateLimitError {
  readonly field: string;
  constructor(field: string, problem: string, code: ErrorCode = 'RL_ERR_INVALID_REQUEST') {
    super(code, `${field}: ${problem}`);
    this.field = field;
  }
}

/** The store failed and the failure policy is `deny` (HTTP 503, gRPC UNAVAILABLE). */
export class StoreUnavailableError extends RateLimitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RL_ERR_STORE_UNAVAILABLE', message, options);
  }
}

/** A store backend call failed (timeout, connection, script error). */
export class StoreCallError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreCallError';
  }
}

/** A config file is invalid; the message names the file, the path inside it and the problem. */
export class ConfigError extends RateLimitError {
  readonly file: string;
  constructor(file: string, path: string, problem: string) {
    super('RL_ERR_CONFIG', path === '' ? `${file}: ${problem}` : `${file}: ${path}: ${problem}`);
    this.file = file;
  }
}

/** A TLS file of the listeners (--tls-cert, --tls-key, --tls-client-ca) cannot be read or used; the message names the file. */
export class TlsConfigError extends RateLimitError {
  readonly file: string;
  constructor(file: string, problem: string) {
    super('RL_ERR_TLS', `${file}: ${problem}`);
    this.file = file;
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
