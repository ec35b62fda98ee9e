// Sidecar heartbeats: how many sidecars share this Redis (for --fallback-divisor auto).
import { withRedisDeadline } from './deadline.js';
import type { RedisLibrary } from './library.js';

const INTERVAL_MS = 1_000;
/** A sidecar counts while its last heartbeat is this recent. */
const TTL_US = 5_000_000;
/**
 * A heartbeat is bookkeeping, not a decision: it may take longer than a
 * decision's deadline, so a Redis that is merely slower than that deadline
 * still counts the sidecars (the divisor of the decisions it cannot make).
 */
const MIN_DEADLINE_MS = 1_000;

/**
 * Every second this process refreshes its member in one sorted set (Redis
 * time as score, lua/openclaw.lua `presence`) and reads how many members
 * heartbeated within the last 5 s: itself and every other sidecar (or worker)
 * that decides against this Redis and would decide locally in an outage.
 */
export class Presence {
  private readonly member = `${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly library: RedisLibrary,
    private readonly key: string,
    private readonly timeoutMs: number,
    private readonly usable: () => boolean,
    private readonly onCount: (count: number) => void,
    private readonly onError: (error: unknown) => void,
  ) {
    this.timer = setInterval(() => void this.beat(), INTERVAL_MS);
    this.timer.unref();
  }

  async beat(): Promise<void> {
    if (!this.usable()) return;
    try {
      const deadlineMs = Math.max(this.timeoutMs, MIN_DEADLINE_MS);
      this.onCount(await withRedisDeadline(this.library.presence(this.key, this.member, TTL_US), deadlineMs, 'presence'));
    } catch (error: unknown) {
      this.onError(error);
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
