/**
 * The memoised DAG with sharing: node (i, j) of an n × m lattice depends on (i + 1, j) and (i, j + 1) while they
 * are inside it, is keyed by `"i,j"`, and combines its children's path counts mod 1,000,003. Every interior node
 * is shared by two parents; the root's result is the number of monotone paths from (0, 0) to (n - 1, m - 1):
 * C(n + m - 2, n - 1) mod 1,000,003.
 *
 *   npx rlm run examples/lattice.ts --input '{"n":200,"m":200}'   # 40,000 nodes; prints C(398, 199) mod 1,000,003
 */
import { defineTask } from 'rlm';

interface LatticeInput {
  n: number;
  m: number;
  i?: number;
  j?: number;
}

const MOD = 1_000_003;

export default defineTask<LatticeInput, number>({
  name: 'lattice',
  key: ({ i = 0, j = 0 }) => `${i},${j}`,
  run({ n, m, i = 0, j = 0 }) {
    const children = [];
    if (i + 1 < n) children.push({ input: { n, m, i: i + 1, j } });
    if (j + 1 < m) children.push({ input: { n, m, i, j: j + 1 } });
    if (children.length === 0) return { result: 1 };
    return { children };
  },
  combine(_input, paths) {
    let total = 0;
    for (const count of paths) total = (total + (count as number)) % MOD;
    return total;
  },
});
