// Circuit breakers per Redis master: a failed shard sends only its own keys to the failure policy.
import { CircuitBreaker, type BreakerState } from './circuit-breaker.js';

/** How often an open breaker's node is probed with PING (it lets a probe through after its cool-down). */
const PROBE_INTERVAL_MS = 250;

type NodeStateListener = (node: string, state: BreakerState, previous: BreakerState) => void;

export interface NodeHealthOptions {
  /** PINGs one node; rejects when it does not answer (within its own deadline). */
  ping(node: string): Promise<unknown>;
  onStateChange: NodeStateListener;
  failureThreshold?: number;
  coolDownMs?: number;
}

/**
 * One CircuitBreaker per master ("host:port"). A node's breaker opens after
 * consecutive failed calls to that node (errors, closed connections, real
 * deadline misses), never because of another node. While it is open the node
 * is probed in the background: a sidecar that is unready (policy deny) gets
 * no traffic, so decisions alone would never find out that Redis is back.
 */
export class NodeHealth {
  private readonly breakers = new Map<string, CircuitBreaker>();
  private readonly probes = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly options: NodeHealthOptions) {}

  private breaker(node: string): CircuitBreaker {
    let breaker = this.breakers.get(node);
    if (breaker === undefined) {
      const options: ConstructorParameters<typeof CircuitBreaker>[0] = {};
      if (this.options.failureThreshold !== undefined) options.failureThreshold = this.options.failureThreshold;
      if (this.options.coolDownMs !== undefined) options.coolDownMs = this.options.coolDownMs;
      breaker = new CircuitBreaker(options);
      breaker.onStateChange((state, previous) => {
        if (state === 'open') this.probe(node);
        this.options.onStateChange(node, state, previous);
      });
      this.breakers.set(node, breaker);
    }
    return breaker;
  }

  /** May a call go to `node` now? (false while its breaker is open, or a probe is in flight). */
  tryAcquire(node: string): boolean {
    return this.breaker(node).tryAcquire();
  }

  success(node: string): void {
    this.breakers.get(node)?.success();
  }

  failure(node: string): void {
    this.breaker(node).failure();
  }

  /** Nodes whose breaker is not closed. */
  unavailable(): string[] {
    return [...this.breakers].filter(([, breaker]) => breaker.state !== 'closed').map(([node]) => node);
  }

  stateOf(node: string): BreakerState {
    return this.breakers.get(node)?.state ?? 'closed';
  }

  /** Forgets nodes that no longer serve slots (a failover replaced them); their state is reported closed. */
  retain(current: ReadonlySet<string>): void {
    for (const [node, breaker] of this.breakers) {
      if (current.has(node)) continue;
      this.stopProbe(node);
      this.breakers.delete(node);
      if (breaker.state !== 'closed') this.options.onStateChange(node, 'closed', breaker.state);
    }
  }

  close(): void {
    this.closed = true;
    for (const node of [...this.probes.keys()]) this.stopProbe(node);
  }

  private probe(node: string): void {
    if (this.probes.has(node) || this.closed) return;
    const timer = setInterval(() => {
      const breaker = this.breakers.get(node);
      if (this.closed || breaker === undefined || breaker.state === 'closed') {
        this.stopProbe(node);
        return;
      }
      if (!breaker.tryAcquire()) return;
      this.options.ping(node).then(() => breaker.success(), () => breaker.failure());
    }, PROBE_INTERVAL_MS);
    timer.unref();
    this.probes.set(node, timer);
  }

  private stopProbe(node: string): void {
    clearInterval(this.probes.get(node));
    this.probes.delete(node);
  }
}
