/**
 * Seeded randomness for the torture suite: one base seed drives every episode, and each episode derives its own
 * seed from the base and its number, so `--episode N` replays episode N alone with the same draws.
 */

/** A seeded PRNG (mulberry32) with the draws the suite needs. */
export class Rng {
  #a: number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#a = this.seed;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = this.#a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)] as T;
  }

  /** Picks by weight: `[[value, weight], …]`. */
  weighted<T>(items: readonly (readonly [T, number])[]): T {
    const total = items.reduce((sum, [, w]) => sum + w, 0);
    let at = this.next() * total;
    for (const [value, w] of items) {
      at -= w;
      if (at < 0) return value;
    }
    return (items[items.length - 1] as readonly [T, number])[0];
  }

  /** Poisson(λ) by inversion (λ is small here). */
  poisson(lambda: number): number {
    const limit = Math.exp(-lambda);
    let k = 0;
    let p = this.next();
    while (p > limit && k < 1000) {
      k++;
      p *= this.next();
    }
    return k;
  }

  /** Exponential with the given mean. */
  exponential(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }

  /** Pareto with scale `min` and shape `alpha`, capped: heavy-tailed payload sizes. */
  pareto(min: number, alpha: number, cap: number): number {
    return Math.min(cap, Math.floor(min / (1 - this.next()) ** (1 / alpha)));
  }

  /** A child generator whose stream does not depend on how many draws this one makes later. */
  fork(label: string): Rng {
    return new Rng(deriveSeed(this.seed, label));
  }
}

/** FNV-1a over a string, 32 bits. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The seed of a named part (an episode, a section) derived from a base seed. */
export function deriveSeed(base: number, label: string | number): number {
  return fnv1a(`${base >>> 0}:${label}`);
}

/** Parses `0xC0FFEE`, `12345` or `random`. */
export function parseSeed(text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback >>> 0;
  if (text === 'random') return (Math.random() * 2 ** 32) >>> 0;
  const n = text.startsWith('0x') || text.startsWith('0X') ? Number.parseInt(text.slice(2), 16) : Number(text);
  if (!Number.isFinite(n)) throw new Error(`Cannot read the seed \`${text}\`; use a number, 0x… or random.`);
  return n >>> 0;
}

export function hexSeed(seed: number): string {
  return `0x${(seed >>> 0).toString(16).toUpperCase()}`;
}
