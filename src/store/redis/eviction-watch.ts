// Whether Redis may evict buckets, and whether it has: an evicted bucket is a
// full one, so eviction silently hands out a limit again. Read at connect and
// every 30 s on every master; reported as a warning (a log line, metrics and
// /readyz's detail), never as unreadiness: the limits still hold for every
// bucket Redis keeps (docs/redis.md "Expiry and eviction").
import type { Redis } from 'ioredis';
import { StoreCallError, errorMessage } from '../../errors.js';
import type { StoreEvents, StoreLogger } from './options.js';
import type { Topology } from './topology.js';

const CHECK_INTERVAL_MS = 30_000;
/** /readyz names evictions seen this recently. */
const EVICTED_WARNING_MS = 10 * 60_000;
/** While keys keep being evicted, one log line per node at most this often. */
const EVICTED_LOG_MS = 10 * 60_000;

interface NodeReading {
  policy: string;
  canEvict: boolean;
  /** Redis's evicted_keys at the last reading. */
  evictedKeys: number;
  evictedSeenAtMs: number;
  /** Keys evicted as this sidecar read it (the first reading: since Redis started). */
  evictedTotal: number;
  evictedUnlogged: number;
  evictedLoggedAtMs: number;
}

interface MemorySettings {
  policy: string;
  maxmemory: number;
}

export interface EvictionWatchOptions {
  readonly topology: Topology;
  usable(): boolean;
  readonly events: Partial<StoreEvents>;
  readonly logger: StoreLogger;
}

/**
 * Buckets can be evicted when Redis has a memory limit (maxmemory > 0) and a
 * maxmemory-policy other than noeviction: allkeys-* policies evict any key,
 * and volatile-* policies evict keys with a TTL, which every bucket has.
 * Evictions are read from INFO stats `evicted_keys` (any key: ours or not;
 * the first reading of a node counts what it evicted since it started).
 * The policy comes from INFO memory, or CONFIG GET where the ACL forbids
 * INFO; where both are forbidden it is unknown and logged once.
 */
export class EvictionWatch {
  private readonly readings = new Map<string, NodeReading>();
  private readonly timer: NodeJS.Timeout;
  private unknownLogged = false;
  private checking = false;

  constructor(private readonly options: EvictionWatchOptions) {
    this.timer = setInterval(() => this.check(), CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  /** Reads every master now (at connect); at most one round at a time. */
  check(): void {
    if (this.checking || !this.options.usable()) return;
    this.checking = true;
    const masters = this.options.topology.masterClients();
    void Promise.allSettled(masters.map(({ node, client }) => this.read(node, client))).then(() => {
      this.checking = false;
    });
  }

  /** What /readyz says about eviction: per master, whether it may evict buckets and whether it has lately. */
  warnings(): string[] {
    const nowMs = performance.now();
    const phrases: string[] = [];
    for (const [node, reading] of this.readings) {
      if (reading.canEvict) phrases.push(`redis ${node} may evict buckets (maxmemory-policy ${reading.policy}; run it with noeviction)`);
      if (reading.evictedSeenAtMs > 0 && nowMs - reading.evictedSeenAtMs < EVICTED_WARNING_MS) {
        phrases.push(`redis ${node} evicted ${reading.evictedTotal} keys, the last within 10 minutes (buckets among them start full again)`);
      }
    }
    return phrases;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async read(node: string, client: Redis): Promise<void> {
    let settings: MemorySettings;
    let evictedKeys: number;
    try {
      [settings, evictedKeys] = await Promise.all([memorySettings(client), evictedKeysOf(client)]);
    } catch (error: unknown) {
      if (!this.unknownLogged) {
        this.unknownLogged = true;
        this.options.logger.info({ node, cause: errorMessage(error) },
          'cannot read redis eviction settings (INFO and CONFIG GET refused or failed): eviction is not watched on this node');
      }
      return;
    }
    const canEvict = settings.maxmemory > 0 && settings.policy !== 'noeviction';
    const previous = this.readings.get(node);
    // The first reading counts what Redis evicted since it started (buckets may be among them); a Redis
    // restarted in between counts from 0 again.
    const evictedSinceLast = previous === undefined || evictedKeys < previous.evictedKeys ? evictedKeys : evictedKeys - previous.evictedKeys;
    const nowMs = performance.now();
    const reading: NodeReading = previous ?? {
      policy: settings.policy, canEvict: false, evictedKeys, evictedSeenAtMs: 0, evictedTotal: 0, evictedUnlogged: 0, evictedLoggedAtMs: -Infinity,
    };
    if (canEvict && (!reading.canEvict || reading.policy !== settings.policy)) {
      this.options.logger.warn({ node, maxmemoryPolicy: settings.policy, maxmemory: settings.maxmemory },
        `redis ${node} may evict rate-limit buckets (maxmemory-policy ${settings.policy}): an evicted bucket is a full one, so its limit is handed out again; run Redis with maxmemory-policy noeviction`);
    }
    reading.policy = settings.policy;
    reading.canEvict = canEvict;
    reading.evictedKeys = evictedKeys;
    if (evictedSinceLast > 0) {
      reading.evictedSeenAtMs = nowMs;
      reading.evictedUnlogged += evictedSinceLast;
      reading.evictedTotal += evictedSinceLast;
      if (nowMs - reading.evictedLoggedAtMs >= EVICTED_LOG_MS) {
        this.options.logger.warn({ node, evictedKeys: reading.evictedUnlogged, maxmemoryPolicy: settings.policy },
          `redis ${node} evicted ${reading.evictedUnlogged} keys: rate-limit buckets among them start full again`);
        reading.evictedLoggedAtMs = nowMs;
        reading.evictedUnlogged = 0;
      }
    }
    this.readings.set(node, reading);
    this.options.events.eviction?.(node, { policy: settings.policy, canEvict, evictedSinceLast });
  }
}

/** maxmemory-policy and maxmemory: INFO memory, or CONFIG GET where the ACL forbids INFO. */
async function memorySettings(client: Redis): Promise<MemorySettings> {
  try {
    const info = await client.info('memory');
    const policy = infoField(info, 'maxmemory_policy');
    const maxmemory = Number(infoField(info, 'maxmemory'));
    if (policy !== undefined && Number.isFinite(maxmemory)) return { policy, maxmemory };
  } catch {
    // Forbidden or failed: try CONFIG GET.
  }
  const [policyPair, maxmemoryPair] = await Promise.all([client.config('GET', 'maxmemory-policy'), client.config('GET', 'maxmemory')]) as string[][];
  const policy = policyPair?.[1];
  const maxmemory = Number(maxmemoryPair?.[1]);
  if (policy === undefined || !Number.isFinite(maxmemory)) throw new StoreCallError('redis: CONFIG GET gave no maxmemory-policy');
  return { policy, maxmemory };
}

async function evictedKeysOf(client: Redis): Promise<number> {
  try {
    const evicted = Number(infoField(await client.info('stats'), 'evicted_keys'));
    return Number.isFinite(evicted) ? evicted : 0;
  } catch {
    return 0; // INFO forbidden: evictions cannot be seen, the policy (CONFIG GET) still can
  }
}

function infoField(info: string, name: string): string | undefined {
  const match = new RegExp(`^${name}:(.*)$`, 'm').exec(info);
  return match?.[1]?.trim();
}
