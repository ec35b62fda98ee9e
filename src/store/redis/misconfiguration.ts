// Redis answers that no outage explains: a wrong password, an ACL user that
// may not run our script or touch our keys, a Redis without Lua. They last
// until someone fixes the configuration, so they are not left to the
// store-failure policy (which bridges passing outages): the sidecar turns not
// ready under every policy and refuses the decisions of the nodes concerned
// (docs/failure.md "Misconfiguration is not an outage").
import { errorMessage } from '../../errors.js';

export type MisconfigurationCause = 'wrong_password' | 'no_password' | 'sentinel_auth' | 'sentinel_master' | 'acl_scripting' | 'acl_keys' | 'acl_command' | 'no_scripting';

/** What an operator is told, per cause: our words, and what to change. */
const WORDS: Readonly<Record<MisconfigurationCause, string>> = {
  wrong_password: 'redis rejected our credentials (wrong password, or an unknown or disabled ACL user): check --redis-password and --redis-username',
  no_password: 'redis requires a password and none was given (--redis-password)',
  sentinel_auth: 'the redis sentinels refused our credentials: check --redis-sentinel-password and --redis-sentinel-username',
  sentinel_master: 'the redis sentinels answer but watch no master of that name: check --redis-sentinel-master (SENTINEL MASTERS on a sentinel lists the names it watches)',
  acl_scripting: 'the redis ACL user may not run scripts: grant it EVALSHA and EVAL (+evalsha +eval, or +@scripting)',
  acl_keys: 'the redis ACL user may not read and write the rate-limit keys: grant it the key pattern of --redis-key-prefix (e.g. ~rl:*)',
  acl_command: 'the redis ACL user may not run a command the rate-limit script needs (TIME, GET, SET, DEL, PEXPIRE, HGET, HSET, HDEL, HGETALL, ZADD, ZCARD, ZREMRANGEBYSCORE)',
  no_scripting: 'redis has no Lua scripting (EVALSHA/EVAL are unknown commands: a build without Lua, or the commands renamed); the Redis store needs it',
};

/** One misconfiguration: its cause (a metric label) and the words shown in /readyz, deny answers and the log. */
export class Misconfiguration {
  readonly words: string;
  constructor(readonly cause: MisconfigurationCause) {
    this.words = WORDS[cause];
  }
}

const BY_CAUSE = new Map<MisconfigurationCause, Misconfiguration>(
  (Object.keys(WORDS) as MisconfigurationCause[]).map((cause) => [cause, new Misconfiguration(cause)]),
);

/** Redis's (and ioredis's) wording → the cause; Redis 7.0 to 7.4 and Valkey phrase these alike. */
function classify(message: string): MisconfigurationCause | undefined {
  // ioredis: "All sentinels are unreachable. ... Last error: NOAUTH ..." — the Sentinels' own password.
  if (/sentinel/i.test(message) && /\bWRONGPASS\b|\bNOAUTH\b|invalid username-password pair/i.test(message)) return 'sentinel_auth';
  // A Sentinel's answer for a name it does not watch (ioredis: "... Last error: ERR No such master with that name";
  // an older Sentinel's null address: "... successfully, but got an invalid reply: null").
  if (/No such master with that name|connected to sentinel \S+ successfully, but got an invalid reply: null/i.test(message)) return 'sentinel_master';
  if (/\bWRONGPASS\b|invalid username-password pair/i.test(message)) return 'wrong_password';
  if (/\bNOAUTH\b/.test(message)) return 'no_password';
  if (/\bNOPERM\b/.test(message)) {
    if (/\bkeys?\b/i.test(message)) return 'acl_keys';
    if (/'(evalsha|eval|evalsha_ro|eval_ro|script)[|' ]/i.test(message)) return 'acl_scripting';
    return 'acl_command';
  }
  // A command inside the script refused by the ACL (Redis 7.0's wording, and its NOPERM form).
  if (/user executing the script can't run this command/i.test(message)) return 'acl_command';
  if (/unknown command [`'"]?(evalsha|eval)\b|built without (lua|scripting)|scripting is disabled/i.test(message)) return 'no_scripting';
  return undefined;
}

/**
 * The misconfiguration that `error` shows, if any: the error itself, or one
 * of its causes (ioredis wraps a node's error in `lastNodeError`, we wrap in
 * `cause`). Anything else (unreachable, timeouts, LOADING, OOM, a failover)
 * is undefined: an outage, left to the store-failure policy.
 */
export function misconfigurationOf(error: unknown): Misconfiguration | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    if (current instanceof Misconfiguration) return current;
    const cause = classify(errorMessage(current));
    if (cause !== undefined) return BY_CAUSE.get(cause);
    const holder = current as { cause?: unknown; lastNodeError?: unknown };
    current = holder.cause ?? holder.lastNodeError;
  }
  return undefined;
}
