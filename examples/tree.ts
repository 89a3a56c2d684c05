/**
 * A full tree: every node spawns `fanout` children until `depth` runs out, and combines its children's counts.
 * The run's result is the node count of the whole tree: (fanout^(depth+1) - 1) / (fanout - 1).
 *
 *   npx rlm run examples/tree.ts --input '{"fanout":10,"depth":6}'   # 1,111,111 nodes
 */
import { defineTask } from 'rlm';

interface TreeInput {
  fanout: number;
  depth: number;
}

export default defineTask<TreeInput, number>({
  name: 'tree',
  // The size is known, so progress shows a percentage and an ETA.
  estimate: ({ fanout, depth }) => (fanout === 1 ? depth + 1 : (fanout ** (depth + 1) - 1) / (fanout - 1)),
  run({ fanout, depth }) {
    if (depth === 0) return { result: 1 };
    const children = [];
    for (let i = 0; i < fanout; i++) children.push({ input: { fanout, depth: depth - 1 } });
    return { children };
  },
  combine(_input, counts) {
    let total = 1;
    for (const count of counts) total += count as number;
    return total;
  },
});
