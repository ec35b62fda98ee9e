// The one error registry: every error this program throws is a RateLimitError
// with a stable code from ERROR_CODES. Transports translate them to HTTP and
// gRPC statuses in one function each (transport/http/server.ts httpError,
// transport/grpc/grpc-errors.ts toGrpcError); the CLI maps them to exit codes.

/** Every code, with what it means for the caller. test/unit/code/errors.test.ts pins this list (docs/api.md "Error codes"). */
export const ERROR_CODES = {
  RL_ERR_INVALID_REQUEST: 'a request field is invalid (HTTP 400, gRPC INVALID_ARGUMENT); the message names the field',
  RL_ERR_MALFORMED_MESSAGE: 'a gRPC request is not valid protobuf for its message type (gRPC INVALID_ARGUMENT); the message names the field and the byte',
  RL_ERR_BODY_TOO_LARGE: 'the HTTP body is over --max-body-bytes (HTTP 413)',
  RL_ERR_NOT_FOUND: 'no such HTTP route (404)',
  RL_ERR_STORE_CALL: 'one store call failed (error, closed connection, deadline); the failure policy decides',
  RL_ERR_STORE_UNAVAILABLE: 'the store failed under --on-store-failure deny (HTTP 503, gRPC UNAVAILABLE)',
  RL_ERR_CONFIG: 'a rules file is invalid (exit 2 at start, old config kept on reload)',
  RL_ERR_SETTINGS: 'a flag or RL_* environment variable is invalid (exit 2)',
  RL_ERR_LIMIT_SPEC: 'a limit whose numbers cannot be computed exactly in integers',
  RL_ERR_TLS: 'a listener TLS file (--tls-cert, --tls-key, --tls-client-ca) cannot be read or used (exit 2 at start)',
  RL_ERR_REQUEST_TIMEOUT: 'an HTTP request did not arrive whole within --http-request-timeout-ms (408)',
  RL_ERR_HEADERS_TOO_LARGE: 'HTTP request headers over 64 KiB (431)',
  RL_ERR_BAD_HTTP: 'a malformed HTTP request (400)',
  RL_ERR_METHOD_NOT_ALLOWED: 'an HTTP method no route takes, such as CONNECT (405)',
  RL_ERR_INTERNAL: 'a bug or a broken installation (HTTP 500, gRPC INTERNAL); logged, details not sent',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

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
  constructor(
    field: string,
    problem: string,
    code: 'RL_ERR_INVALID_REQUEST' | 'RL_ERR_MALFORMED_MESSAGE' | 'RL_ERR_BODY_TOO_LARGE' = 'RL_ERR_INVALID_REQUEST',
  ) {
    super(code, `${field}: ${problem}`);
    this.field = field;
  }
}

/**
 * A gRPC request whose bytes are not its protobuf message: a truncated varint
 * or length, a wrong wire type, an invalid tag. `field` is the proto path to
 * where decoding stopped (e.g. "descriptors[1].entries[0].key"), or the
 * message name when the fault is in the message itself.
 */
export class MalformedMessageError extends InvalidRequestError {
  constructor(field: string, problem: string) {
    super(field, problem, 'RL_ERR_MALFORMED_MESSAGE');
  }
}

/** The store failed and the failure policy is `deny` (HTTP 503, gRPC UNAVAILABLE). */
export class StoreUnavailableError extends RateLimitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RL_ERR_STORE_UNAVAILABLE', message, options);
  }
}

/**
 * One store backend call failed: an error reply, a closed connection, or a
 * deadline that Redis (not this process's busy event loop) missed.
 * `countsAsFailure` is false for refusals that are not news about Redis
 * (an open circuit breaker, a closed store): the breaker must not count them.
 */
export class StoreCallError extends RateLimitError {
  readonly countsAsFailure: boolean;
  /** The call was abandoned at its deadline: Redis may still answer it later. */
  readonly timedOut: boolean;
  constructor(message: string, options?: { cause?: unknown; countsAsFailure?: boolean; timedOut?: boolean }) {
    super('RL_ERR_STORE_CALL', message, options);
    this.countsAsFailure = options?.countsAsFailure ?? true;
    this.timedOut = options?.timedOut ?? false;
  }
}

/**
 * One thing wrong in a config file: which file, where inside it ('' = the
 * whole file), what; and where it is written (1-based) when the file could be
 * parsed that far.
 */
export interface ConfigProblem {
  file: string;
  path: string;
  problem: string;
  line?: number;
  column?: number;
}

/** `rules/a.yaml:7:9: descriptors[0].rate_limit.unit: unknown unit "fortnight" (...)`. */
function problemLine({ file, path, problem, line, column }: ConfigProblem): string {
  const where = line === undefined ? file : `${file}:${line}:${column ?? 1}`;
  return path === '' ? `${where}: ${problem}` : `${where}: ${path}: ${problem}`;
}

/**
 * Config files are invalid. The message has one line per problem, each naming
 * the file (with line and column where known), the path inside it and the problem; `problems` lists them all
 * (every problem of every file), `file` is the first problem's file.
 */
export class ConfigError extends RateLimitError {
  readonly file: string;
  readonly problems: readonly ConfigProblem[];
  constructor(file: string, path: string, problem: string);
  /** Several problems (at least one), e.g. every problem of every file for `check-config`. */
  constructor(problems: readonly ConfigProblem[]);
  constructor(fileOrProblems: string | readonly ConfigProblem[], path = '', problem = '') {
    const problems = typeof fileOrProblems === 'string' ? [{ file: fileOrProblems, path, problem }] : fileOrProblems;
    if (problems.length === 0) throw new InternalError('ConfigError needs at least one problem');
    super('RL_ERR_CONFIG', problems.map(problemLine).join('\n'));
    this.file = problems[0]!.file;
    this.problems = Object.freeze(problems.map((p) => Object.freeze({ ...p })));
  }
}

/** A flag or env var is invalid; the message names the flag and its env var. */
export class SettingsError extends RateLimitError {
  constructor(message: string) {
    super('RL_ERR_SETTINGS', message);
  }
}

/** A limit's numbers cannot be represented exactly (compileLimit); config and request checks name the field. */
export class LimitSpecError extends RateLimitError {
  constructor(message: string) {
    super('RL_ERR_LIMIT_SPEC', message);
  }
}

/** A bug or a broken installation (a missing proto/ or lua/ file). */
export class InternalError extends RateLimitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RL_ERR_INTERNAL', message, options);
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
