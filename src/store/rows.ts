/**
 * Rows of either store's schema as the Store interface's records. The schemas name their columns alike; a store
 * says how its payload and error columns read (`Columns`), and flags read as SQLite's 1 or PostgreSQL's true.
 */
import type { Place } from './checksum.js';
import type { ErrorEntry, LeasedNode, NodeRecord, NodeState, Payload, RunRecord, RunState, StateCounts, WorkerRecord } from './store.js';
import { RefusedError } from '../engine/errors.js';

export type Row = Record<string, unknown>;

/** How a store's payload and error columns read: each value checked against its checksum (see checksum.ts). */
export interface Columns {
  payload(value: unknown, place: Place): Payload | null;
  errors(value: unknown, place: Place): ErrorEntry[];
}

const at = (table: string, column: string, row: Row): Place => ({ table, column, row });

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
    input: columns.payload(row.input, at('rlm_nodes', 'input', row)) ?? 'null',
    context: columns.payload(row.context, at('rlm_nodes', 'context', row)),
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
    input: columns.payload(row.input, at('rlm_nodes', 'input', row)),
    context: columns.payload(row.context, at('rlm_nodes', 'context', row)),
    result: columns.payload(row.result, at('rlm_nodes', 'result', row)),
    attempts: row.attempts as number,
    epoch: row.epoch as number,
    owner: (row.owner as string | null) ?? null,
    pendingChildren: row.pending_children as number,
    availableAt: row.available_at as number,
    parkReason: (row.park_reason as string | null) ?? null,
    errors: columns.errors(row.errors, at('rlm_nodes', 'errors', row)),
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
    input: columns.payload(row.input, at('rlm_runs', 'input', row)) ?? 'null',
    result: columns.payload(row.result, at('rlm_runs', 'result', row)),
    order: row.frontier_order as RunRecord['order'],
    nodeBudget: (row.node_budget as number | null) ?? null,
    nodeCount: row.node_count as number,
    costBudget: row.cost_budget === null || row.cost_budget === undefined ? null : Number(row.cost_budget),
    costSpent: Number(row.cost_spent ?? 0),
    pauseReason: (row.pause_reason as string | null) ?? null,
    rootId: row.root_id as number,
    counts: countsFromRow(row),
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    finishedAt: (row.finished_at as number | null) ?? null,
    estimate: row.estimate === null || row.estimate === undefined ? null : Number(row.estimate),
    lastWorker: typeof row.last_worker === 'string' ? { id: row.last_worker, at: Number(row.last_worker_at) } : null,
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

/** Why a dead node cannot be dropped under deadChildren 'wait'. */
export function dropRefused(runId: string, nodeId: number, parentId: number): RefusedError {
  return new RefusedError(
    `Node ${nodeId} of run ${runId} cannot be dropped: its parent ${parentId} waits for it, and the task's deadChildren is 'wait', so the parent's combine would never run. ` +
      `Redrive it (\`rlm dlq retry ${runId} ${nodeId}\`), cancel the parent's subtree, or give the task deadChildren: 'pass' so combine gets a ChildFailure for it.`,
  );
}
