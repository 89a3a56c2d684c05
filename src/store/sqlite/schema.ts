/**
 * The SQLite schema as an ordered list of migrations. The store file records the highest applied version in
 * `rlm_migrations`; a newer rlm applies the rest on open, and an older rlm refuses a file it does not know.
 */
export const MIGRATIONS: readonly { version: number; sql: string }[] = [
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
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
