/**
 * The memoised-DAG shape on the tree: every node has a key (its path from the root, `r.3.0.7`), so each spawn
 * goes through the run's key index, and the tree combines its children's counts like examples/tree.ts.
 * Paths are unique, so the run still has every node of the full tree and its result is their count.
 *
 *   npx rlm run bench/tasks/tree-keyed.ts --input '{"fanout":10,"depth":6}'   # 1,111,111 nodes
 */
import { defineTask } from 'rlm';

interface KeyedInput {
  fanout: number;
  depth: number;
  /** Path from the root; the root's input leaves it out. */
  path?: string;
}

export default defineTask<KeyedInput, number>({
  name: 'tree-keyed',
  key: (input) => input.path ?? 'r',
  run({ fanout, depth, path = 'r' }) {
    if (depth === 0) return { result: 1 };
    const children = [];
    for (let i = 0; i < fanout; i++) children.push({ input: { fanout, depth: depth - 1, path: `${path}.${i}` } });
    return { children };
  },
  combine(_input, counts) {
    let total = 1;
    for (const count of counts) total += count as number;
    return total;
  },
});
