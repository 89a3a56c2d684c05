/**
 * Seeded workloads: from one seed, a task spec (a tree, a memoised DAG with shared keys, or a wide fan-out),
 * with poison nodes, 0–3 effects and 1–3 emitted records per node, heavy-tailed payloads and streamed children.
 * The spec is written into a task module (task.mjs) next to the episode's store; task-lib.mjs runs it inside the
 * workers and reference.ts computes its exact expected outcome.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Rng } from './random.js';

export type Poison = 'throw' | 'nonretry' | 'crash' | 'nonserial' | 'invalidChild' | 'cycle' | 'flaky' | 'hang';

/** One node of a workload. Short field names keep big specs small inside the module file. */
export interface NodeSpec {
  /** Child ids in spawn order (a keyed DAG may list a shared id, or the same id twice). */
  c: string[];
  /** The node's own value. */
  v: number;
  /** Effects through the sink (0–3). */
  e: number;
  /** Emitted records (1–3). */
  m: number;
  p?: Poison;
  /** Children come from an async iterable. */
  s?: 1;
  /** Awaits this many ms (simulated I/O) before its effects. */
  d?: number;
  /** Length of the padding string in this node's input. */
  pad?: number;
}

export interface WorkloadSpec {
  name: string;
  seed: number;
  shape: 'tree' | 'dag' | 'fanout';
  keyed: boolean;
  combine: boolean;
  passDead: boolean;
  order: 'dfs' | 'bfs';
  maxAttempts: number;
  maxDepth: number;
  maxChildren: number;
  /** How long a `hang` node blocks the event loop on its first-ever attempt. */
  hangMs: number;
  root: string;
  nodes: Record<string, NodeSpec>;
}

export interface WorkloadOptions {
  shape: WorkloadSpec['shape'];
  /** Approximate number of nodes. */
  size: number;
  keyed?: boolean;
  combine?: boolean;
  passDead?: boolean;
  /** How many nodes of each poison kind. */
  poisons?: Partial<Record<Poison, number>>;
  /** Effects per node drawn from 0–3 (otherwise none). */
  effects?: boolean;
  /** Some nodes await a few ms (longer runs: heartbeats, more interleaving). */
  delays?: boolean;
  /** Some inputs carry heavy-tailed padding. */
  pads?: boolean;
  /** Some nodes return their children as an async iterable. */
  streams?: boolean;
  maxAttempts?: number;
  /** Trees only: cap the depth so some leaves go to the DLQ with DEPTH. */
  depthLimit?: boolean;
  hangMs?: number;
  /** Fan-out shape: children of the root, and the task's maxChildren (below it: the fan-out alarm). */
  fanout?: number;
  maxChildren?: number;
}

export function generateWorkload(rng: Rng, options: WorkloadOptions): WorkloadSpec {
  const nodes: Record<string, NodeSpec> = {};
  const keyed = options.shape === 'dag' ? true : (options.keyed ?? false);
  const node = (id: string): NodeSpec => {
    const spec: NodeSpec = { c: [], v: rng.int(1, 999), e: options.effects ? rng.weighted([[0, 4], [1, 3], [2, 2], [3, 1]]) : 0, m: rng.int(1, 3) };
    if (options.delays && rng.chance(0.3)) spec.d = rng.int(1, 4);
    if (options.pads && rng.chance(0.2)) spec.pad = rng.pareto(16, 1.1, 96 * 1024);
    if (options.streams && rng.chance(0.15)) spec.s = 1;
    nodes[id] = spec;
    return spec;
  };
  let maxDepth = 10_000;
  const depthOf = new Map<string, number>();
  const parentOf = new Map<string, string>();
  if (options.shape === 'fanout') {
    const root = node('n0');
    root.s = 1;
    for (let i = 1; i <= (options.fanout ?? 2500); i++) {
      root.c.push(`n${i}`);
      const leaf = node(`n${i}`);
      leaf.e = 0;
      leaf.s = undefined;
      leaf.m = 1;
    }
  } else if (options.shape === 'tree') {
    const depthCap = rng.int(3, 7);
    const lambda = Math.max(1.2, options.size ** (1 / depthCap) * 1.1);
    node('n0');
    depthOf.set('n0', 0);
    const queue = ['n0'];
    let count = 1;
    while (queue.length > 0 && count < options.size) {
      const id = queue.shift() as string;
      const depth = depthOf.get(id) as number;
      if (depth >= depthCap) continue;
      const k = id === 'n0' ? Math.max(2, rng.poisson(lambda)) : rng.poisson(lambda);
      for (let i = 0; i < k && count < options.size; i++) {
        const child = `n${count++}`;
        node(child);
        (nodes[id] as NodeSpec).c.push(child);
        depthOf.set(child, depth + 1);
        parentOf.set(child, id);
        queue.push(child);
      }
    }
    if (options.depthLimit) {
      const deepest = Math.max(...depthOf.values());
      if (deepest >= 2) maxDepth = deepest - 1;
    }
  } else {
    // A layered DAG: every edge goes from a lower to a higher index, so it has no cycle.
    const n = Math.max(3, options.size);
    for (let i = 0; i < n; i++) node(`k${i}`);
    for (let j = 1; j < n; j++) {
      const parent = rng.int(Math.max(0, j - 8), j - 1);
      (nodes[`k${parent}`] as NodeSpec).c.push(`k${j}`);
      if (!parentOf.has(`k${j}`)) parentOf.set(`k${j}`, `k${parent}`);
    }
    const shared = Math.floor(n * 0.3);
    for (let s = 0; s < shared; s++) {
      const i = rng.int(0, n - 2);
      const j = rng.int(i + 1, Math.min(n - 1, i + 12));
      const list = (nodes[`k${i}`] as NodeSpec).c;
      // Now and then the same key twice in one step's children (deduped by the store).
      if (!list.includes(`k${j}`) || rng.chance(0.1)) list.push(`k${j}`);
    }
  }
  const root = options.shape === 'dag' ? 'k0' : 'n0';
  const ids = Object.keys(nodes).filter((id) => id !== root);
  const taken = new Set<string>();
  for (const [kind, count] of Object.entries(options.poisons ?? {}) as [Poison, number][]) {
    for (let i = 0; i < count && taken.size < ids.length; i++) {
      let id = rng.pick(ids);
      for (let tries = 0; taken.has(id) && tries < 50; tries++) id = rng.pick(ids);
      if (taken.has(id)) continue;
      if (kind === 'cycle') {
        // A child that is one of the node's ancestors: only in a keyed tree, where the ancestry is fixed.
        if (!keyed || options.shape !== 'tree' || !options.combine) continue;
        const ancestors: string[] = [];
        for (let at = parentOf.get(id); at !== undefined; at = parentOf.get(at)) ancestors.push(at);
        if (ancestors.length === 0) continue;
        (nodes[id] as NodeSpec).c.push(rng.pick(ancestors));
      }
      taken.add(id);
      (nodes[id] as NodeSpec).p = kind;
    }
  }
  return {
    name: 'torture',
    seed: rng.seed,
    shape: options.shape,
    keyed,
    combine: options.combine ?? false,
    passDead: options.passDead ?? false,
    order: rng.chance(0.5) ? 'dfs' : 'bfs',
    maxAttempts: options.maxAttempts ?? 3,
    maxDepth,
    maxChildren: options.maxChildren ?? 100_000,
    hangMs: options.hangMs ?? 0,
    root,
    nodes,
  };
}

export function rootInput(spec: WorkloadSpec): { id: string; pad?: string } {
  const pad = spec.nodes[spec.root]?.pad;
  return pad ? { id: spec.root, pad: 'x'.repeat(pad) } : { id: spec.root };
}

const TASK_LIB = pathToFileURL(join(import.meta.dirname, 'task-lib.mjs')).href;

/** Writes the workload's task module (and its spec, for people) into `dir`; returns the module's path. */
export function writeTaskModule(dir: string, spec: WorkloadSpec, sinkPath: string): string {
  const path = join(dir, 'task.mjs');
  writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
  writeFileSync(path, `import { makeTask } from ${JSON.stringify(TASK_LIB)};\nexport default makeTask(${JSON.stringify(spec)}, ${JSON.stringify(sinkPath)});\n`);
  return path;
}

/** The number of nodes the workload declares (the run may create fewer or more: dead children, duplicates). */
export function workloadSize(spec: WorkloadSpec): number {
  return Object.keys(spec.nodes).length;
}
