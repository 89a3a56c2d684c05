/*
 * Dependency cycles in a memoised DAG, found when a run stalls.
 *
 * A keyed child that exists already is shared: its parent waits on it like on any other child. When that child
 * (or one of its descendants) waits on the parent in turn, the nodes of the cycle wait on each other and none
 * can ever finish. Checking every shared edge for a path back up costs a walk over the parent's ancestors per
 * edge — in a DAG with sharing, a large part of the graph, so quadratic over a run. Instead the stores look
 * only when a run stops making progress: nothing pending or running, nodes still waiting. Then every waiting
 * node is blocked, and the waiting nodes reachable from the root are searched once, depth-first. Each back
 * edge of that search (a node waiting on a node on the search's current path) closes a cycle; its parent goes
 * to the dead-letter queue with code CYCLE, which breaks every cycle at once (a graph without the back edges
 * of a depth-first search has none). A run with no cycle pays nothing until it stalls, and a stall is rare:
 * the end of a run blocked by dead children, once.
 */
import type { ErrorEntry } from './store.js';

/** A node that closes a dependency cycle: it waits on `childId`, which leads back to it through `path`. */
export interface CycleCloser {
  nodeId: number;
  childId: number;
  /** The cycle from `childId` down to `nodeId`. */
  path: number[];
}

/**
 * The back edges of a depth-first search from `rootId` over `edges` (parent → child, both waiting), in the
 * order the search finds them, one per closing node.
 */
export function findCycleClosers(rootId: number, edges: Iterable<{ parent: number; child: number }>): CycleCloser[] {
  const children = new Map<number, number[]>();
  for (const { parent, child } of edges) {
    const list = children.get(parent);
    if (list) list.push(child);
    else children.set(parent, [child]);
  }
  for (const list of children.values()) list.sort((a, b) => a - b);
  const closers: CycleCloser[] = [];
  const closed = new Set<number>();
  /** Position of a node on the current path; absent once its search is over. */
  const onPath = new Map<number, number>();
  const finished = new Set<number>();
  const path: number[] = [rootId];
  const next: number[] = [0];
  onPath.set(rootId, 0);
  while (path.length > 0) {
    const top = path.length - 1;
    const node = path[top] as number;
    const list = children.get(node);
    const i = next[top] as number;
    if (list === undefined || i >= list.length) {
      onPath.delete(node);
      finished.add(node);
      path.pop();
      next.pop();
      continue;
    }
    next[top] = i + 1;
    const child = list[i] as number;
    const at = onPath.get(child);
    if (at !== undefined) {
      if (!closed.has(node)) {
        closed.add(node);
        closers.push({ nodeId: node, childId: child, path: path.slice(at) });
      }
    } else if (!finished.has(child)) {
      onPath.set(child, path.length);
      path.push(child);
      next.push(0);
    }
  }
  return closers;
}

/** How many keys of a cycle its error message names before it elides the rest. */
const KEYS_SHOWN = 8;

/** The dead-letter entry of a node that closes a cycle, naming the cycle by the keys of its nodes. */
export function cycleError(keys: readonly string[], now: number, worker: string): ErrorEntry {
  const shown = keys.length <= KEYS_SHOWN ? keys : [...keys.slice(0, KEYS_SHOWN - 1), `… ${keys.length - KEYS_SHOWN} more …`, keys[keys.length - 1] as string];
  const cycle = [...shown, keys[0] as string].map((key) => JSON.stringify(key)).join(' → ');
  return {
    attempt: 0,
    message:
      `Dependency cycle: this node waits on the child with key ${JSON.stringify(keys[0])}, which leads back to it (${cycle}); ` +
      'waiting would never end. Break the cycle in the handler (a key must not depend on itself), then `rlm dlq retry`.',
    code: 'CYCLE',
    stack: null,
    at: now,
    worker,
  };
}
