/**
 * Traversal only: the tree of examples/tree.ts without `combine`. Each node spawns `fanout` children until
 * `depth` runs out and nothing flows back up, so the run's result is null; the bench checks the done count.
 *
 *   npx rlm run bench/tasks/tree-walk.ts --input '{"fanout":10,"depth":6}'   # 1,111,111 nodes
 */
import { defineTask } from 'rlm';

interface TreeInput {
  fanout: number;
  depth: number;
}

export default defineTask<TreeInput, number>({
  name: 'tree-walk',
  run({ fanout, depth }) {
    if (depth === 0) return { result: 1 };
    const children = [];
    for (let i = 0; i < fanout; i++) children.push({ input: { fanout, depth: depth - 1 } });
    return { children };
  },
});
