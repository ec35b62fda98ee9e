// Finds and loads our proto/ directory once per process. The server decodes
// and encodes with its own codec (*-codec.ts); these definitions serve gRPC
// clients (tests, tools) and the golden-bytes cross-check of field numbers.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import { InternalError } from '../../errors.js';

/** The .proto files of the services the server answers, relative to proto/. */
const PROTO_FILES = [
  'envoy/service/ratelimit/v3/rls.proto',
  'envoy/service/auth/v3/external_auth.proto',
  'grpc/health/v1/health.proto',
] as const;

/**
 * How messages look in JavaScript for proto-loader clients:
 * field names as in the .proto (snake_case); 64-bit integers as decimal
 * strings (a uint64 hits_addend must not lose precision before we bound it);
 * enums as numbers; absent fields filled with defaults, except messages
 * (absent = null, so a UInt64Value's presence survives); oneof names set.
 */
const LOADER_OPTIONS: protoLoader.Options = Object.freeze({
  keepCase: true,
  longs: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
});

/**
 * The repository's proto/ directory: walks up from this module to the
 * directory holding package.json, so it works from src/ (tsx) and dist/ alike.
 * Throws when no such directory exists (a broken install).
 */
export function findProtoDir(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'proto'))) return join(dir, 'proto');
    const parent = dirname(dir);
    if (parent === dir) throw new InternalError(`proto/ directory not found above ${from}`);
    dir = parent;
  }
}

let cached: protoLoader.PackageDefinition | undefined;

/** The package definition of every served service; loaded on first use, then reused. */
export function loadPackageDefinition(): protoLoader.PackageDefinition {
  cached ??= protoLoader.loadSync([...PROTO_FILES], { ...LOADER_OPTIONS, includeDirs: [findProtoDir()] });
  return cached;
}
