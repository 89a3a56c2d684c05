/**
 * The CHECK constraints of both schemas: every column whose values rlm defines (states, phases, flags, counters
 * that are never negative) refuses any other value. rlm never writes one, so a write that breaks a constraint
 * meets a row that was damaged outside rlm (or a bug in rlm), and fails as `STORE_CORRUPT` instead of spreading.
 *
 * SQLite is dynamically typed, and text or bytes compare greater than any number there: its counters are bounded
 * on both sides (`x BETWEEN 0 AND 2^53 - 1`), which refuses text and bytes as well, without a function call per
 * row (a `typeof()` per column cost the hot path a fifth of its speed). Payload columns need no constraint: their
 * checksum refuses anything rlm did not write.
 */

const RUN_STATES = ['running', 'paused', 'completed', 'failed', 'cancelled'];
const NODE_STATES = ['pending', 'running', 'waiting', 'done', 'dead', 'parked'];
const WORKER_STATES = ['alive', 'stopped', 'dead'];
const PHASES = ['run', 'combine'];
const ORDERS = ['dfs', 'bfs'];

const list = (values: readonly string[]) => values.map((v) => `'${v}'`).join(', ');

/** One constraint: its table, its name (`<table>_<what>`), and its condition on each store. */
export interface Constraint {
  table: 'rlm_runs' | 'rlm_nodes' | 'rlm_edges' | 'rlm_emits' | 'rlm_effects' | 'rlm_workers' | 'rlm_meta';
  name: string;
  sqlite: string;
  /** PostgreSQL's condition; absent where the column's type says it all (BOOLEAN flags). */
  postgres?: string;
}

const oneOf = (table: Constraint['table'], column: string, values: readonly string[]): Constraint => ({
  table,
  name: `${table}_${column}`,
  // On SQLite a list of equalities: `IN` with a list of strings built a lookup table per row and doubled the
  // cost of every insert and update.
  sqlite: `(${values.map((v) => `${column} = '${v}'`).join(' OR ')})`,
  postgres: `${column} IN (${list(values)})`,
});

const atLeast = (table: Constraint['table'], column: string, min: number): Constraint => ({
  table,
  name: `${table}_${column}`,
  // NULL passes a CHECK: nullable columns need no IS NULL.
  sqlite: `${column} BETWEEN ${min} AND ${Number.MAX_SAFE_INTEGER}`,
  postgres: `${column} >= ${min}`,
});

const flag = (table: Constraint['table'], column: string): Constraint => ({ table, name: `${table}_${column}`, sqlite: `(${column} = 0 OR ${column} = 1)` });

const integer = (table: Constraint['table'], column: string): Constraint => ({
  table,
  name: `${table}_${column}`,
  sqlite: `${column} BETWEEN ${-Number.MAX_SAFE_INTEGER} AND ${Number.MAX_SAFE_INTEGER}`,
});

export const CONSTRAINTS: readonly Constraint[] = [
  oneOf('rlm_runs', 'state', RUN_STATES),
  oneOf('rlm_runs', 'frontier_order', ORDERS),
  integer('rlm_runs', 'task_version'),
  atLeast('rlm_runs', 'node_budget', 0),
  atLeast('rlm_runs', 'node_count', 0),
  atLeast('rlm_runs', 'root_id', 1),
  ...['n_pending', 'n_running', 'n_waiting', 'n_done', 'n_dead', 'n_parked'].map((c) => atLeast('rlm_runs', c, 0)),
  flag('rlm_runs', 'pass_dead'),
  atLeast('rlm_nodes', 'parent_id', 1),
  atLeast('rlm_nodes', 'ord', 0),
  atLeast('rlm_nodes', 'depth', 0),
  integer('rlm_nodes', 'version'),
  integer('rlm_nodes', 'order_key'),
  oneOf('rlm_nodes', 'state', NODE_STATES),
  oneOf('rlm_nodes', 'phase', PHASES),
  atLeast('rlm_nodes', 'attempts', 0),
  atLeast('rlm_nodes', 'epoch', 0),
  atLeast('rlm_nodes', 'pending_children', 0),
  atLeast('rlm_nodes', 'spawned', 0),
  atLeast('rlm_nodes', 'available_at', 0),
  ...['keyed', 'suspect', 'fanout_ok', 'shared', 'dropped'].map((c) => flag('rlm_nodes', c)),
  atLeast('rlm_edges', 'parent_id', 1),
  atLeast('rlm_edges', 'child_id', 1),
  atLeast('rlm_edges', 'ord', 0),
  atLeast('rlm_emits', 'node_id', 1),
  atLeast('rlm_effects', 'node_id', 1),
  oneOf('rlm_workers', 'state', WORKER_STATES),
  atLeast('rlm_workers', 'pid', 0),
  atLeast('rlm_meta', 'value', 0),
];

/** The constraints of one table on SQLite, as table constraints to append to its CREATE TABLE. */
export function sqliteChecks(table: string): string[] {
  return CONSTRAINTS.filter((c) => c.table === table).map((c) => `CONSTRAINT ${c.name} CHECK (${c.sqlite})`);
}

/** PostgreSQL's ALTER TABLE statements that add every constraint (unqualified names: run under search_path). */
export function postgresChecksSql(): string {
  const byTable = new Map<string, string[]>();
  for (const c of CONSTRAINTS) {
    if (!c.postgres) continue;
    const clauses = byTable.get(c.table) ?? [];
    clauses.push(`ADD CONSTRAINT ${c.name} CHECK (${c.postgres})`);
    byTable.set(c.table, clauses);
  }
  return [...byTable].map(([table, clauses]) => `ALTER TABLE ${table} ${clauses.join(', ')};`).join('\n');
}
