/** What the gRPC transport logs through; a pino Logger satisfies it. */
export interface GrpcLogger {
  error(details: object, message: string): void;
  warn(details: object, message: string): void;
  info(details: object, message: string): void;
}
