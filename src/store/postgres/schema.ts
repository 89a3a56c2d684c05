import { postgresChecksSql } from '../constraints.js';

/**
 * The PostgreSQL schema as an ordered list of migrations. `rlm_migrations` records the applied versions; a newer
 * rlm applies the rest under a transaction-scoped advisory lock, so workers that start at once take turns, and
 * an older rlm refuses a schema it does not know.
 *
 * The SQL names no schema: it runs with `SET LOCAL search_path` to the configured one. Timestamps are epoch
 * milliseconds (BIGINT) as in the SQLite store; worker leases are judged by the database clock.
 */
export interface PostgresMigration {
  version: number;
  sql: string;
  /** Rewrites stored values in JavaScript after `sql`, in the same transaction: `seal` puts each under its checksum. */
  data?: 'seal';
}

export const MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    sql: `
CREATE TABLE rlm_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO rlm_meta (key, value) VALUES ('next_node_id', 1);

CREATE TABLE rlm_runs (
  id TEXT PRIMARY KEY,
  task TEXT NOT NULL,
  task_version INTEGER NOT NULL,
  state TEXT NOT NULL,
  input TEXT NOT NULL,
  context TEXT,
  result TEXT,
  frontier_order TEXT NOT NULL,
  node_budget BIGINT,
  node_count BIGINT NOT NULL DEFAULT 0,
  pause_reason TEXT,
  root_id BIGINT NOT NULL,
  n_pending BIGINT NOT NULL DEFAULT 0,
  n_running BIGINT NOT NULL DEFAULT 0,
  n_waiting BIGINT NOT NULL DEFAULT 0,
  n_done BIGINT NOT NULL DEFAULT 0,
  n_dead BIGINT NOT NULL DEFAULT 0,
  n_parked BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  finished_at BIGINT
);
CREATE INDEX rlm_runs_task ON rlm_runs (task, state);

CREATE TABLE rlm_nodes (
  id BIGINT PRIMARY KEY,
  run_id TEXT NOT NULL,
  parent_id BIGINT,
  ord INTEGER NOT NULL DEFAULT 0,
  key TEXT NOT NULL,
  keyed BOOLEAN NOT NULL DEFAULT false,
  depth INTEGER NOT NULL,
  priority DOUBLE PRECISION NOT NULL DEFAULT 0,
  order_key BIGINT NOT NULL,
  version INTEGER NOT NULL,
  state TEXT NOT NULL,
  phase TEXT NOT NULL DEFAULT 'run',
  input TEXT,
  context TEXT,
  result TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  epoch INTEGER NOT NULL DEFAULT 0,
  owner TEXT,
  suspect BOOLEAN NOT NULL DEFAULT false,
  fanout_ok BOOLEAN NOT NULL DEFAULT false,
  pending_children INTEGER NOT NULL DEFAULT 0,
  spawned INTEGER NOT NULL DEFAULT 0,
  available_at BIGINT NOT NULL DEFAULT 0,
  park_reason TEXT,
  errors JSONB,
  dropped BOOLEAN NOT NULL DEFAULT false,
  traceparent TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
) WITH (fillfactor = 85);
CREATE UNIQUE INDEX rlm_nodes_key ON rlm_nodes (run_id, key) WHERE keyed;
CREATE INDEX rlm_nodes_frontier ON rlm_nodes (run_id, priority DESC, order_key) WHERE state = 'pending';
CREATE INDEX rlm_nodes_owner ON rlm_nodes (owner) WHERE state = 'running';
CREATE INDEX rlm_nodes_parent ON rlm_nodes (parent_id, ord);
CREATE INDEX rlm_nodes_held ON rlm_nodes (run_id, state) WHERE state IN ('dead', 'parked');

CREATE TABLE rlm_edges (
  parent_id BIGINT NOT NULL,
  child_id BIGINT NOT NULL,
  ord INTEGER NOT NULL,
  PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX rlm_edges_child ON rlm_edges (child_id);

CREATE TABLE rlm_emits (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id TEXT NOT NULL,
  node_id BIGINT NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX rlm_emits_run ON rlm_emits (run_id, seq);

CREATE TABLE rlm_effects (
  run_id TEXT NOT NULL,
  node_key TEXT NOT NULL,
  name TEXT NOT NULL,
  node_id BIGINT NOT NULL,
  value TEXT NOT NULL,
  at BIGINT NOT NULL,
  PRIMARY KEY (run_id, node_key, name)
);
CREATE INDEX rlm_effects_node ON rlm_effects (node_id);

CREATE TABLE rlm_workers (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  pid_start TEXT NOT NULL,
  task TEXT NOT NULL,
  version INTEGER NOT NULL,
  state TEXT NOT NULL,
  lease_until BIGINT NOT NULL,
  heartbeat_at BIGINT NOT NULL,
  started_at BIGINT NOT NULL
);

-- One row per commit, written in the commit's own transaction: when the connection drops during COMMIT, the
-- worker finds its marker (or not) and knows whether the commit happened. \`seq\` is the commit's sequence number.
CREATE TABLE rlm_commits (
  id UUID PRIMARY KEY,
  seq BIGINT GENERATED ALWAYS AS IDENTITY,
  result TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX rlm_commits_created ON rlm_commits (created_at);
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
ALTER TABLE rlm_runs ADD COLUMN pass_dead BOOLEAN NOT NULL DEFAULT false;
`,
  },
  {
    // Every stored value under its checksum (see store/checksum.ts): values written before are sealed by the store.
    version: 4,
    sql: '',
    data: 'seal',
  },
  {
    // CHECK constraints on every column whose values rlm defines (see constraints.ts); adding them checks every row.
    version: 5,
    sql: postgresChecksSql(),
  },
  {
    // The node a worker runs alone (a suspect) and its epoch: a worker whose lease expires while running it
    // charges it an attempt, whichever host takes the lease back.
    version: 6,
    sql: `
ALTER TABLE rlm_workers ADD COLUMN alone_id BIGINT;
ALTER TABLE rlm_workers ADD COLUMN alone_epoch INTEGER;
`,
  },
  {
    // What progress readers without the task need: its estimate of the run's size, and the worker that last joined.
    version: 7,
    sql: `
ALTER TABLE rlm_runs ADD COLUMN estimate BIGINT;
ALTER TABLE rlm_runs ADD COLUMN last_worker TEXT;
ALTER TABLE rlm_runs ADD COLUMN last_worker_at BIGINT;
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
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (run_id, grp, worker_id)
);
CREATE INDEX rlm_group_leases_worker ON rlm_group_leases (worker_id);
CREATE TABLE rlm_group_buckets (
  run_id TEXT NOT NULL,
  grp TEXT NOT NULL,
  tokens DOUBLE PRECISION NOT NULL CHECK (tokens >= 0),
  refilled_at BIGINT NOT NULL,
  PRIMARY KEY (run_id, grp)
);
`,
  },
  {
    // Cost budgets: what a run's steps may reserve, and what they were charged (each charge is journaled as an
    // effect of its node).
    version: 9,
    sql: `
ALTER TABLE rlm_runs ADD COLUMN cost_budget DOUBLE PRECISION CHECK (cost_budget IS NULL OR cost_budget >= 0);
ALTER TABLE rlm_runs ADD COLUMN cost_spent DOUBLE PRECISION NOT NULL DEFAULT 0;
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
  sent_at BIGINT NOT NULL,
  PRIMARY KEY (run_id, name)
);
`,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/** The qualified names of rlm's tables in one schema. */
export interface Tables {
  readonly schema: string;
  readonly meta: string;
  readonly runs: string;
  readonly nodes: string;
  readonly edges: string;
  readonly emits: string;
  readonly effects: string;
  readonly workers: string;
  readonly commits: string;
  readonly groupLeases: string;
  readonly groupBuckets: string;
  readonly signals: string;
  readonly migrations: string;
}

export function tablesIn(schema: string): Tables {
  const q = `"${schema.replace(/"/g, '""')}"`;
  return {
    schema: q,
    meta: `${q}.rlm_meta`,
    runs: `${q}.rlm_runs`,
    nodes: `${q}.rlm_nodes`,
    edges: `${q}.rlm_edges`,
    emits: `${q}.rlm_emits`,
    effects: `${q}.rlm_effects`,
    workers: `${q}.rlm_workers`,
    commits: `${q}.rlm_commits`,
    groupLeases: `${q}.rlm_group_leases`,
    groupBuckets: `${q}.rlm_group_buckets`,
    signals: `${q}.rlm_signals`,
    migrations: `${q}.rlm_migrations`,
  };
}
