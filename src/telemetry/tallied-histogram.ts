// A histogram kept in plain numbers and written as Prometheus text by us
// (metrics.ts uses it for the per-decision duration). prom-client's Histogram
// costs about 300 ns per observe (label validation and hashing) and has no
// public way to add counts in bulk; a subclass would have to rebuild its
// private export shape. So this one is ours end to end: observe is a few
// additions, a snapshot is plain JSON (it crosses the --workers IPC channel),
// snapshots of several processes merge by summing, and the text follows the
// exposition format that prom-client itself writes (docs/metrics.md).

/** One labelled series: per-bucket (not cumulative) counts, the last bucket +Inf. */
export class HistogramSeries {
  readonly buckets: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labelValue: string,
    private readonly bounds: readonly number[],
    private readonly onFirstObservation: (series: HistogramSeries) => void,
  ) {
    this.buckets = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    if (this.count === 0) this.onFirstObservation(this);
    const { bounds } = this;
    let b = 0;
    while (b < bounds.length && value > bounds[b]!) b++;
    this.buckets[b]!++;
    this.sum += value;
    this.count++;
  }
}

/** What a histogram holds at one moment, in plain JSON. */
export interface HistogramSnapshot {
  readonly name: string;
  readonly help: string;
  readonly labelName: string;
  /** Upper bounds, +Inf left out. */
  readonly bounds: readonly number[];
  /** In the order each series was first observed. */
  readonly series: readonly { readonly labelValue: string; readonly buckets: readonly number[]; readonly sum: number; readonly count: number }[];
}

/** A histogram with one label: a series per label value, each made once and then only observed. */
export class TalliedHistogram {
  private readonly bounds: readonly number[];
  private readonly byLabel = new Map<string, HistogramSeries>();
  private readonly seriesInOrder: HistogramSeries[] = [];

  constructor(private readonly config: { name: string; help: string; labelName: string; buckets: readonly number[] }) {
    this.bounds = Object.freeze([...config.buckets]); // increasing, as written in metrics.ts
  }

  /**
   * The series of `labelValue`, for the caller to keep and observe. It is
   * written from its first observation on (a series nobody observed is not
   * written, as with prom-client), in the order of first observations.
   */
  series(labelValue: string): HistogramSeries {
    let series = this.byLabel.get(labelValue);
    if (series === undefined) {
      series = new HistogramSeries(labelValue, this.bounds, (observed) => this.seriesInOrder.push(observed));
      this.byLabel.set(labelValue, series);
    }
    return series;
  }

  snapshot(): HistogramSnapshot {
    return {
      name: this.config.name,
      help: this.config.help,
      labelName: this.config.labelName,
      bounds: this.bounds,
      series: this.seriesInOrder.map((one) => ({ labelValue: one.labelValue, buckets: [...one.buckets], sum: one.sum, count: one.count })),
    };
  }
}

/** The sum of several processes' snapshots of one histogram (--workers); series in order of first appearance. */
export function mergeHistogramSnapshots(snapshots: readonly HistogramSnapshot[]): HistogramSnapshot | undefined {
  const [first] = snapshots;
  if (first === undefined) return undefined;
  const merged = new Map<string, { labelValue: string; buckets: number[]; sum: number; count: number }>();
  // Every worker runs the same build: one name, one set of bounds.
  for (const snapshot of snapshots) {
    for (const one of snapshot.series) {
      const into = merged.get(one.labelValue);
      if (into === undefined) {
        merged.set(one.labelValue, { labelValue: one.labelValue, buckets: [...one.buckets], sum: one.sum, count: one.count });
        continue;
      }
      one.buckets.forEach((n, b) => { into.buckets[b] = (into.buckets[b] ?? 0) + n; });
      into.sum += one.sum;
      into.count += one.count;
    }
  }
  return { ...first, series: [...merged.values()] };
}

const escapeHelp = (text: string): string => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabel = (text: string): string => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

/** Prometheus text exposition (0.0.4) of a snapshot: HELP, TYPE, then per series its cumulative buckets, sum and count. */
export function histogramText(snapshot: HistogramSnapshot): string {
  const { name, labelName, bounds } = snapshot;
  const lines = [`# HELP ${name} ${escapeHelp(snapshot.help)}`, `# TYPE ${name} histogram`];
  for (const one of snapshot.series) {
    const label = `${labelName}="${escapeLabel(one.labelValue)}"`;
    let cumulative = 0;
    for (let b = 0; b <= bounds.length; b++) {
      cumulative += one.buckets[b] ?? 0;
      const le = b < bounds.length ? String(bounds[b]) : '+Inf';
      lines.push(`${name}_bucket{le="${le}",${label}} ${cumulative}`);
    }
    lines.push(`${name}_sum{${label}} ${one.sum}`, `${name}_count{${label}} ${one.count}`);
  }
  return lines.join('\n');
}
