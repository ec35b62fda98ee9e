// One `take` call of lua/openclaw.lua, encoded here from the script's own
// contract (the header of lua/openclaw.lua: ARGV[1] the operation, the limit
// table, the keys in read groups, three values per op), for script-cost.ts.
// The bench reads the script from the package's lua/ folder and calls it as
// the sidecar does (EVALSHA, EVAL on NOSCRIPT: ioredis defineCommand), without
// importing the sidecar's code. Only the shape script-cost.ts sends: one
// token-bucket limit per call, batches of one op each, every key on one node.
// test/integration/bench/script-call.test.ts checks the limit values against the
// sidecar's compiled limits and a call against a real redis-server.
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

/** The script text, as the package ships it. */
const SCRIPT_LUA = readFileSync(new URL('../lua/openclaw.lua', import.meta.url), 'utf8');
const COMMAND = 'openclawRl';
/** Integers per op in a `take` reply after its batch's status: the key's state when the batch began. */
const STATE_FIELDS = 3;

/**
 * A token bucket of `requestsPerSecond` (burst the same) as the limit table
 * carries it: 't', then tickUs, refillPerTick, levelPerToken, capacityLevel.
 * The script counts in fixed point: with 1 µs ticks, a token is
 * 1e6 / gcd(rate, 1e6) levels and a tick refills rate / gcd(rate, 1e6) of them.
 */
export function tokenBucketValues(requestsPerSecond: number): string[] {
  const unitTicks = 1_000_000;
  const divisor = gcd(requestsPerSecond, unitTicks);
  const levelPerToken = unitTicks / divisor;
  return ['t', '1', String(requestsPerSecond / divisor), String(levelPerToken), String(requestsPerSecond * levelPerToken)];
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** The ARGV of a `take` of one op (cost 1) per key in `opKeys`, each op its own batch, all under one limit. */
export function takeArgv(limitValues: readonly string[], opKeys: readonly string[]): string[] {
  const index = new Map<string, number>();
  for (const key of opKeys) if (!index.has(key)) index.set(key, index.size + 1);
  // One read group (one node): its size, then its keys.
  const keys = ['1', String(index.size), ...index.keys()];
  // word = limit index 1 + (L + 1) × flags; flags 0: the op starts its own batch.
  const ops = opKeys.flatMap((key) => [String(index.get(key)), '1', '1']);
  return ['take', '1', ...limitValues, ...keys, ...ops];
}

type ScriptCall = (numKeys: number, routingKey: string, ...argv: string[]) => Promise<unknown>;

/** Takes one token per key on `client`: resolves with each batch's status (0 denied, 1 committed, 2 moved); a malformed reply throws. */
export type Take = (limitValues: readonly string[], opKeys: readonly string[]) => Promise<number[]>;

/** The script defined on `client` (EVALSHA, EVAL on NOSCRIPT); calls route by their first key. */
export function scriptTake(client: Redis): Take {
  client.defineCommand(COMMAND, { lua: SCRIPT_LUA });
  const call = (client as unknown as Record<typeof COMMAND, ScriptCall>)[COMMAND].bind(client);
  return async (limitValues, opKeys) => {
    const reply = await call(1, opKeys[0] ?? 'rl:{bench}', ...takeArgv(limitValues, opKeys));
    if (!Array.isArray(reply) || reply.length !== 1 + opKeys.length * (1 + STATE_FIELDS)) {
      throw new Error(`lua/openclaw.lua take: unexpected reply ${JSON.stringify(reply)}`);
    }
    return opKeys.map((_, i) => Number(reply[1 + i * (1 + STATE_FIELDS)]));
  };
}
