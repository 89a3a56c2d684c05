/**
 * The in-memory window of leased nodes, ordered like the store's frontier: priority first (higher runs first),
 * then `orderKey` ascending (the newest node first for depth-first, the oldest first for breadth-first).
 * Without priorities it is a plain stack or queue; with them, a binary heap.
 */
export interface Ordered {
  priority: number;
  orderKey: number;
}

export class Frontier<T extends Ordered> {
  readonly #items: T[] = [];
  readonly #mode: 'stack' | 'queue' | 'heap';
  #head = 0;

  constructor(mode: 'stack' | 'queue' | 'heap') {
    this.#mode = mode;
  }

  get size(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    if (this.#mode !== 'heap') {
      this.#items.push(item);
      return;
    }
    const items = this.#items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i] as T, items[parent] as T)) break;
      [items[i], items[parent]] = [items[parent] as T, items[i] as T];
      i = parent;
    }
  }

  peek(): T | undefined {
    if (this.#mode === 'stack') return this.#items[this.#items.length - 1];
    if (this.#mode === 'queue') return this.#items[this.#head];
    return this.#items[0];
  }

  pop(): T | undefined {
    const items = this.#items;
    if (this.#mode === 'stack') return items.pop();
    if (this.#mode === 'queue') {
      if (this.#head >= items.length) return undefined;
      const item = items[this.#head];
      this.#head++;
      if (this.#head > 1024 && this.#head * 2 > items.length) {
        items.splice(0, this.#head);
        this.#head = 0;
      }
      return item;
    }
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < items.length && before(items[l] as T, items[best] as T)) best = l;
        if (r < items.length && before(items[r] as T, items[best] as T)) best = r;
        if (best === i) break;
        [items[i], items[best]] = [items[best] as T, items[i] as T];
        i = best;
      }
    }
    return top;
  }

  /** Removes and returns every item. */
  drain(): T[] {
    const all = this.#items.slice(this.#head);
    this.#items.length = 0;
    this.#head = 0;
    return all;
  }
}

function before(a: Ordered, b: Ordered): boolean {
  return a.priority > b.priority || (a.priority === b.priority && a.orderKey < b.orderKey);
}
