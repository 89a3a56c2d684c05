/** Rows of the PostgreSQL schema as the Store interface's records. */
import type { ErrorEntry, LeasedNode, NodeRecord, NodeState, Payload, RunRecord, RunState, StateCounts, WorkerRecord } from '../store.js';
import type { Row } from './session.js';

/**
 * Payload columns are TEXT, which cannot hold a NUL byte: bytes are kept as `~` and their base64. JSON text,
 * the only other payload, never starts with `~`.
 */
const BYTES_MARK = '~';
const BYTES_MARK_CODE = 0x7e;

/** A payload as its TEXT column holds it. */
export function textOf(payload: Payload): string {
  return typeof payload === 'string' ? payload : BYTES_MARK + Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('base64');
}

export function textOfOptional(payload: Payload | null | undefined): string | null {
  return payload === null || payload === undefined ? null : textOf(payload);
}

/** A payload from its TEXT column: text as it is, or the bytes it marks. */
export function payloadOf(text: unknown): Payload | null {
  if (typeof text !== 'string') return null;
  return text.charCodeAt(0) === BYTES_MARK_CODE ? Buffer.from(text.slice(1), 'base64') : text;
}

/** A leased node with its payloads as text, for the commit marker (JSON). */
export function leasedAsText(node: LeasedNode): LeasedNode {
  return typeof node.input === 'string' && (node.context === null || typeof node.context === 'string')
    ? node
    : { ...node, input: textOf(node.input), context: textOfOptional(node.context) };
}

/** A leased node read back from the commit marker. */
export function leasedFromText(node: LeasedNode): LeasedNode {
  return { ...node, input: payloadOf(node.input) ?? 'null', context: payloadOf(node.context) };
}

export const LEASED_COLUMNS =
  'id, run_id, parent_id, key, depth, priority, version, input, context, phase, attempts, epoch, suspect, fanout_ok, spawned, traceparent';

export function emptyCounts(): StateCounts {
  return { pending: 0, running: 0, waiting: 0, done: 0, dead: 0, parked: 0 };
}

export function leasedFromRow(row: Row): LeasedNode {
  return {
    id: row.id as number,
    runId: row.run_id as string,
    parentId: (row.parent_id as number | null) ?? null,
    key: row.key as string,
    depth: row.depth as number,
    priority: row.priority as number,
    version: row.version as number,
    input: payloadOf(row.input) ?? 'null',
    context: payloadOf(row.context),
    phase: row.phase as LeasedNode['phase'],
    attempts: row.attempts as number,
    epoch: row.epoch as number,
    suspect: row.suspect === true,
    fanoutApproved: row.fanout_ok === true,
    spawned: row.spawned as number,
    traceparent: (row.traceparent as string | null) ?? null,
  };
}

export function errorsOf(value: unknown): ErrorEntry[] {
  return Array.isArray(value) ? (value as ErrorEntry[]) : [];
}

export function nodeFromRow(row: Row): NodeRecord {
  return {
    id: row.id as number,
    runId: row.run_id as string,
    parentId: (row.parent_id as number | null) ?? null,
    ord: row.ord as number,
    key: row.key as string,
    depth: row.depth as number,
    priority: row.priority as number,
    version: row.version as number,
    state: row.state as NodeState,
    phase: row.phase as NodeRecord['phase'],
    input: payloadOf(row.input),
    context: payloadOf(row.context),
    result: payloadOf(row.result),
    attempts: row.attempts as number,
    epoch: row.epoch as number,
    owner: (row.owner as string | null) ?? null,
    pendingChildren: row.pending_children as number,
    availableAt: row.available_at as number,
    parkReason: (row.park_reason as string | null) ?? null,
    errors: errorsOf(row.errors),
    traceparent: (row.traceparent as string | null) ?? null,
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
  };
}

export function countsFromRow(row: Row): StateCounts {
  return {
    pending: row.n_pending as number,
    running: row.n_running as number,
    waiting: row.n_waiting as number,
    done: row.n_done as number,
    dead: row.n_dead as number,
    parked: row.n_parked as number,
  };
}

export function runFromRow(row: Row): RunRecord {
  return {
    id: row.id as string,
    task: row.task as string,
    taskVersion: row.task_version as number,
    state: row.state as RunState,
    input: payloadOf(row.input) ?? 'null',
    result: payloadOf(row.result),
    order: row.frontier_order as RunRecord['order'],
    nodeBudget: (row.node_budget as number | null) ?? null,
    nodeCount: row.node_count as number,
    pauseReason: (row.pause_reason as string | null) ?? null,
    rootId: row.root_id as number,
    counts: countsFromRow(row),
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    finishedAt: (row.finished_at as number | null) ?? null,
  };
}

export function workerFromRow(row: Row): WorkerRecord {
  return {
    id: row.id as string,
    host: row.host as string,
    pid: row.pid as number,
    pidStart: row.pid_start as string,
    task: row.task as string,
    version: row.version as number,
    state: row.state as WorkerRecord['state'],
    leaseUntil: row.lease_until as number,
    heartbeatAt: row.heartbeat_at as number,
  };
}

/**
 * An error entry PostgreSQL can hold: JSONB refuses the NUL character, which a thrown message may contain.
 * @internal
 */
export function storableError(entry: ErrorEntry): ErrorEntry {
  const clean = (text: string | null) => (text === null ? null : text.replace(/\u0000/g, '\uFFFD'));
  return { ...entry, message: clean(entry.message) ?? '', code: clean(entry.code), stack: clean(entry.stack), worker: clean(entry.worker) ?? '' };
}

/** The settle rule shared by commits and run operations: has the run ended, paused, or (after a redrive) reopened? */
export function settledState(input: {
  state: RunState;
  counts: StateCounts;
  rootState: NodeState | null;
  pauseReason: string | null;
  reopen: boolean;
}): { state: RunState; pauseReason: string | null } {
  const { state, counts } = input;
  if (state === 'cancelled') return { state, pauseReason: input.pauseReason };
  const active = counts.pending + counts.running;
  if (input.rootState === 'done' && active === 0 && counts.waiting === 0 && counts.parked === 0) return { state: 'completed', pauseReason: null };
  if (active === 0 && state !== 'paused') {
    if (counts.parked > 0) return { state: 'paused', pauseReason: input.pauseReason ?? 'parked nodes wait for `rlm approve` or `rlm reject`' };
    return { state: 'failed', pauseReason: null };
  }
  if (active > 0 && input.reopen && (state === 'failed' || state === 'completed')) return { state: 'running', pauseReason: null };
  return { state, pauseReason: state === 'paused' ? input.pauseReason : null };
}
