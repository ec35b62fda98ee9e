// A labelled counter fed by plain additions on the hot path (metrics.ts uses it
// for the per-decision counters).
import type { Counter } from 'prom-client';

/** One labelled series of a tallied counter: its labels and where its pending count lives. */
interface TallySeries<L> {
  readonly labels: L;
  readonly counts: Float64Array;
  readonly index: number;
}

/**
 * A labelled prom-client counter whose increments are plain additions into
 * a Float64Array, added to the counter (`inc(labels, n)`) when it is
 * collected at scrape time: the hot path builds no label key and hashes no
 * labels. Series are flushed in the order they were first counted, so
 * /metrics lists them as prom-client's own per-call inc() would.
 */
export class CounterTally<L extends Partial<Record<string, string>>> {
  private readonly series: TallySeries<L>[] = [];

  constructor(private readonly counter: Counter<string>) {}

  /** Starts a series; its counts live at `counts[index]`. */
  add(labels: L, counts: Float64Array, index: number): void {
    this.series.push({ labels: Object.freeze(labels), counts, index });
  }

  flush(): void {
    for (const series of this.series) this.flushOne(series);
  }

  /**
   * Stops tracking the series `keep` rejects, their pending counts added to
   * the counter first. The kept series are not flushed: a config reload
   * calls this, and flushing thousands of per-rule series there held the
   * event loop for ~10 ms.
   */
  retain(keep: (labels: L) => boolean): void {
    const kept = this.series.filter((one) => {
      if (keep(one.labels)) return true;
      this.flushOne(one);
      return false;
    });
    if (kept.length === this.series.length) return;
    this.series.length = 0;
    this.series.push(...kept);
  }

  private flushOne({ labels, counts, index }: TallySeries<L>): void {
    const n = counts[index]!;
    if (n === 0) return;
    counts[index] = 0;
    this.counter.inc(labels, n);
  }
}
