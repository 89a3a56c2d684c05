import { seal, sealError } from '../checksum.js';
import { CONSTRAINTS, sqliteChecks } from '../constraints.js';
import type { ErrorEntry } from '../store.js';
import type { SqliteDatabase } from './sqlite-store.js';

/**
 * The SQLite schema as an ordered list of migrations. The store file records the highest applied version in
 * `rlm_migrations`; a newer rlm applies the rest on open, and an older rlm refuses a file it does not know.
 */
export interface SqliteMigration {
  version: number;
  sql: string;
  /**
   * A step in JavaScript after `sql`, in the same transaction: `seal` registers `rlm_seal` and `rlm_seal_errors`
   * for the SQL, which puts every stored value under its checksum; `checks` rebuilds each table with its CHECK
   * constraints (see constraints.ts).
   */
  data?: 'seal' | 'checks';
}

export const MIGRATIONS: readonly SqliteMigration[] = [
  {
    version: 1,
    sql: `
CREATE TABLE rlm_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO rlm_meta (key, value) VALUES ('commit_seq', 0), ('next_node_id', 1);

CREATE TABLE rlm_runs (
  id TEXT PRIMARY KEY,
  task TEXT NOT NULL,
  task_version INTEGER NOT NULL,
  state TEXT NOT NULL,
  input TEXT NOT NULL,
  context TEXT,
  result TEXT,
  frontier_order TEXT NOT NULL,
  node_budget INTEGER,
  node_count INTEGER NOT NULL DEFAULT 0,
  pause_reason TEXT,
  root_id INTEGER NOT NULL,
  n_pending INTEGER NOT NULL DEFAULT 0,
  n_running INTEGER NOT NULL DEFAULT 0,
  n_waiting INTEGER NOT NULL DEFAULT 0,
  n_done INTEGER NOT NULL DEFAULT 0,
  n_dead INTEGER NOT NULL DEFAULT 0,
  n_parked INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE INDEX rlm_runs_task ON rlm_runs (task, state);

CREATE TABLE rlm_nodes (
  id INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL,
  parent_id INTEGER,
  ord INTEGER NOT NULL DEFAULT 0,
  key TEXT NOT NULL,
  keyed INTEGER NOT NULL DEFAULT 0,
  depth INTEGER NOT NULL,
  priority REAL NOT NULL DEFAULT 0,
  order_key INTEGER NOT NULL,
  version INTEGER NOT NULL,
  state TEXT NOT NULL,
  phase TEXT NOT NULL DEFAULT 'run',
  input TEXT,
  context TEXT,
  result TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  epoch INTEGER NOT NULL DEFAULT 0,
  owner TEXT,
  suspect INTEGER NOT NULL DEFAULT 0,
  fanout_ok INTEGER NOT NULL DEFAULT 0,
  pending_children INTEGER NOT NULL DEFAULT 0,
  spawned INTEGER NOT NULL DEFAULT 0,
  shared INTEGER NOT NULL DEFAULT 0,
  available_at INTEGER NOT NULL DEFAULT 0,
  park_reason TEXT,
  errors TEXT,
  dropped INTEGER NOT NULL DEFAULT 0,
  traceparent TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX rlm_nodes_key ON rlm_nodes (run_id, key) WHERE keyed = 1;
CREATE INDEX rlm_nodes_frontier ON rlm_nodes (run_id, priority DESC, order_key) WHERE state = 'pending';
CREATE INDEX rlm_nodes_owner ON rlm_nodes (owner) WHERE state = 'running';
CREATE INDEX rlm_nodes_parent ON rlm_nodes (parent_id, ord);
CREATE INDEX rlm_nodes_held ON rlm_nodes (run_id, state) WHERE state IN ('dead', 'parked');

CREATE TABLE rlm_edges (
  parent_id INTEGER NOT NULL,
  child_id INTEGER NOT NULL,
  ord INTEGER NOT NULL,
  PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;
CREATE INDEX rlm_edges_child ON rlm_edges (child_id);

CREATE TABLE rlm_emits (
  seq INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL,
  node_id INTEGER NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX rlm_emits_run ON rlm_emits (run_id, seq);

CREATE TABLE rlm_effects (
  run_id TEXT NOT NULL,
  node_key TEXT NOT NULL,
  name TEXT NOT NULL,
  node_id INTEGER NOT NULL,
  value TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (run_id, node_key, name)
) WITHOUT ROWID;

CREATE TABLE rlm_workers (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  pid_start TEXT NOT NULL,
  task TEXT NOT NULL,
  version INTEGER NOT NULL,
  state TEXT NOT NULL,
  lease_until INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL,
  started_at INTEGER NOT NULL
);
`,
  },
  {
    // The task code that last worked on a run: its version and a hash of its functions (a code change that kept
    // its version is warned about).
    version: 2,
    sql: `
ALTER TABLE rlm_runs ADD COLUMN code_version INTEGER;
ALTER TABLE rlm_runs ADD COLUMN code_hash TEXT;
`,
  },
  {
    // The task's deadChildren policy, for dead-letterings outside a commit (reject, cancel).
    version: 3,
    sql: `
ALTER TABLE rlm_runs ADD COLUMN pass_dead INTEGER NOT NULL DEFAULT 0;
`,
  },
  {
    // Every stored value under its checksum (see store/checksum.ts): values written before are sealed here.
    version: 4,
    sql: `
UPDATE rlm_runs SET input = rlm_seal(input), context = rlm_seal(context), result = rlm_seal(result);
UPDATE rlm_nodes SET input = rlm_seal(input), context = rlm_seal(context), result = rlm_seal(result), errors = rlm_seal_errors(errors);
UPDATE rlm_emits SET record = rlm_seal(record);
UPDATE rlm_effects SET value = rlm_seal(value);
`,
    data: 'seal',
  },
  {
    // CHECK constraints on every column whose values rlm defines. SQLite cannot add a constraint to a table, so
    // each table is rebuilt with them (create, copy, drop, rename, indexes again); copying checks every row.
    version: 5,
    sql: '',
    data: 'checks',
  },
  {
    // The node a worker runs alone (a suspect) and its epoch: a worker whose lease expires while running it
    // charges it an attempt, whichever host takes the lease back.
    version: 6,
    sql: `
ALTER TABLE rlm_workers ADD COLUMN alone_id INTEGER;
ALTER TABLE rlm_workers ADD COLUMN alone_epoch INTEGER;
`,
  },
  {
    // What progress readers without the task need: its estimate of the run's size, and the worker that last joined.
    version: 7,
    sql: `
ALTER TABLE rlm_runs ADD COLUMN estimate INTEGER;
ALTER TABLE rlm_runs ADD COLUMN last_worker TEXT;
ALTER TABLE rlm_runs ADD COLUMN last_worker_at INTEGER;
`,
  },
  {
    // Groups with limits: each worker's lease on a group's step slots, and each group's token bucket.
    version: 8,
    sql: `
CREATE TABLE rlm_group_leases (
  run_id TEXT NOT NULL,
  grp TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  slots INTEGER NOT NULL CHECK (slots > 0),
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (run_id, grp, worker_id)
) WITHOUT ROWID;
CREATE INDEX rlm_group_leases_worker ON rlm_group_leases (worker_id);
CREATE TABLE rlm_group_buckets (
  run_id TEXT NOT NULL,
  grp TEXT NOT NULL,
  tokens REAL NOT NULL CHECK (tokens >= 0),
  refilled_at INTEGER NOT NULL,
  PRIMARY KEY (run_id, grp)
) WITHOUT ROWID;
`,
  },
  {
    // Cost budgets: what a run's steps may reserve, and what they were charged (each charge is journaled as an
    // effect of its node).
    version: 9,
    sql: `
ALTER TABLE rlm_runs ADD COLUMN cost_budget REAL CHECK (cost_budget IS NULL OR cost_budget >= 0);
ALTER TABLE rlm_runs ADD COLUMN cost_spent REAL NOT NULL DEFAULT 0;
`,
  },
  {
    // External signals: a run's named events, kept until its nodes that wait for them read them.
    version: 10,
    sql: `
CREATE TABLE rlm_signals (
  run_id TEXT NOT NULL,
  name TEXT NOT NULL,
  payload TEXT NOT NULL,
  sent_at INTEGER NOT NULL,
  PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
`,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/** Applies one migration to `db`, inside the caller's transaction. */
export function applyMigration(db: SqliteDatabase, migration: SqliteMigration): void {
  if (migration.data === 'seal') registerSeal(db);
  if (migration.sql.trim() !== '') db.exec(migration.sql);
  if (migration.data === 'checks') rebuildWithChecks(db);
}

/** The SQL functions of the migration that seals the values a store held before checksums. */
function registerSeal(db: SqliteDatabase): void {
  if (!db.function) throw new Error('This SQLite driver cannot register SQL functions, which the migration to checksummed values needs.');
  db.function('rlm_seal', { deterministic: true }, (value) => (typeof value === 'string' || value instanceof Uint8Array ? seal(value) : value));
  db.function('rlm_seal_errors', { deterministic: true }, (value) => {
    if (typeof value !== 'string') return value;
    let list: unknown;
    try {
      list = JSON.parse(value);
    } catch {
      // Unreadable already: left as it is, so that reading it says the store is damaged.
      return value;
    }
    if (!Array.isArray(list)) return value;
    return JSON.stringify(list.map((entry) => (entry !== null && typeof entry === 'object' ? sealError(entry as ErrorEntry) : entry)));
  });
}

/**
 * Rebuilds each of rlm's tables with its CHECK constraints appended to its definition as it stands (so columns
 * added by earlier migrations come along), its rows copied, its indexes created again.
 */
function rebuildWithChecks(db: SqliteDatabase): void {
  for (const table of new Set(CONSTRAINTS.map((c) => c.table))) {
    const row = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) as { sql: string } | undefined;
    if (!row) throw new Error(`The table ${table} is missing; the store's schema is damaged.`);
    const indexes = (db.prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL").all(table) as { sql: string }[]).map(
      (r) => r.sql,
    );
    const close = row.sql.lastIndexOf(')');
    const head = row.sql.replace(/^CREATE TABLE\s+"?\w+"?/, `CREATE TABLE ${table}_rebuilt`);
    const at = close - (row.sql.length - head.length);
    const rebuilt = `${head.slice(0, at).trimEnd()},\n  ${sqliteChecks(table).join(',\n  ')}\n${head.slice(at)}`;
    db.exec(rebuilt);
    db.exec(`INSERT INTO ${table}_rebuilt SELECT * FROM ${table}`);
    db.exec(`DROP TABLE ${table}`);
    db.exec(`ALTER TABLE ${table}_rebuilt RENAME TO ${table}`);
    for (const sql of indexes) db.exec(sql);
  }
}
