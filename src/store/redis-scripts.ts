import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * The Lua scripts of the Redis store, read once from the package's `lua/`
 * folder (the same relative path from src/store and dist/store). ioredis runs
 * them by EVALSHA and falls back to EVAL on NOSCRIPT (defineCommand).
 */
export interface RedisScript {
  /** ioredis command name given to defineCommand. */
  readonly name: string;
  readonly lua: string;
  /** SHA1 of `lua`, as EVALSHA and SCRIPT LOAD use it. */
  readonly sha: string;
  /** ARGV values per op (its key included). */
  readonly argsPerOp: number;
}

function load(name: string, file: string, argsPerOp: number): RedisScript {
  const lua = readFileSync(new URL(`../../lua/${file}`, import.meta.url), 'utf8');
  return Object.freeze({ name, lua, sha: createHash('sha1').update(lua).digest('hex'), argsPerOp });
}

/** Decides batches of ops on one node; see the header of lua/token-bucket.lua. */
export const TOKEN_BUCKET_SCRIPT = load('rlTokenBucket', 'token-bucket.lua', 10);
/** Gives back what a committed node group took when another group denied; lua/refund.lua. */
export const REFUND_SCRIPT = load('rlRefund', 'refund.lua', 8);

/** Values returned per op by lua/token-bucket.lua, after a batch's `committed` flag. */
export const TOKEN_BUCKET_FIELDS_PER_OP = 7;
