/**
 * The upper bound: the tree as plain in-memory recursion, nothing durable. `walk` visits every node from an
 * explicit stack (the shape of a work loop); `combine` recurses and sums the counts on the way back up.
 *
 *   node bench/baselines/memory.mjs '{"shape":"walk","fanout":10,"depth":6}'
 */
import { combine, parseArgs, report, step } from '../lib/tree.mjs';

function walk(root) {
  let nodes = 0;
  const stack = [root];
  while (stack.length > 0) {
    const out = step(stack.pop());
    nodes++;
    if (out.children) for (const child of out.children) stack.push(child.input);
  }
  return { nodes, result: nodes };
}

function solve(input, counter) {
  const out = step(input);
  counter.nodes++;
  if (!out.children) return out.result;
  const results = [];
  for (const child of out.children) results.push(solve(child.input, counter));
  return combine(input, results);
}

const { shape, fanout, depth } = parseArgs();
const started = performance.now();
let outcome;
if (shape === 'walk') {
  outcome = walk({ fanout, depth });
} else {
  const counter = { nodes: 0 };
  const result = solve({ fanout, depth }, counter);
  outcome = { nodes: counter.nodes, result };
}
report({ ...outcome, seconds: (performance.now() - started) / 1000 });
