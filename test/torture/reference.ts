/**
 * The reference interpreter: the model every fault history must reproduce. It reads a workload spec and the
 * task semantics of SPEC.md — validation at spawn, keys and shared children, combine after every child, cycle
 * detection, maxDepth, retries to the DLQ, journaled effects with stable idempotency keys — and computes, single
 * threaded and in memory, the exact final state: every node's key and state, the root result, the DLQ with its
 * reasons, the multiset of emitted records and the set of effects the sink must have applied once each.
 *
 * It is written apart from src/engine on purpose and shares no code with it: where the two disagree, the torture
 * episode fails and one of them is wrong.
 */
import type { Poison, WorkloadSpec } from './workload.js';

const MODULUS = 1_000_003;
const FAILED_CHILD = 1000;

export interface ExpectedNode {
  key: string;
  /** The spec id, or null for a child whose input is invalid. */
  id: string | null;
  state: 'done' | 'dead' | 'waiting';
  /** Acceptable codes of the last error of a dead node. */
  codes?: string[];
  /** Attempts of a dead node: 0 (never run), maxAttempts, or at least one. */
  attempts?: 'zero' | 'max' | 'some';
  result?: number;
  poison?: Poison;
}

export interface ExpectedEffect {
  node: string;
  name: string;
  /** The deterministic part of the sink's value. */
  h: number;
}

export interface Expected {
  runId: string;
  nodes: Map<string, ExpectedNode>;
  runState: 'completed' | 'failed';
  rootResult: number | null;
  /** Emitted records as JSON text, sorted. */
  emits: string[];
  /** Idempotency key → the effect the sink must have applied exactly once. */
  effects: Map<string, ExpectedEffect>;
  /** Effects that may or may not have been applied (a node dead-lettered part-way by crash blame). */
  optionalEffects: Set<string>;
  dead: number;
  /** Nodes that run their handler (every created node but those dead at spawn). */
  executed: number;
}

/** FNV-1a, 32 bits (task-lib.mjs has its own copy: the reference shares no code with the workers). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The idempotency key SPEC.md promises an effect: stable over (run, node key, effect name). */
export function idempotencyKey(runId: string, nodeKey: string, name: string): string {
  return `${runId}:${nodeKey}:${name}`;
}

/**
 * `blamed`: spec ids of nodes the run dead-lettered for crashes it did not cause (a healthy node running alone
 * while the harness killed its process, maxAttempts times). Their parents saw them dead, as a crash poison.
 */
export function reference(spec: WorkloadSpec, runId: string, overrides: { blamed?: ReadonlySet<string> } = {}): Expected {
  const nodes = new Map<string, ExpectedNode>();
  const emits: string[] = [];
  const effects = new Map<string, ExpectedEffect>();
  const optionalEffects = new Set<string>();
  const onPath = new Set<string>();
  let executed = 0;

  const deadAtSpawn = (key: string, id: string | null, code: string): void => {
    nodes.set(key, { key, id, state: 'dead', codes: [code], attempts: 'zero' });
  };

  const visit = (key: string, id: string, depth: number): void => {
    const n = spec.nodes[id];
    if (!n) throw new Error(`workload ${spec.seed}: no node ${id}`);
    const entry: ExpectedNode = { key, id, state: 'done', poison: n.p };
    nodes.set(key, entry);
    executed++;
    if (n.p === 'crash') {
      Object.assign(entry, { state: 'dead', codes: ['CRASHED'], attempts: 'max' });
      return;
    }
    if (overrides.blamed?.has(id)) {
      for (let i = 0; i < n.e; i++) optionalEffects.add(idempotencyKey(runId, key, `e${i}`));
      Object.assign(entry, { state: 'dead', codes: ['CRASHED'], attempts: 'max' });
      return;
    }
    let acc = n.v;
    for (let i = 0; i < n.e; i++) {
      const idem = idempotencyKey(runId, key, `e${i}`);
      const h = fnv1a(idem) % 1000;
      effects.set(idem, { node: id, name: `e${i}`, h });
      acc += h;
    }
    // A step that fails has its records discarded; a retry emits them again.
    if (n.p === 'throw') return void Object.assign(entry, { state: 'dead', codes: ['POISON', 'CRASHED'], attempts: 'max' });
    if (n.p === 'nonretry') return void Object.assign(entry, { state: 'dead', codes: ['NON_RETRYABLE', 'CRASHED'], attempts: 'some' });
    if (n.p === 'nonserial') return void Object.assign(entry, { state: 'dead', codes: ['NOT_SERIALIZABLE', 'CRASHED'], attempts: 'some' });
    for (let i = 0; i < n.m; i++) emits.push(JSON.stringify({ k: id, i }));
    const runResult = acc % MODULUS;
    const childIds: (string | null)[] = [...n.c];
    if (n.p === 'invalidChild') childIds.push(null);
    if (childIds.length === 0) {
      entry.result = runResult;
      return;
    }
    onPath.add(key);
    const childKeys: string[] = [];
    let cycle = false;
    childIds.forEach((childId, ord) => {
      if (childId === null) {
        const childKey = `${key}/${ord}`;
        deadAtSpawn(childKey, null, 'INVALID_INPUT');
        childKeys.push(childKey);
        return;
      }
      const childKey = spec.keyed ? childId : `${key}/${ord}`;
      // A key listed twice by one parent is one child of it.
      if (spec.keyed && childKeys.includes(childKey)) return;
      if (spec.keyed && nodes.has(childKey)) {
        // A key that exists already: shared, unless it is an ancestor still waiting (a cycle).
        if (spec.combine && onPath.has(childKey)) {
          cycle = true;
          return;
        }
        childKeys.push(childKey);
        return;
      }
      if (depth + 1 > spec.maxDepth) {
        deadAtSpawn(childKey, childId, 'DEPTH');
        childKeys.push(childKey);
        return;
      }
      visit(childKey, childId, depth + 1);
      childKeys.push(childKey);
    });
    onPath.delete(key);
    if (cycle) {
      Object.assign(entry, { state: 'dead', codes: ['CYCLE'], attempts: 'some' });
      return;
    }
    if (!spec.combine) {
      entry.result = runResult;
      return;
    }
    let combined = n.v;
    for (const childKey of childKeys) {
      const child = nodes.get(childKey) as ExpectedNode;
      if (child.state === 'done') combined += child.result as number;
      else if (child.state === 'dead' && spec.passDead) combined += FAILED_CHILD;
      else {
        entry.state = 'waiting';
        return;
      }
    }
    entry.result = combined % MODULUS;
  };

  const rootKey = spec.keyed ? spec.root : 'root';
  visit(rootKey, spec.root, 0);
  const root = nodes.get(rootKey) as ExpectedNode;
  let dead = 0;
  for (const node of nodes.values()) if (node.state === 'dead') dead++;
  return {
    runId,
    nodes,
    runState: root.state === 'done' ? 'completed' : 'failed',
    rootResult: root.state === 'done' ? (root.result as number) : null,
    emits: emits.sort(),
    effects,
    optionalEffects,
    dead,
    executed,
  };
}
