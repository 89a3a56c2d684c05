/**
 * The tree walk of bench/tasks/tree-walk.ts with every node in one group whose limit never binds: what a group's
 * gate costs on the hot path when it lets everything through.
 *
 *   npx rlm run bench/tasks/tree-walk-grouped.ts --input '{"fanout":10,"depth":6}'   # 1,111,111 nodes
 */
import { defineTask } from 'rlm';

interface TreeInput {
  fanout: number;
  depth: number;
}

export default defineTask<TreeInput, number>({
  name: 'tree-walk-grouped',
  group: () => 'everything',
  groups: { concurrency: 1_000_000 },
  run({ fanout, depth }) {
    if (depth === 0) return { result: 1 };
    const children = [];
    for (let i = 0; i < fanout; i++) children.push({ input: { fanout, depth: depth - 1 } });
    return { children };
  },
});
