/** Exact binomials for the lattice tests: examples/lattice.ts counts monotone paths mod 1,000,003. */
export const LATTICE_MOD = 1_000_003n;

/** C(n, k), exactly. */
export function binomial(n: number, k: number): bigint {
  let value = 1n;
  for (let i = 1; i <= k; i++) value = (value * BigInt(n - k + i)) / BigInt(i);
  return value;
}

/** C(n, k) mod 1,000,003. */
export function binomialMod(n: number, k: number): number {
  return Number(binomial(n, k) % LATTICE_MOD);
}
