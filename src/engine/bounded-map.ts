/**
 * A Map that forgets its oldest entries past a count or a byte budget: a cache whose every miss has a slower
 * way round (the worker's remembered DAG results and waiting parents). `bytes` is the caller's estimate of what
 * an entry holds, such as the length of its stored payload.
 *
 * The order of insertion is kept in a queue of its own: taking the oldest entry of a Map by iterating it walks
 * past every slot deleted since the Map last rehashed, which made eviction cost grow with the churn.
 */
export class BoundedMap<K, V> {
  readonly #entries = new Map<K, { value: V; bytes: number; seq: number }>();
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #onEvict: ((key: K, value: V) => void) | undefined;
  /** Keys in insertion order with the sequence number they were set under; stale ones are skipped. */
  #queueKeys: K[] = [];
  #queueSeqs: number[] = [];
  #head = 0;
  #seq = 0;
  #bytes = 0;

  constructor(options: { maxEntries: number; maxBytes: number; onEvict?: (key: K, value: V) => void }) {
    this.#maxEntries = options.maxEntries;
    this.#maxBytes = options.maxBytes;
    this.#onEvict = options.onEvict;
  }

  get size(): number {
    return this.#entries.size;
  }

  has(key: K): boolean {
    return this.#entries.has(key);
  }

  get(key: K): V | undefined {
    return this.#entries.get(key)?.value;
  }

  set(key: K, value: V, bytes: number): void {
    this.delete(key);
    const seq = ++this.#seq;
    this.#entries.set(key, { value, bytes, seq });
    this.#queueKeys.push(key);
    this.#queueSeqs.push(seq);
    this.#bytes += bytes;
    while (this.#entries.size > this.#maxEntries || (this.#bytes > this.#maxBytes && this.#entries.size > 1)) {
      const oldest = this.#queueKeys[this.#head] as K;
      const oldestSeq = this.#queueSeqs[this.#head] as number;
      this.#head++;
      const entry = this.#entries.get(oldest);
      if (entry?.seq !== oldestSeq) continue;
      this.delete(oldest);
      this.#onEvict?.(oldest, entry.value);
    }
    const queued = this.#queueKeys.length - this.#head;
    if (queued > 2 * this.#entries.size + 1024 || (this.#head > 4096 && this.#head > queued)) this.#compact();
  }

  delete(key: K): boolean {
    const entry = this.#entries.get(key);
    if (!entry) return false;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
    return true;
  }

  clear(): void {
    this.#entries.clear();
    this.#queueKeys = [];
    this.#queueSeqs = [];
    this.#head = 0;
    this.#bytes = 0;
  }

  /** Drops the queue's stale keys (deleted or set again since), so it stays proportional to the entries. */
  #compact(): void {
    const keys: K[] = [];
    const seqs: number[] = [];
    for (let i = this.#head; i < this.#queueKeys.length; i++) {
      const key = this.#queueKeys[i] as K;
      const seq = this.#queueSeqs[i] as number;
      if (this.#entries.get(key)?.seq !== seq) continue;
      keys.push(key);
      seqs.push(seq);
    }
    this.#queueKeys = keys;
    this.#queueSeqs = seqs;
    this.#head = 0;
  }
}
