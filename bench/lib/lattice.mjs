/**
 * The DAG workload shared by the DAG floors: examples/lattice.ts. Node (i, j) of an n × m lattice depends on
 * (i + 1, j) and (i, j + 1) while they are inside it; its result is the number of monotone paths from it to the
 * far corner, mod 1,000,003, so the root's result is C(n + m - 2, n - 1) mod 1,000,003.
 */
export const MOD = 1_000_003;

/** The children of node (i, j), as the task's run() lists them. */
export function latticeChildren(n, m, i, j) {
  const children = [];
  if (i + 1 < n) children.push([i + 1, j]);
  if (j + 1 < m) children.push([i, j + 1]);
  return children;
}

/** C(n + m - 2, n - 1) mod 1,000,003: the root's result, for the check. */
export function latticeResult(n, m) {
  let value = 1n;
  const k = n - 1;
  const total = n + m - 2;
  for (let i = 1; i <= k; i++) value = (value * BigInt(total - k + i)) / BigInt(i);
  return Number(value % BigInt(MOD));
}
