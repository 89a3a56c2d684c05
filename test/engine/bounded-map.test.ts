import { describe, expect, it } from 'vitest';
import { BoundedMap } from '../../src/engine/bounded-map.js';

describe('BoundedMap', () => {
  it('forgets the oldest entries past its count, telling which', () => {
    const evicted: string[] = [];
    const map = new BoundedMap<string, number>({ maxEntries: 3, maxBytes: 1_000, onEvict: (key) => evicted.push(key) });
    for (const key of ['a', 'b', 'c', 'd']) map.set(key, 1, 1);
    expect(evicted).toEqual(['a']);
    // Set again, b becomes the newest: c goes next, then d.
    map.set('b', 2, 1);
    map.set('e', 1, 1);
    expect(evicted).toEqual(['a', 'c']);
    expect([map.has('b'), map.has('d'), map.has('e'), map.get('b')]).toEqual([true, true, true, 2]);
  });

  it('forgets past its byte budget, and a deleted entry frees its bytes', () => {
    const map = new BoundedMap<number, string>({ maxEntries: 100, maxBytes: 10 });
    map.set(1, 'x', 4);
    map.set(2, 'y', 4);
    map.delete(1);
    map.set(3, 'z', 4);
    expect([map.has(2), map.has(3)]).toEqual([true, true]);
    map.set(4, 'w', 4);
    expect([map.has(2), map.has(3), map.has(4)]).toEqual([false, true, true]);
  });

  it('keeps the newest entries through heavy churn of sets and deletes', () => {
    const map = new BoundedMap<number, number>({ maxEntries: 1_000, maxBytes: Number.POSITIVE_INFINITY });
    for (let i = 0; i < 200_000; i++) {
      map.set(i, i, 1);
      if (i % 3 === 0) map.delete(i);
    }
    expect(map.size).toBe(1_000);
    // The newest thousand that were not deleted.
    expect(map.has(199_999)).toBe(true);
    expect(map.has(199_998)).toBe(false);
  });
});
