/** The tree workload shared by every baseline and peer: the same handler shape as examples/tree.ts. */

/** Nodes of a full `fanout`-ary tree of the given depth (the root is depth 0). */
export function treeSize(fanout, depth) {
  let total = 0;
  let level = 1;
  for (let d = 0; d <= depth; d++) {
    total += level;
    level *= fanout;
  }
  return total;
}

/** One step of examples/tree.ts: a leaf returns 1, an inner node returns `fanout` child inputs. */
export function step({ fanout, depth }) {
  if (depth === 0) return { result: 1 };
  const children = [];
  for (let i = 0; i < fanout; i++) children.push({ input: { fanout, depth: depth - 1 } });
  return { children };
}

/** The combine of examples/tree.ts: this node plus its children's counts. */
export function combine(_input, counts) {
  let total = 1;
  for (const count of counts) total += count;
  return total;
}

/** Parses the one JSON argument a baseline or peer script takes. */
export function parseArgs() {
  const text = process.argv[2];
  if (!text) throw new Error(`usage: node ${process.argv[1]} '<json options>'`);
  return JSON.parse(text);
}

/** Prints a script's outcome as the one JSON line the runner reads. */
export function report(outcome) {
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
}

/**
 * Resolves to 'done' when `finished` does, or to 'deadline' after `seconds` (a peer too slow for the bench's time
 * budget then reports the jobs it completed by then, marked partial). Rejects when `finished` rejects.
 */
export function raceDeadline(finished, seconds) {
  let timer;
  const deadline = new Promise((resolve) => {
    timer = setTimeout(() => resolve('deadline'), seconds * 1000);
  });
  return Promise.race([finished.then(() => 'done'), deadline]).finally(() => clearTimeout(timer));
}
