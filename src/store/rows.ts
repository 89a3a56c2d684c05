/**
 * Rows of either store's schema as the Store interface's records. The schemas name their columns alike; a store
 * says how its payload and error columns read (`Columns`), and flags read as SQLite's 1 or PostgreSQL's true.
 */
import type { ErrorEntry, LeasedNode, NodeRecord, NodeState, Payload, RunRecord, RunState, StateCounts, WorkerRecord } from './store.js';

export type Row = Record<string, unknown>;

/** How a store's payload and error columns read. */
export interface Columns {
  payload(value: unknown): Payload | null;
  errors(value: unknown): ErrorEntry[];
}

/** The columns a lease needs: what `leasedFromRow` reads. */
export const LEASED_COLUMNS =
  'id, run_id, parent_id, key, depth, priority, version, input, context, phase, attempts, epoch, suspect, fanout_ok, spawned, traceparent';

const flag = (value: unknown): boolean => value === true || value === 1;

export function emptyCounts(): StateCounts {
  return { pending: 0, running: 0, waiting: 0, done: 0, dead: 0, parked: 0 };
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

export function leasedFromRow(row: Row, columns: Columns): LeasedNode {
  return {
    id: row.id as number,
    runId: row.run_id as string,
    parentId: (row.parent_id as number | null) ?? null,
    key: row.key as string,
    depth: row.depth as number,
    priority: row.priority as number,
    version: row.version as number,
    input: columns.payload(row.input) ?? 'null',
    context: columns.payload(row.context),
    phase: row.phase as LeasedNode['phase'],
    attempts: row.attempts as number,
    epoch: row.epoch as number,
    suspect: flag(row.suspect),
    fanoutApproved: flag(row.fanout_ok),
    spawned: row.spawned as number,
    traceparent: (row.traceparent as string | null) ?? null,
  };
}

export function nodeFromRow(row: Row, columns: Columns): NodeRecord {
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
    input: columns.payload(row.input),
    context: columns.payload(row.context),
    result: columns.payload(row.result),
    attempts: row.attempts as number,
    epoch: row.epoch as number,
    owner: (row.owner as string | null) ?? null,
    pendingChildren: row.pending_children as number,
    availableAt: row.available_at as number,
    parkReason: (row.park_reason as string | null) ?? null,
    errors: columns.errors(row.errors),
    traceparent: (row.traceparent as string | null) ?? null,
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
  };
}

export function runFromRow(row: Row, columns: Columns): RunRecord {
  return {
    id: row.id as string,
    task: row.task as string,
    taskVersion: row.task_version as number,
    state: row.state as RunState,
    input: columns.payload(row.input) ?? 'null',
    result: columns.payload(row.result),
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
