/**
 * Traversal with one journaled effect per node: each step calls `ctx.effect` once (a trivial, synchronous
 * side effect) before spawning its children. An effect's journal entry must be durable before its step goes on,
 * so this measures the cost of that forced commit. Run it on a smaller tree (10^4 to 10^5 nodes).
 *
 *   npx rlm run bench/tasks/tree-effect.ts --input '{"fanout":10,"depth":4}'   # 11,111 nodes
 */
import { defineTask } from 'rlm';

interface TreeInput {
  fanout: number;
  depth: number;
}

export default defineTask<TreeInput, number>({
  name: 'tree-effect',
  async run({ fanout, depth }, ctx) {
    await ctx.effect('visit', (idempotencyKey) => idempotencyKey.length);
    if (depth === 0) return { result: 1 };
    const children = [];
    for (let i = 0; i < fanout; i++) children.push({ input: { fanout, depth: depth - 1 } });
    return { children };
  },
});
