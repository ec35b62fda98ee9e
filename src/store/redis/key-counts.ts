// How many times each key is counted in: a multiset of store keys, used for
// what is still on its way to Redis (admissions held for a late reply, debit
// calls in flight) so replies that lack it do not raise the local state.

export class KeyCounts {
  private readonly counts = new Map<string, number>();

  /** Distinct keys counted in. */
  get size(): number {
    return this.counts.size;
  }

  has(key: string): boolean {
    return this.counts.size > 0 && this.counts.has(key);
  }

  /** Counts each op's key in once. */
  add(ops: readonly { readonly key: string }[]): void {
    for (const { key } of ops) this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Counts each op's key out once; a key counted out as often as in is gone. */
  remove(ops: readonly { readonly key: string }[]): void {
    for (const { key } of ops) {
      const count = (this.counts.get(key) ?? 0) - 1;
      if (count > 0) this.counts.set(key, count);
      else this.counts.delete(key);
    }
  }
}
