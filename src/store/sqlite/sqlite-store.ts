import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import {
  ConfigError,
  NotFoundError,
  RunBusyError,
  StoreCorruptError,
  StoreIoError,
  StoreTooNewError,
  StoreUnavailableError,
} from '../../engine/errors.js';
import { failpoints } from '../../failpoints.js';
import { cycleError, findCycleClosers } from '../cycles.js';
import { type Bucket, grantGroup } from '../groups.js';
import { open, openErrors, seal, sealError, sealOptional } from '../checksum.js';
import * as shared from '../rows.js';
import type { DoctorReport } from '../audit.js';
import { type Columns, dropRefused, emptyCounts, LEASED_COLUMNS, type Row, workerFromRow } from '../rows.js';
import { COST_EFFECT_PREFIX, costEntry, costOf, decideCharge, payloadText, signalRefused, signalWaitReason } from '../charges.js';
import { isPersonPause, WORKER_RETENTION_MS } from '../store.js';
import type {
  ClaimFilter,
  CommitOp,
  CommitResult,
  EffectRecord,
  EmitRecord,
  CostCharge,
  ErrorEntry,
  GroupGrant,
  GroupRequest,
  LeasedNode,
  NewNode,
  NewRun,
  NodeRecord,
  NodeState,
  Payload,
  RunCode,
  RunFilter,
  RunRecord,
  RunState,
  StateCounts,
  StepOp,
  Store,
  StoreCapabilities,
  WorkerInfo,
  WorkerLeases,
  WorkerRecord,
} from '../store.js';
import { classify } from './classify.js';
import { doctorSqlite } from './doctor.js';
import { applyMigration, MIGRATIONS, SCHEMA_VERSION } from './schema.js';
import { verifyRunApart } from './verify.js';

/** The part of better-sqlite3's Statement that SqliteStore uses. */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  iterate(...params: unknown[]): IterableIterator<unknown>;
}

/** The part of better-sqlite3's Database that SqliteStore uses. */
export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement;
  exec(sql: string): unknown;
  pragma(sql: string, options?: { simple?: boolean }): unknown;
  transaction<F extends (...args: never[]) => unknown>(fn: F): F & { immediate: F };
  backup?(destination: string): Promise<unknown>;
  /** Registers a SQL function (the migration that seals stored values uses two). */
  function?(name: string, options: { deterministic?: boolean }, fn: (value: unknown) => unknown): unknown;
  close(): unknown;
  readonly inTransaction: boolean;
}

export interface SqliteStoreConfig {
  /** Path of the store file. */
  path: string;
  /** `FULL` (default): a committed group survives power loss. `NORMAL`: the last groups may roll back, never corrupt. */
  synchronous?: 'FULL' | 'NORMAL';
  /** How long a writer waits for another process's write lock, in milliseconds. @default 10_000 */
  busyTimeoutMs?: number;
  /** Refuse to create the file (status, results, inspect): a missing store is an error, not a new one. */
  mustExist?: boolean;
}

/** Payloads are TEXT (JSON) or BLOB (bytes), sealed with their checksum; errors are JSON text of sealed entries. */
const COLUMNS: Columns = { payload: open, errors: openErrors };

/** An error entry as the JSON text SQL appends to a node's errors. */
const errorJson = (entry: ErrorEntry): string => JSON.stringify(sealError(entry));

const leasedFromRow = (row: Row): LeasedNode => shared.leasedFromRow(row, COLUMNS);
const nodeFromRow = (row: Row): NodeRecord => shared.nodeFromRow(row, COLUMNS);
const runFromRow = (row: Row): RunRecord => shared.runFromRow(row, COLUMNS);

/**
 * The embedded store: one SQLite file in WAL mode. One process writes at a time (other processes wait on the
 * file lock), so a commit is one IMMEDIATE transaction of prepared statements, with no round trips.
 */
export class SqliteStore implements Store {
  readonly capabilities: StoreCapabilities = { concurrentWriters: false, notifications: false };
  readonly description: string;
  readonly path: string;
  #db: SqliteDatabase | undefined;
  readonly #config: SqliteStoreConfig;
  readonly #stmts = new Map<string, SqliteStatement>();
  readonly #runOrder = new Map<string, 'dfs' | 'bfs'>();
  #poisoned: unknown;

  constructor(config: SqliteStoreConfig) {
    this.#config = config;
    this.path = resolve(config.path);
    this.description = `sqlite:${this.path}`;
  }

  /** The open database; opens it on first use. */
  get db(): SqliteDatabase {
    if (this.#poisoned) throw this.#poisoned;
    if (!this.#db) this.#db = this.#open();
    return this.#db;
  }

  #open(): SqliteDatabase {
    const path = this.path;
    if (existsSync(path) && statSync(path).isDirectory()) {
      throw new ConfigError(`The store path ${path} is a directory; give a file path such as sqlite:${path}/rlm.db.`);
    }
    if (this.#config.mustExist && !existsSync(path)) {
      throw new NotFoundError(`No store at ${path}: nothing has run there yet (start one with \`rlm run\`).`);
    }
    makeFolder(dirname(path), path);
    // Loaded lazily so `rlm` on PostgreSQL never needs the native module.
    let Database: new (path: string, options?: Record<string, unknown>) => SqliteDatabase;
    try {
      Database = loadBetterSqlite3();
    } catch (error) {
      throw new StoreUnavailableError(`The SQLite driver (better-sqlite3) could not be loaded: ${(error as Error).message}`, { cause: error });
    }
    let db: SqliteDatabase;
    try {
      db = new Database(path, { fileMustExist: this.#config.mustExist === true });
    } catch (error) {
      throw this.#mapOpenError(error);
    }
    try {
      // Opening waits less for a lock than a write does: a file another program holds locked is reported
      // within seconds (migrate() sets the full timeout once the file is known to be usable).
      db.pragma(`busy_timeout = ${Math.min(this.#config.busyTimeoutMs ?? 10_000, OPEN_BUSY_MS)}`);
      // Switching to WAL rewrites the file's header: a database that is not rlm's is refused before that.
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as { name: string }[];
      if (tables.length > 0 && !tables.some((t) => t.name === 'rlm_runs' || t.name === 'rlm_migrations')) {
        throw new StoreCorruptError(`The file ${path} is a SQLite database that rlm did not create; refusing to write to it. Point --store at another file.`);
      }
      {
        const mode = String(db.pragma('journal_mode = WAL', { simple: true }));
        if (mode.toLowerCase() !== 'wal') throw new StoreIoError(`Could not put ${path} in WAL mode (got ${mode}).`);
      }
      db.pragma(`synchronous = ${this.#config.synchronous ?? 'FULL'}`);
      // 8 MiB of page cache: the hot path appends, and the file's pages stay in the OS cache anyway.
      db.pragma('cache_size = -8192');
      db.pragma('temp_store = MEMORY');
      // A quick read of the schema detects a file that is not SQLite before anything is written to it.
      db.prepare('SELECT count(*) FROM sqlite_master').get();
    } catch (error) {
      try {
        db.close();
      } catch {
        // Already failing; the first error is the one to report.
      }
      throw this.#mapOpenError(error);
    }
    return db;
  }

  #mapOpenError(error: unknown): unknown {
    if (error instanceof StoreCorruptError || error instanceof StoreIoError || error instanceof ConfigError) return error;
    const code = (error as { code?: unknown })?.code;
    if (code === 'SQLITE_CANTOPEN' || code === 'SQLITE_READONLY' || (typeof code === 'string' && (code.startsWith('SQLITE_CANTOPEN_') || code.startsWith('SQLITE_READONLY_')))) {
      return new ConfigError(
        `Cannot create or write the store ${this.path} (${code}: ${(error as Error).message}): this user may not write the file or its folder (SQLite also writes ${this.path}-wal and -shm beside it). ` +
          'Fix the permissions, or choose a writable path with --store sqlite:PATH (or RLM_STORE).',
        { cause: error },
      );
    }
    const mapped = classify(error, this.path);
    if (mapped !== error) return mapped;
    return new StoreUnavailableError(`Cannot open the store ${this.path}: ${(error as Error).message}`, { cause: error });
  }

  #stmt(sql: string): SqliteStatement {
    let stmt = this.#stmts.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.#stmts.set(sql, stmt);
    }
    return stmt;
  }

  /** Runs `fn` in one write transaction; a disk error poisons the connection (never reused after fsync failure). */
  #write<T>(fn: () => T): T {
    try {
      if (failpoints.active) failpoints.hit('store.call');
      return this.db.transaction(fn).immediate();
    } catch (error) {
      throw this.#fail(error);
    }
  }

  #read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw this.#fail(error);
    }
  }

  #fail(error: unknown): unknown {
    const mapped = classify(error, this.path);
    if (mapped instanceof StoreIoError || mapped instanceof StoreCorruptError) {
      this.#poisoned = mapped;
      try {
        this.#db?.close();
      } catch {
        // The connection is being abandoned; closing is best effort.
      }
      this.#db = undefined;
      this.#stmts.clear();
      this.#insertRows.all.length = 0;
      this.#insertRows.plain.length = 0;
    }
    return mapped;
  }

  async migrate(): Promise<void> {
    // A file rlm did not create is refused before anything is written to it.
    const foreign = this.#read(
      () =>
        this.db
          .prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'rlm_%' AND name NOT LIKE 'sqlite_%'")
          .get() as { n: number },
    );
    const known = this.#read(() => this.db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'rlm_runs'").get() as { n: number });
    if (foreign.n > 0 && known.n === 0) {
      throw new StoreCorruptError(`The file ${this.path} is a SQLite database that rlm did not create; refusing to write to it. Point --store at another file.`);
    }
    try {
      this.db.exec('CREATE TABLE IF NOT EXISTS rlm_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    } catch (error) {
      throw this.#fail(error);
    }
    this.#read(() => this.db.pragma(`busy_timeout = ${this.#config.busyTimeoutMs ?? 10_000}`));
    try {
      this.#checkVersion();
      for (const migration of MIGRATIONS) {
        this.#write(() => {
          const applied = this.db.prepare('SELECT 1 FROM rlm_migrations WHERE version = ?').get(migration.version);
          if (applied) return;
          this.db.prepare('INSERT INTO rlm_migrations (version, applied_at) VALUES (?, ?)').run(migration.version, Date.now());
          applyMigration(this.db, migration);
        });
      }
    } catch (error) {
      // SQL of rlm's own that fails on a file holding rlm's tables (a migration history that lost a row, a
      // renamed column): the file was damaged. Each failed migration rolled back.
      if (known.n === 0 || (error as { code?: unknown })?.code !== 'SQLITE_ERROR') throw error;
      throw new StoreCorruptError(
        `The store ${this.path} is damaged: its migration history does not match its tables (${(error as Error).message}). ` +
          'rlm will not run on it: restore it from an `rlm snapshot` copy, or move it aside to start afresh.',
      );
    }
    this.#checkSchema();
  }

  /**
   * rlm's tables and indexes must be exactly those its migrations create: a damaged schema (a flipped byte in a
   * column name) would otherwise surface later as a driver error in the middle of a commit.
   */
  #checkSchema(): void {
    const list = (db: SqliteDatabase) =>
      (db.prepare("SELECT type, name, sql FROM sqlite_master WHERE name LIKE 'rlm\\_%' ESCAPE '\\' ORDER BY name").all() as Row[]).map(
        (row) => `${row.type} ${row.name}: ${String(row.sql ?? '').replace(/\s+/g, ' ')}`,
      );
    const actual = this.#read(() => list(this.db));
    expectedSchema ??= (() => {
      const Database = loadBetterSqlite3();
      const memory = new Database(':memory:');
      try {
        memory.exec('CREATE TABLE IF NOT EXISTS rlm_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
        for (const migration of MIGRATIONS) applyMigration(memory, migration);
        return list(memory);
      } finally {
        memory.close();
      }
    })();
    const differs = expectedSchema.filter((line) => !actual.includes(line)).concat(actual.filter((line) => !expectedSchema?.includes(line)));
    if (differs.length > 0) {
      throw new StoreCorruptError(
        `The schema of the store ${this.path} is damaged (${differs.length} table or index definitions differ from rlm's, e.g. ${differs[0]?.slice(0, 120)}). ` +
          'rlm will not run on it: restore it from an `rlm snapshot` copy, or move it aside to start afresh.',
      );
    }
  }

  #checkVersion(): void {
    const row = this.#read(() => {
      const exists = this.db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'rlm_migrations'").get();
      return exists ? (this.db.prepare('SELECT max(version) AS v FROM rlm_migrations').get() as { v: number | null }) : { v: null };
    });
    if (row.v !== null && row.v > SCHEMA_VERSION) {
      throw new StoreTooNewError(
        `The store ${this.path} has schema version ${row.v}, written by a newer rlm; this rlm knows up to ${SCHEMA_VERSION}. Upgrade rlm to use it.`,
      );
    }
  }

  async close(): Promise<void> {
    this.#stmts.clear();
    this.#insertRows.all.length = 0;
    this.#insertRows.plain.length = 0;
    const db = this.#db;
    this.#db = undefined;
    if (db) {
      try {
        db.pragma('wal_checkpoint(PASSIVE)');
      } catch {
        // A checkpoint is an optimisation; the WAL is replayed on next open.
      }
      db.close();
    }
  }

  /** Runs a passive WAL checkpoint so the WAL does not grow without bound under a long run. */
  checkpoint(): { busy: number; log: number; checkpointed: number } {
    if (failpoints.active) failpoints.hit('wal.beforeCheckpoint');
    const row = this.#read(() => (this.db.pragma('wal_checkpoint(PASSIVE)') as Row[])[0] ?? {});
    if (failpoints.active) failpoints.hit('wal.afterCheckpoint');
    return { busy: Number(row.busy ?? 0), log: Number(row.log ?? 0), checkpointed: Number(row.checkpointed ?? 0) };
  }

  /** Writes a consistent copy of the whole store while it is in use (SQLite's online backup). */
  async snapshot(destination: string): Promise<void> {
    if (failpoints.active) failpoints.hit('snapshot.begin');
    const target = resolve(destination);
    if (existsSync(target)) throw new ConfigError(`The snapshot file ${target} exists already; choose a new path.`);
    try {
      this.db.prepare('VACUUM INTO ?').run(target);
    } catch (error) {
      throw this.#fail(error);
    }
    if (failpoints.active) failpoints.hit('snapshot.end');
  }

  /** Before a run resumes, beside the run: see verify.ts. */
  async verifyRun(runId: string): Promise<void> {
    if (this.#poisoned) throw this.#poisoned;
    await verifyRunApart(this.path, this.description, runId);
  }

  /** Checks the whole store (`rlm doctor`): the file, every constraint, checksum and counter. */
  async doctor(): Promise<DoctorReport> {
    return this.#read(() => this.db.transaction(() => doctorSqlite(this.db))());
  }

  /** Runs SQLite's own consistency check. */
  integrityCheck(): string[] {
    return this.#read(() => (this.db.prepare('PRAGMA integrity_check').all() as Row[]).map((row) => String(Object.values(row)[0])));
  }

  async allocateIds(count: number): Promise<number> {
    return this.#write(() => this.#allocate(count));
  }

  #allocate(count: number): number {
    return this.bumpMeta('next_node_id', count) - count;
  }

  /** @internal Adds `delta` to one of the store's counters and returns the new value. */
  bumpMeta(key: 'next_node_id' | 'commit_seq', delta: number): number {
    const row = this.#stmt('UPDATE rlm_meta SET value = value + ? WHERE key = ? RETURNING value').get(delta, key) as { value: unknown } | undefined;
    // Both rows are written when the store is created and never deleted: without them the file was damaged.
    if (typeof row?.value !== 'number' || !Number.isSafeInteger(row.value)) {
      throw new StoreCorruptError(`The store ${this.path} is damaged: its ${key} counter is missing or unreadable. Restore it from an \`rlm snapshot\` copy.`);
    }
    return row.value;
  }

  async createRun(run: NewRun): Promise<RunRecord> {
    const now = Date.now();
    const input = seal(run.input);
    const context = sealOptional(run.context);
    this.#write(() => {
      if (this.#stmt('SELECT 1 FROM rlm_runs WHERE id = ?').get(run.id)) {
        throw new ConfigError(`A run with id ${run.id} exists already; resume it with --run ${run.id}, or choose another id.`);
      }
      const rootId = this.#allocate(1);
      this.#stmt(
        `INSERT INTO rlm_nodes (id, run_id, parent_id, ord, key, keyed, depth, priority, order_key, version, state, input, context, traceparent, created_at, updated_at)
         VALUES (?, ?, NULL, 0, ?, ?, 0, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)`,
      ).run(rootId, run.id, run.rootKey, run.rootKeyed ? 1 : 0, run.rootPriority, run.order === 'dfs' ? -rootId : rootId, run.taskVersion, input, context, run.traceparent, now, now);
      this.#stmt(
        `INSERT INTO rlm_runs (id, task, task_version, state, input, context, frontier_order, node_budget, node_count, root_id, n_pending, created_at, updated_at, pass_dead, estimate, cost_budget)
         VALUES (?, ?, ?, 'running', ?, ?, ?, ?, 1, ?, 1, ?, ?, ?, ?, ?)`,
      ).run(run.id, run.task, run.taskVersion, input, context, run.order, run.nodeBudget, rootId, now, now, run.passDead ? 1 : 0, run.estimate ?? null, run.costBudget ?? null);
    });
    const created = await this.getRun(run.id);
    if (!created) throw new Error(`Run ${run.id} vanished right after it was created.`);
    return created;
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    const row = this.#read(() => this.#stmt('SELECT * FROM rlm_runs WHERE id = ?').get(runId) as Row | undefined);
    return row ? runFromRow(row) : undefined;
  }

  async listRuns(limit = 100, filter: RunFilter = {}): Promise<RunRecord[]> {
    const offset = filter.offset ?? 0;
    return this.#read(() =>
      (filter.state
        ? (this.#stmt('SELECT * FROM rlm_runs WHERE state = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?').all(filter.state, limit, offset) as Row[])
        : (this.#stmt('SELECT * FROM rlm_runs ORDER BY created_at DESC, id LIMIT ? OFFSET ?').all(limit, offset) as Row[])
      ).map(runFromRow),
    );
  }

  async countRuns(filter: RunFilter = {}): Promise<number> {
    return this.#read(() =>
      filter.state
        ? (this.#stmt('SELECT count(*) AS n FROM rlm_runs WHERE state = ?').get(filter.state) as { n: number }).n
        : (this.#stmt('SELECT count(*) AS n FROM rlm_runs').get() as { n: number }).n,
    );
  }

  async setRunState(runId: string, state: RunState, options: { from?: readonly RunState[]; reason?: string | null } = {}): Promise<boolean> {
    return this.#write(() => {
      const row = this.#stmt('SELECT state FROM rlm_runs WHERE id = ?').get(runId) as { state: RunState } | undefined;
      if (!row) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
      if (options.from && !options.from.includes(row.state)) return false;
      const now = Date.now();
      this.#stmt('UPDATE rlm_runs SET state = ?, pause_reason = ?, finished_at = CASE WHEN ? THEN ? ELSE finished_at END, updated_at = ? WHERE id = ?').run(
        state,
        options.reason ?? null,
        state === 'cancelled' ? 1 : 0,
        now,
        now,
        runId,
      );
      return true;
    });
  }

  async setNodeBudget(runId: string, budget: number | null): Promise<number> {
    return this.#write(() => {
      const row = this.#stmt('UPDATE rlm_runs SET node_budget = ?, updated_at = ? WHERE id = ? RETURNING node_count').get(budget, Date.now(), runId) as
        | { node_count: number }
        | undefined;
      if (!row) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
      return row.node_count;
    });
  }

  /** Nodes of a run leased by workers still alive: deleting them would pull work from under those workers. */
  #liveLeases(runId: string): number {
    const row = this.#stmt(
      "SELECT count(*) AS n FROM rlm_nodes WHERE state = 'running' AND run_id = ? AND owner IN (SELECT id FROM rlm_workers WHERE state = 'alive' AND lease_until >= ?)",
    ).get(runId, Date.now()) as { n: number };
    return row.n;
  }

  /** Deletes everything a run owns but its row. */
  #deleteRunContents(runId: string): number {
    this.#stmt('DELETE FROM rlm_edges WHERE parent_id IN (SELECT id FROM rlm_nodes WHERE run_id = ?)').run(runId);
    this.#stmt('DELETE FROM rlm_effects WHERE run_id = ?').run(runId);
    this.#stmt('DELETE FROM rlm_emits WHERE run_id = ?').run(runId);
    this.#stmt('DELETE FROM rlm_group_leases WHERE run_id = ?').run(runId);
    this.#stmt('DELETE FROM rlm_group_buckets WHERE run_id = ?').run(runId);
    this.#stmt('DELETE FROM rlm_signals WHERE run_id = ?').run(runId);
    return this.#stmt('DELETE FROM rlm_nodes WHERE run_id = ?').run(runId).changes;
  }

  async deleteRun(runId: string, options: { force?: boolean } = {}): Promise<number> {
    return this.#write(() => {
      if (!this.#stmt('SELECT 1 FROM rlm_runs WHERE id = ?').get(runId)) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
      const leased = this.#liveLeases(runId);
      if (leased > 0 && !options.force) throw new RunBusyError(runId, leased, 'deleting it');
      const n = this.#deleteRunContents(runId);
      this.#stmt('DELETE FROM rlm_runs WHERE id = ?').run(runId);
      this.#runOrder.delete(runId);
      return n;
    });
  }

  async purgeRuns(finishedBefore: number): Promise<string[]> {
    const doomed = this.#read(
      () =>
        this.#stmt("SELECT id FROM rlm_runs WHERE state IN ('completed', 'failed', 'cancelled') AND COALESCE(finished_at, updated_at) < ? ORDER BY created_at").all(
          finishedBefore,
        ) as { id: string }[],
    );
    const purged: string[] = [];
    // One transaction per run: the write lock is held for one run's rows at a time, so workers go on between them.
    for (const { id } of doomed) {
      const gone = this.#write(() => {
        const row = this.#stmt("SELECT 1 FROM rlm_runs WHERE id = ? AND state IN ('completed', 'failed', 'cancelled') AND COALESCE(finished_at, updated_at) < ?").get(
          id,
          finishedBefore,
        );
        if (!row || this.#liveLeases(id) > 0) return false;
        this.#deleteRunContents(id);
        this.#stmt('DELETE FROM rlm_runs WHERE id = ?').run(id);
        return true;
      });
      if (gone) purged.push(id);
    }
    return purged;
  }

  async restartRun(runId: string, options: { force?: boolean } = {}): Promise<RunRecord> {
    this.#write(() => {
      const run = this.#stmt('SELECT root_id, frontier_order, task_version, input, context FROM rlm_runs WHERE id = ?').get(runId) as Row | undefined;
      if (!run) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
      const leased = this.#liveLeases(runId);
      if (leased > 0 && !options.force) throw new RunBusyError(runId, leased, 'restarting it');
      const root = this.#stmt('SELECT key, keyed, priority, traceparent FROM rlm_nodes WHERE id = ?').get(run.root_id) as Row | undefined;
      this.#deleteRunContents(runId);
      const now = Date.now();
      const rootId = this.#allocate(1);
      const dfs = run.frontier_order === 'dfs';
      this.#stmt(
        `INSERT INTO rlm_nodes (id, run_id, parent_id, ord, key, keyed, depth, priority, order_key, version, state, input, context, traceparent, created_at, updated_at)
         VALUES (?, ?, NULL, 0, ?, ?, 0, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)`,
      ).run(
        rootId,
        runId,
        root?.key ?? 'root',
        root?.keyed ?? 0,
        root?.priority ?? 0,
        dfs ? -rootId : rootId,
        run.task_version,
        run.input,
        run.context,
        root?.traceparent ?? null,
        now,
        now,
      );
      this.#stmt(
        `UPDATE rlm_runs SET state = 'running', result = NULL, pause_reason = NULL, finished_at = NULL, node_count = 1, root_id = ?,
           n_pending = 1, cost_spent = 0, n_running = 0, n_waiting = 0, n_done = 0, n_dead = 0, n_parked = 0, updated_at = ? WHERE id = ?`,
      ).run(rootId, now, runId);
    });
    const run = await this.getRun(runId);
    if (!run) throw new Error(`Run ${runId} vanished right after it was restarted.`);
    return run;
  }

  async settleRun(runId: string): Promise<RunRecord | undefined> {
    this.#write(() => this.#settle(runId, Date.now(), true));
    return this.getRun(runId);
  }

  /** Decides whether a run has ended; `reopen` lets a finished run run again once it has work (after a redrive). */
  #settle(runId: string, now: number, reopen: boolean): RunState | undefined {
    let run = this.#stmt('SELECT * FROM rlm_runs WHERE id = ?').get(runId) as Row | undefined;
    if (!run) return undefined;
    const state = run.state as RunState;
    if (state === 'cancelled') return state;
    let active = (run.n_pending as number) + (run.n_running as number);
    // Nothing can move and nodes still wait: a dependency cycle may hold them (see store/cycles.ts).
    if (active === 0 && (run.n_waiting as number) > 0 && this.#breakCycles(runId, run.root_id as number, now)) {
      run = this.#stmt('SELECT * FROM rlm_runs WHERE id = ?').get(runId) as Row;
      active = (run.n_pending as number) + (run.n_running as number);
    }
    const root = this.#stmt('SELECT state, result FROM rlm_nodes WHERE id = ?').get(run.root_id) as { state: NodeState; result: Payload | null } | undefined;
    if (!root) throw new StoreCorruptError(`The store ${this.path} is damaged: the root node of run ${runId} is missing.`);
    let next: RunState = state;
    let reason = (run.pause_reason as string | null) ?? null;
    if (root.state === 'done' && active === 0 && (run.n_waiting as number) === 0 && (run.n_parked as number) === 0) {
      next = 'completed';
    } else if (active === 0 && state !== 'paused') {
      if ((run.n_parked as number) > 0) {
        next = 'paused';
        reason = reason ?? 'parked nodes wait for `rlm approve` or `rlm reject`';
      } else {
        next = 'failed';
      }
    } else if (active > 0 && reopen && (state === 'failed' || state === 'completed')) {
      next = 'running';
    }
    if (next !== state || next === 'completed') {
      const finished = next === 'completed' || next === 'failed' ? now : null;
      this.#stmt('UPDATE rlm_runs SET state = ?, result = ?, pause_reason = ?, finished_at = ?, updated_at = ? WHERE id = ?').run(
        next,
        next === 'completed' ? root.result : null,
        next === 'paused' ? reason : null,
        finished,
        now,
        runId,
      );
    }
    return next;
  }

  async recordRunCode(runId: string, code: RunCode): Promise<RunCode | null> {
    return this.#write(() => {
      const row = this.#stmt('SELECT code_version, code_hash FROM rlm_runs WHERE id = ?').get(runId) as { code_version: number | null; code_hash: string | null } | undefined;
      if (!row) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
      this.#stmt(
        'UPDATE rlm_runs SET code_version = ?, code_hash = ?, pass_dead = COALESCE(?, pass_dead), last_worker = COALESCE(?, last_worker), last_worker_at = COALESCE(?, last_worker_at) WHERE id = ?',
      ).run(code.version, code.hash, code.passDead === undefined ? null : code.passDead ? 1 : 0, code.workerId ?? null, code.workerId === undefined ? null : Date.now(), runId);
      return row.code_version === null || row.code_hash === null ? null : { version: row.code_version, hash: row.code_hash };
    });
  }

  async setRunEstimate(runId: string, estimate: number | null): Promise<void> {
    this.#write(() => {
      const changed = this.#stmt('UPDATE rlm_runs SET estimate = ? WHERE id = ?').run(estimate, runId) as { changes: number };
      if (changed.changes === 0) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
    });
  }

  async setCostBudget(runId: string, budget: number | null): Promise<void> {
    this.#write(() => {
      const changed = this.#stmt('UPDATE rlm_runs SET cost_budget = ? WHERE id = ?').run(budget, runId) as { changes: number };
      if (changed.changes === 0) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
    });
  }

  async chargeCost(charge: CostCharge): Promise<{ granted: boolean; amount: number; spent: number; budget: number | null }> {
    return this.#write(() => {
      const run = this.#stmt('SELECT cost_budget, cost_spent FROM rlm_runs WHERE id = ?').get(charge.runId) as { cost_budget: number | null; cost_spent: number } | undefined;
      if (!run) throw new NotFoundError(`No run ${charge.runId} in ${this.description}; \`rlm status\` lists the runs.`);
      const journaled = this.#stmt('SELECT run_id, value FROM rlm_effects WHERE run_id = ? AND node_key = ? AND name = ?').get(charge.runId, charge.nodeKey, charge.name) as Row | undefined;
      const { write, ...decided } = decideCharge(charge, run.cost_spent, run.cost_budget, journaled ? costOf(openEffect(journaled)) : undefined);
      if (!write) return decided;
      this.#stmt('UPDATE rlm_runs SET cost_spent = ? WHERE id = ?').run(decided.spent, charge.runId);
      this.#stmt('INSERT INTO rlm_effects (run_id, node_key, name, node_id, value, at) VALUES (?, ?, ?, ?, ?, ?)').run(
        charge.runId,
        charge.nodeKey,
        charge.name,
        charge.nodeId,
        seal(costEntry(charge.amount)),
        Date.now(),
      );
      return decided;
    });
  }

  async sendSignal(runId: string, name: string, payload: Payload): Promise<{ sent: boolean; woke: number }> {
    return this.#write(() => {
      const run = this.#stmt('SELECT state, pause_reason FROM rlm_runs WHERE id = ?').get(runId) as { state: RunState; pause_reason: string | null } | undefined;
      if (!run) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
      const before = this.#stmt('SELECT run_id, payload FROM rlm_signals WHERE run_id = ? AND name = ?').get(runId, name) as Row | undefined;
      if (before) {
        if (open(before.payload, { table: 'rlm_signals', column: 'payload', row: before }) !== payloadText(payload)) throw signalRefused(runId, name);
      }
      const now = Date.now();
      if (!before) this.#stmt('INSERT INTO rlm_signals (run_id, name, payload, sent_at) VALUES (?, ?, ?, ?)').run(runId, name, seal(payloadText(payload)), now);
      const woke = this.#stmt("UPDATE rlm_nodes SET state = 'pending', park_reason = NULL, updated_at = ? WHERE run_id = ? AND state = 'parked' AND park_reason = ?").run(
        now,
        runId,
        signalWaitReason(name),
      ).changes;
      if (woke > 0) {
        this.#stmt('UPDATE rlm_runs SET n_parked = n_parked - ?, n_pending = n_pending + ?, updated_at = ? WHERE id = ?').run(woke, woke, now, runId);
        // Woken nodes run though others still wait: a pause for parked nodes ends, a person's pause stays.
        if (run.state === 'paused' && !isPersonPause(run.pause_reason)) this.#stmt("UPDATE rlm_runs SET state = 'running', pause_reason = NULL WHERE id = ?").run(runId);
      }
      return { sent: !before, woke };
    });
  }

  async getSignal(runId: string, name: string): Promise<Payload | undefined> {
    const row = this.#read(() => this.#stmt('SELECT run_id, payload FROM rlm_signals WHERE run_id = ? AND name = ?').get(runId, name) as Row | undefined);
    return row ? (open(row.payload, { table: 'rlm_signals', column: 'payload', row }) ?? undefined) : undefined;
  }

  async subtreeCost(nodeId: number): Promise<number> {
    return this.#read(() => {
      const rows = this.#stmt(
        `WITH RECURSIVE sub(id) AS (SELECT ? UNION SELECT n.id FROM rlm_nodes n JOIN sub ON n.parent_id = sub.id)
         SELECT e.run_id, e.value FROM rlm_effects e JOIN rlm_nodes n ON e.run_id = n.run_id AND e.node_key = n.key JOIN sub ON sub.id = n.id WHERE e.name LIKE '${COST_EFFECT_PREFIX}%'`,
      ).all(nodeId) as Row[];
      return rows.reduce((sum, row) => sum + costOf(openEffect(row)), 0);
    });
  }

  async registerWorker(info: WorkerInfo, leaseMs: number): Promise<void> {
    const now = Date.now();
    this.#write(() => {
      // Each process adds a row: rows of workers gone long ago are pruned here, once per process.
      this.#stmt("DELETE FROM rlm_workers WHERE state <> 'alive' AND heartbeat_at < ?").run(now - WORKER_RETENTION_MS);
      this.#stmt(
        `INSERT INTO rlm_workers (id, host, pid, pid_start, task, version, state, lease_until, heartbeat_at, started_at)
         VALUES (?, ?, ?, ?, ?, ?, 'alive', ?, ?, ?)`,
      ).run(info.id, info.host, info.pid, info.pidStart, info.task, info.version, now + leaseMs, now, now);
    });
  }

  async heartbeat(workerId: string, leaseMs: number): Promise<boolean> {
    if (failpoints.active) failpoints.hit('heartbeat.beforeRenew');
    const now = Date.now();
    const alive = this.#write(
      () => this.#stmt("UPDATE rlm_workers SET lease_until = ?, heartbeat_at = ? WHERE id = ? AND state = 'alive'").run(now + leaseMs, now, workerId).changes === 1,
    );
    if (failpoints.active) failpoints.hit('heartbeat.afterRenew');
    return alive;
  }

  async listWorkers(options: { alive?: boolean } = {}): Promise<WorkerRecord[]> {
    const sql = options.alive ? "SELECT * FROM rlm_workers WHERE state = 'alive' ORDER BY started_at DESC" : 'SELECT * FROM rlm_workers ORDER BY started_at DESC';
    return this.#read(() => (this.#stmt(sql).all() as Row[]).map(workerFromRow));
  }

  async workerLeases(): Promise<WorkerLeases[]> {
    const rows = this.#read(
      () =>
        this.#stmt(
          "SELECT owner, run_id, count(*) AS n FROM rlm_nodes WHERE state = 'running' AND owner IS NOT NULL GROUP BY owner, run_id ORDER BY owner, run_id",
        ).all() as { owner: string; run_id: string; n: number }[],
    );
    return rows.map((row) => ({ workerId: row.owner, runId: row.run_id, nodes: row.n }));
  }

  async takeBack(options: { deadIds?: readonly string[]; expiredBefore?: number; blame?: readonly { id: number; epoch: number }[] }): Promise<number> {
    return this.#write(() => {
      const now = Date.now();
      const victims: string[] = [];
      // A victim running a node alone (see markAlone) is that node's fault, wherever its process was: charged
      // once, whether its own host's flight recorder or the store says so.
      const blame = new Map<number, number>();
      for (const node of options.blame ?? []) blame.set(node.id, node.epoch);
      const dead = (row: { id: string; alone_id: number | null; alone_epoch: number | null }) => {
        victims.push(row.id);
        if (row.alone_id !== null && row.alone_epoch !== null) blame.set(row.alone_id, row.alone_epoch);
      };
      for (const id of options.deadIds ?? []) {
        const row = this.#stmt("UPDATE rlm_workers SET state = 'dead' WHERE id = ? AND state = 'alive' RETURNING id, alone_id, alone_epoch").get(id) as
          | { id: string; alone_id: number | null; alone_epoch: number | null }
          | undefined;
        if (row) dead(row);
      }
      if (options.expiredBefore !== undefined) {
        const expired = this.#stmt("UPDATE rlm_workers SET state = 'dead' WHERE state = 'alive' AND lease_until < ? RETURNING id, alone_id, alone_epoch").all(
          options.expiredBefore,
        ) as { id: string; alone_id: number | null; alone_epoch: number | null }[];
        for (const row of expired) dead(row);
      }
      for (const [id, epoch] of blame) {
        this.#stmt("UPDATE rlm_nodes SET attempts = attempts + 1 WHERE id = ? AND epoch = ? AND state = 'running'").run(id, epoch);
      }
      if (failpoints.active && victims.length > 0) failpoints.hit('takeback.afterMarkDead');
      let taken = 0;
      const deltas = new Map<string, number>();
      for (const id of victims) {
        // A dead worker's group slots are free at once, as its nodes are.
        this.#stmt('DELETE FROM rlm_group_leases WHERE worker_id = ?').run(id);
        const rows = this.#stmt(
          "UPDATE rlm_nodes SET state = 'pending', owner = NULL, epoch = epoch + 1, suspect = 1, updated_at = ? WHERE owner = ? AND state = 'running' RETURNING run_id",
        ).all(now, id) as { run_id: string }[];
        taken += rows.length;
        for (const row of rows) deltas.set(row.run_id, (deltas.get(row.run_id) ?? 0) + 1);
      }
      for (const [runId, n] of deltas) {
        this.#stmt('UPDATE rlm_runs SET n_running = n_running - ?, n_pending = n_pending + ?, updated_at = ? WHERE id = ?').run(n, n, now, runId);
      }
      return taken;
    });
  }

  async markAlone(workerId: string, node: { id: number; epoch: number } | null): Promise<void> {
    this.#write(() => {
      this.#stmt('UPDATE rlm_workers SET alone_id = ?, alone_epoch = ? WHERE id = ?').run(node?.id ?? null, node?.epoch ?? null, workerId);
    });
  }

  async releaseWorker(workerId: string, nodes?: readonly { id: number; epoch: number }[]): Promise<void> {
    this.#write(() => {
      if (failpoints.active) failpoints.hit('stop.release');
      const now = Date.now();
      const deltas = new Map<string, number>();
      const release = (rows: { run_id: string }[]) => {
        for (const row of rows) deltas.set(row.run_id, (deltas.get(row.run_id) ?? 0) + 1);
      };
      const sql =
        "UPDATE rlm_nodes SET state = 'pending', owner = NULL, epoch = epoch + 1, updated_at = ? WHERE owner = ? AND state = 'running'";
      if (nodes) {
        for (const node of nodes) release(this.#stmt(`${sql} AND id = ? AND epoch = ? RETURNING run_id`).all(now, workerId, node.id, node.epoch) as { run_id: string }[]);
      } else {
        release(this.#stmt(`${sql} RETURNING run_id`).all(now, workerId) as { run_id: string }[]);
        this.#stmt("UPDATE rlm_workers SET state = 'stopped' WHERE id = ? AND state = 'alive'").run(workerId);
        this.#stmt('DELETE FROM rlm_group_leases WHERE worker_id = ?').run(workerId);
      }
      for (const [runId, n] of deltas) {
        this.#stmt('UPDATE rlm_runs SET n_running = n_running - ?, n_pending = n_pending + ?, updated_at = ? WHERE id = ?').run(n, n, now, runId);
      }
    });
  }

  async claimNodes(workerId: string, filter: ClaimFilter, limit: number): Promise<LeasedNode[]> {
    return this.#write(() => {
      if (failpoints.active) failpoints.hit('claim.beforeUpdate');
      const alive = this.#stmt("SELECT 1 FROM rlm_workers WHERE id = ? AND state = 'alive'").get(workerId);
      if (!alive) return [];
      const now = Date.now();
      const runs = filter.runIds
        ? (filter.runIds.map((id) => this.#stmt("SELECT id FROM rlm_runs WHERE id = ? AND task = ? AND state = 'running'").get(id, filter.task)).filter(Boolean) as {
            id: string;
          }[])
        : (this.#stmt("SELECT id FROM rlm_runs WHERE task = ? AND state = 'running' ORDER BY created_at").all(filter.task) as { id: string }[]);
      const claimed: LeasedNode[] = [];
      for (const run of runs) {
        if (claimed.length >= limit) break;
        const rows = this.#stmt(
          `UPDATE rlm_nodes SET state = 'running', owner = ?, epoch = epoch + 1, updated_at = ?
           WHERE id IN (SELECT id FROM rlm_nodes WHERE run_id = ? AND state = 'pending' AND available_at <= ? AND version <= ?
                        ORDER BY priority DESC, order_key LIMIT ?)
           RETURNING ${LEASED_COLUMNS}`,
        ).all(workerId, now, run.id, now, filter.maxVersion, limit - claimed.length) as Row[];
        if (rows.length > 0) {
          this.#stmt('UPDATE rlm_runs SET n_pending = n_pending - ?, n_running = n_running + ?, updated_at = ? WHERE id = ?').run(
            rows.length,
            rows.length,
            now,
            run.id,
          );
        }
        // RETURNING comes back in rowid order; the engine takes a batch as best first.
        const dfs = this.orderOf(run.id) === 'dfs';
        rows.sort((a, b) => (b.priority as number) - (a.priority as number) || (dfs ? (b.id as number) - (a.id as number) : (a.id as number) - (b.id as number)));
        for (const row of rows) claimed.push(leasedFromRow(row));
      }
      if (failpoints.active) failpoints.hit('claim.beforeCommit');
      return claimed;
    });
  }

  async commit(workerId: string, ops: readonly CommitOp[]): Promise<CommitResult> {
    if (failpoints.active) failpoints.hit('commit.beforeBegin');
    const result = this.#write(() => {
      const applied = new CommitState(this, workerId);
      for (const op of ops) applied.apply(op);
      const done = applied.finish();
      if (failpoints.active) failpoints.hit('commit.beforeCommit');
      return done;
    });
    if (failpoints.active) failpoints.hit('commit.afterCommit');
    return result;
  }

  /** @internal Used by CommitState. */
  stmt(sql: string): SqliteStatement {
    return this.#stmt(sql);
  }

  /** Multi-row INSERTs of nodes, prepared once per row count: every column, and the plain form (see PLAIN_ROW). */
  readonly #insertRows: { all: SqliteStatement[]; plain: SqliteStatement[] } = { all: [], plain: [] };

  /**
   * @internal Writes nodes given as their column values one row after another (every column, or the plain
   * form's), in multi-row INSERTs: they cost far less per row than one statement each.
   */
  insertNodes(values: readonly unknown[], form: 'all' | 'plain'): void {
    const [head, row, width] = form === 'all' ? [INSERT_NODES, INSERT_ROW, INSERT_ROW_PARAMS] : [INSERT_PLAIN, PLAIN_ROW, PLAIN_ROW_PARAMS];
    const cache = this.#insertRows[form];
    for (let at = 0; at < values.length; at += width * INSERT_BATCH) {
      const chunk = values.slice(at, at + width * INSERT_BATCH);
      const rows = chunk.length / width;
      let stmt = cache[rows];
      if (!stmt) {
        stmt = this.db.prepare(`${head}${Array(rows).fill(row).join(', ')}`);
        cache[rows] = stmt;
      }
      stmt.run(...chunk);
    }
  }

  /** @internal Frontier order of a run, cached: it never changes. */
  orderOf(runId: string): 'dfs' | 'bfs' {
    let order = this.#runOrder.get(runId);
    if (!order) {
      const row = this.#stmt('SELECT frontier_order FROM rlm_runs WHERE id = ?').get(runId) as { frontier_order: 'dfs' | 'bfs' } | undefined;
      order = row?.frontier_order ?? 'dfs';
      this.#runOrder.set(runId, order);
    }
    return order;
  }

  /** @internal */
  settle(runId: string, now: number): RunState | undefined {
    return this.#settle(runId, now, false);
  }

  async getEffect(runId: string, nodeKey: string, name: string): Promise<EffectRecord | undefined> {
    const row = this.#read(
      () => this.#stmt('SELECT run_id, name, value, node_id, at FROM rlm_effects WHERE run_id = ? AND node_key = ? AND name = ?').get(runId, nodeKey, name) as Row | undefined,
    );
    return row ? { name: row.name as string, value: openEffect(row), nodeId: row.node_id as number, at: row.at as number } : undefined;
  }

  async listEffects(nodeId: number): Promise<EffectRecord[]> {
    return this.#read(() =>
      (this.#stmt('SELECT run_id, name, value, node_id, at FROM rlm_effects WHERE node_id = ? ORDER BY at').all(nodeId) as Row[]).map((row) => ({
        name: row.name as string,
        value: openEffect(row),
        nodeId: row.node_id as number,
        at: row.at as number,
      })),
    );
  }

  async childResults(nodeId: string | number): Promise<Array<{ key: string; state: NodeState; result: Payload | null; error: string | null }>> {
    return this.#read(() =>
      (
        this.#stmt(
          `SELECT id, run_id, key, state, result, errors FROM (
             SELECT ord, id, run_id, key, state, result, errors FROM rlm_nodes WHERE parent_id = ?
             UNION ALL
             SELECT e.ord, n.id, n.run_id, n.key, n.state, n.result, n.errors FROM rlm_edges e JOIN rlm_nodes n ON n.id = e.child_id WHERE e.parent_id = ?
           ) ORDER BY ord, id`,
        ).all(nodeId, nodeId) as Row[]
      ).map((row) => {
        const errors = openErrors(row.errors, { table: 'rlm_nodes', column: 'errors', row });
        return {
          key: row.key as string,
          state: row.state as NodeState,
          result: open(row.result, { table: 'rlm_nodes', column: 'result', row }),
          error: errors.length > 0 ? (errors[errors.length - 1]?.message ?? null) : null,
        };
      }),
    );
  }

  async getNode(nodeId: number): Promise<NodeRecord | undefined> {
    const row = this.#read(() => this.#stmt('SELECT * FROM rlm_nodes WHERE id = ?').get(nodeId) as Row | undefined);
    return row ? nodeFromRow(row) : undefined;
  }

  async listChildren(nodeId: number, limit = 1000, offset = 0): Promise<NodeRecord[]> {
    return this.#read(() =>
      (
        this.#stmt(
          `SELECT * FROM (
             SELECT n.*, n.ord AS sort_ord FROM rlm_nodes n WHERE n.parent_id = ?
             UNION ALL
             SELECT n.*, e.ord AS sort_ord FROM rlm_edges e JOIN rlm_nodes n ON n.id = e.child_id WHERE e.parent_id = ?
           ) ORDER BY sort_ord, id LIMIT ? OFFSET ?`,
        ).all(nodeId, nodeId, limit, offset) as Row[]
      ).map(nodeFromRow),
    );
  }

  async listNodes(runId: string, filter: { state?: NodeState; limit?: number; afterId?: number }): Promise<NodeRecord[]> {
    const limit = filter.limit ?? 1000;
    const after = filter.afterId ?? 0;
    return this.#read(() =>
      (filter.state
        ? (this.#stmt('SELECT * FROM rlm_nodes WHERE run_id = ? AND state = ? AND id > ? AND dropped = 0 ORDER BY id LIMIT ?').all(
            runId,
            filter.state,
            after,
            limit,
          ) as Row[])
        : (this.#stmt('SELECT * FROM rlm_nodes WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?').all(runId, after, limit) as Row[])
      ).map(nodeFromRow),
    );
  }

  async readEmits(runId: string, afterSeq: number, limit: number): Promise<EmitRecord[]> {
    return this.#read(() =>
      (this.#stmt('SELECT seq, run_id, node_id, record FROM rlm_emits WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?').all(runId, afterSeq, limit) as Row[]).map(
        (row) => ({ seq: row.seq as number, nodeId: row.node_id as number, record: open(row.record, { table: 'rlm_emits', column: 'record', row }) ?? 'null' }),
      ),
    );
  }

  async subtreeCounts(nodeId: number): Promise<StateCounts> {
    return this.#subtree(nodeId, -1) as StateCounts;
  }

  async subtreeCountsUpTo(nodeId: number, maxNodes: number): Promise<StateCounts | null> {
    return this.#subtree(nodeId, maxNodes);
  }

  /**
   * Walks the first-parent tree (parent_id is set once, to a node created earlier, so it has no cycles and UNION
   * ALL needs no set of visited ids), carrying each node's state so no second lookup per node is needed.
   */
  #subtree(nodeId: number, maxNodes: number): StateCounts | null {
    const rows = this.#read(
      () =>
        this.#stmt(
          `WITH RECURSIVE sub(id, state) AS (SELECT id, state FROM rlm_nodes WHERE id = ? UNION ALL SELECT n.id, n.state FROM rlm_nodes n JOIN sub ON n.parent_id = sub.id LIMIT ?)
           SELECT state, count(*) AS n FROM sub GROUP BY state`,
        ).all(nodeId, maxNodes < 0 ? -1 : maxNodes + 1) as { state: NodeState; n: number }[],
    );
    const counts = emptyCounts();
    let total = 0;
    for (const row of rows) {
      counts[row.state] = row.n;
      total += row.n;
    }
    return maxNodes >= 0 && total > maxNodes ? null : counts;
  }

  async acquireGroup(request: GroupRequest): Promise<GroupGrant> {
    return this.#write(() => {
      const { runId, group, workerId } = request;
      const now = Date.now();
      let others = 0;
      if (request.concurrency !== null) {
        this.#stmt('DELETE FROM rlm_group_leases WHERE run_id = ? AND grp = ? AND expires_at < ?').run(runId, group, now);
        const row = this.#stmt('SELECT COALESCE(sum(slots), 0) AS n FROM rlm_group_leases WHERE run_id = ? AND grp = ? AND worker_id <> ?').get(runId, group, workerId) as {
          n: number;
        };
        others = row.n;
      }
      const bucket = this.#stmt('SELECT tokens, refilled_at AS refilledAt FROM rlm_group_buckets WHERE run_id = ? AND grp = ?').get(runId, group) as Bucket | undefined;
      const grant = grantGroup(request, others, bucket ?? null, now);
      if (request.concurrency !== null) {
        if (grant.slots > 0) {
          this.#stmt(
            'INSERT INTO rlm_group_leases (run_id, grp, worker_id, slots, expires_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, grp, worker_id) DO UPDATE SET slots = excluded.slots, expires_at = excluded.expires_at',
          ).run(runId, group, workerId, grant.slots, now + request.leaseMs);
        } else {
          this.#stmt('DELETE FROM rlm_group_leases WHERE run_id = ? AND grp = ? AND worker_id = ?').run(runId, group, workerId);
        }
      }
      if (grant.bucket) {
        this.#stmt(
          'INSERT INTO rlm_group_buckets (run_id, grp, tokens, refilled_at) VALUES (?, ?, ?, ?) ON CONFLICT (run_id, grp) DO UPDATE SET tokens = excluded.tokens, refilled_at = excluded.refilled_at',
        ).run(runId, group, grant.bucket.tokens, grant.bucket.refilledAt);
      }
      return { slots: grant.slots, tokens: grant.tokens, nextTokenInMs: grant.nextTokenInMs };
    });
  }

  async nextWake(runId: string): Promise<{ at: number; nodes: number } | null> {
    const row = this.#read(
      () => this.#stmt("SELECT min(available_at) AS at, count(*) AS n FROM rlm_nodes WHERE run_id = ? AND state = 'pending' AND available_at > ?").get(runId, Date.now()) as Row,
    );
    return row.at === null ? null : { at: row.at as number, nodes: row.n as number };
  }

  async depthHistogram(runId: string): Promise<Array<{ depth: number; count: number }>> {
    return this.#read(
      () => this.#stmt('SELECT depth, count(*) AS count FROM rlm_nodes WHERE run_id = ? GROUP BY depth ORDER BY depth').all(runId) as { depth: number; count: number }[],
    );
  }

  /** @internal Recounts a run's node states from the rows (tests compare it with the stored counters). */
  recount(runId: string): StateCounts {
    const counts = emptyCounts();
    for (const row of this.#read(() => this.#stmt('SELECT state, count(*) AS n FROM rlm_nodes WHERE run_id = ? AND dropped = 0 GROUP BY state').all(runId) as { state: NodeState; n: number }[])) {
      counts[row.state] = row.n;
    }
    return counts;
  }

  #heldIds(runId: string, state: 'dead' | 'parked', nodeIds: readonly number[] | 'all'): number[] {
    if (nodeIds !== 'all') return [...nodeIds];
    return (this.#stmt('SELECT id FROM rlm_nodes WHERE run_id = ? AND state = ? AND dropped = 0').all(runId, state) as { id: number }[]).map((row) => row.id);
  }

  async cancelSubtree(runId: string, nodeId: number): Promise<number> {
    return this.#write(() => {
      const now = Date.now();
      const entry = errorJson({ attempt: 0, message: 'Cancelled with its subtree (`rlm cancel`).', code: 'CANCELLED', stack: null, at: now, worker: 'cli' });
      const rows = this.#stmt(
        `WITH RECURSIVE sub(id) AS (SELECT id FROM rlm_nodes WHERE id = ? AND run_id = ? UNION SELECT n.id FROM rlm_nodes n JOIN sub ON n.parent_id = sub.id)
         SELECT n.id, n.state FROM sub JOIN rlm_nodes n ON n.id = sub.id WHERE n.state IN ('pending', 'running', 'waiting', 'parked')`,
      ).all(nodeId, runId) as { id: number; state: NodeState }[];
      const deltas = emptyCounts();
      for (const row of rows) {
        this.#stmt(
          "UPDATE rlm_nodes SET state = 'dead', owner = NULL, epoch = epoch + 1, errors = json_insert(COALESCE(errors, '[]'), '$[#]', json(?)), updated_at = ? WHERE id = ?",
        ).run(entry, now, row.id);
        deltas[row.state]--;
        deltas.dead++;
      }
      this.#releaseParents(
        runId,
        rows.map((row) => row.id),
        now,
        deltas,
      );
      this.#stmt(
        `UPDATE rlm_runs SET n_pending = n_pending + ?, n_running = n_running + ?, n_waiting = n_waiting + ?, n_dead = n_dead + ?, n_parked = n_parked + ?, updated_at = ? WHERE id = ?`,
      ).run(deltas.pending, deltas.running, deltas.waiting, deltas.dead, deltas.parked, now, runId);
      this.#settle(runId, now, false);
      return rows.length;
    });
  }

  /**
   * A stalled run's dependency cycles: each node that closes one goes to the dead-letter queue (and, under
   * deadChildren 'pass', counts as finished for its parents). Returns whether there was any.
   */
  #breakCycles(runId: string, rootId: number, now: number): boolean {
    const edges = this.#stmt(WAITING_EDGES).all(rootId) as { parent: number; child: number }[];
    const closers = findCycleClosers(rootId, edges);
    if (closers.length === 0) return false;
    const keyOf = this.#stmt('SELECT key FROM rlm_nodes WHERE id = ?');
    const dead: number[] = [];
    for (const closer of closers) {
      const keys = closer.path.map((id) => (keyOf.get(id) as { key: string }).key);
      const error = cycleError(keys, now, 'rlm');
      const changed = this.#stmt(
        "UPDATE rlm_nodes SET state = 'dead', owner = NULL, errors = json_insert(COALESCE(errors, '[]'), '$[#]', json(?)), updated_at = ? WHERE id = ? AND state = 'waiting'",
      ).run(errorJson(error), now, closer.nodeId).changes;
      if (changed === 1) dead.push(closer.nodeId);
    }
    const deltas = emptyCounts();
    deltas.waiting -= dead.length;
    deltas.dead += dead.length;
    this.#releaseParents(runId, dead, now, deltas);
    this.#stmt('UPDATE rlm_runs SET n_pending = n_pending + ?, n_waiting = n_waiting + ?, n_dead = n_dead + ?, updated_at = ? WHERE id = ?').run(
      deltas.pending,
      deltas.waiting,
      deltas.dead,
      now,
      runId,
    );
    return dead.length > 0;
  }

  /**
   * Nodes just dead-lettered outside a commit (a reject, a cancelled subtree): under the run's deadChildren
   * 'pass' each counts as finished for the parents waiting on it, and a parent left with no unfinished child
   * becomes pending for its combine phase, as in a commit. Adds the moves to `deltas`.
   */
  #releaseParents(runId: string, deadIds: readonly number[], now: number, deltas: StateCounts): void {
    if (deadIds.length === 0) return;
    const run = this.#stmt('SELECT pass_dead FROM rlm_runs WHERE id = ?').get(runId) as { pass_dead: number } | undefined;
    if (run?.pass_dead !== 1) return;
    const dead = new Set(deadIds);
    const decrements = new Map<number, number>();
    for (const id of deadIds) {
      const parents = this.#stmt('SELECT parent_id AS id FROM rlm_nodes WHERE id = ? AND parent_id IS NOT NULL UNION ALL SELECT parent_id FROM rlm_edges WHERE child_id = ?').all(id, id) as { id: number }[];
      for (const parent of parents) if (!dead.has(parent.id)) decrements.set(parent.id, (decrements.get(parent.id) ?? 0) + 1);
    }
    for (const [parentId, n] of decrements) {
      const row = this.#stmt("UPDATE rlm_nodes SET pending_children = pending_children - ? WHERE id = ? AND state = 'waiting' RETURNING pending_children").get(n, parentId) as
        | { pending_children: number }
        | undefined;
      if (!row || row.pending_children > 0) continue;
      const moved = this.#stmt(
        "UPDATE rlm_nodes SET state = 'pending', phase = 'combine', owner = NULL, epoch = epoch + 1, attempts = 0, suspect = 0, available_at = 0, updated_at = ? WHERE id = ? AND state = 'waiting'",
      ).run(now, parentId).changes;
      deltas.waiting -= moved;
      deltas.pending += moved;
    }
  }

  async compact(runId: string): Promise<{ deleted: number; pruned: number }> {
    return this.#write(() => {
      const doomed = `SELECT c.id FROM rlm_nodes p JOIN rlm_nodes c ON c.parent_id = p.id
                      WHERE p.run_id = ? AND p.state = 'done' AND c.state = 'done' AND c.keyed = 0 AND c.shared = 0`;
      this.#stmt(`DELETE FROM rlm_effects WHERE run_id = ? AND node_id IN (${doomed})`).run(runId, runId);
      const deleted = this.#stmt(`DELETE FROM rlm_nodes WHERE id IN (${doomed})`).run(runId).changes;
      const pruned = this.#stmt(
        "UPDATE rlm_nodes SET input = NULL, context = NULL WHERE run_id = ? AND state = 'done' AND keyed = 1 AND (input IS NOT NULL OR context IS NOT NULL)",
      ).run(runId).changes;
      return { deleted, pruned };
    });
  }

  async redrive(runId: string, nodeIds: readonly number[] | 'all'): Promise<number> {
    return this.#write(() => {
      const now = Date.now();
      let n = 0;
      let dropped = 0;
      for (const id of this.#heldIds(runId, 'dead', nodeIds)) {
        const row = this.#stmt("SELECT dropped FROM rlm_nodes WHERE id = ? AND run_id = ? AND state = 'dead'").get(id, runId) as { dropped: number } | undefined;
        if (!row) continue;
        this.#stmt("UPDATE rlm_nodes SET state = 'pending', attempts = 0, suspect = 0, available_at = 0, dropped = 0, owner = NULL, updated_at = ? WHERE id = ?").run(now, id);
        n++;
        dropped += row.dropped;
      }
      if (n > 0) {
        // A dropped node left the dead count when it was dropped.
        this.#stmt('UPDATE rlm_runs SET n_dead = n_dead - ?, n_pending = n_pending + ?, updated_at = ? WHERE id = ?').run(n - dropped, n, now, runId);
        this.#settle(runId, now, true);
      }
      return n;
    });
  }

  async dropDead(runId: string, nodeIds: readonly number[] | 'all'): Promise<number> {
    return this.#write(() => {
      const run = this.#stmt('SELECT pass_dead FROM rlm_runs WHERE id = ?').get(runId) as { pass_dead: number } | undefined;
      if (!run) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
      const ids = this.#heldIds(runId, 'dead', nodeIds);
      if (run.pass_dead !== 1) {
        for (const id of ids) {
          const waiting = this.#stmt(
            `SELECT p.id FROM rlm_nodes c JOIN rlm_nodes p ON p.id = c.parent_id WHERE c.id = ? AND c.run_id = ? AND c.state = 'dead' AND c.dropped = 0 AND p.state = 'waiting'
             UNION ALL SELECT p.id FROM rlm_edges e JOIN rlm_nodes p ON p.id = e.parent_id WHERE e.child_id = ? AND p.state = 'waiting' LIMIT 1`,
          ).get(id, runId, id) as { id: number } | undefined;
          if (waiting) throw dropRefused(runId, id, waiting.id);
        }
      }
      let n = 0;
      for (const id of ids) {
        n += this.#stmt("UPDATE rlm_nodes SET dropped = 1 WHERE id = ? AND run_id = ? AND state = 'dead' AND dropped = 0").run(id, runId).changes;
      }
      if (n > 0) {
        const now = Date.now();
        this.#stmt('UPDATE rlm_runs SET n_dead = n_dead - ?, updated_at = ? WHERE id = ?').run(n, now, runId);
        this.#settle(runId, now, false);
      }
      return n;
    });
  }

  async decideParked(runId: string, nodeIds: readonly number[] | 'all', decision: 'approve' | 'reject'): Promise<number> {
    return this.#write(() => {
      const now = Date.now();
      let n = 0;
      const rejected: number[] = [];
      for (const id of this.#heldIds(runId, 'parked', nodeIds)) {
        if (decision === 'approve') {
          n += this.#stmt(
            "UPDATE rlm_nodes SET state = 'pending', fanout_ok = CASE WHEN park_reason LIKE 'fan-out%' OR park_reason LIKE 'gate:%' THEN 1 ELSE fanout_ok END, park_reason = NULL, updated_at = ? WHERE id = ? AND run_id = ? AND state = 'parked'",
          ).run(now, id, runId).changes;
        } else {
          const entry = errorJson({ attempt: 0, message: 'Rejected by a person (`rlm reject`).', code: 'REJECTED', stack: null, at: now, worker: 'cli' });
          const changed = this.#stmt(
            "UPDATE rlm_nodes SET state = 'dead', errors = json_insert(COALESCE(errors, '[]'), '$[#]', json(?)), updated_at = ? WHERE id = ? AND run_id = ? AND state = 'parked'",
          ).run(entry, now, id, runId).changes;
          if (changed > 0) rejected.push(id);
          n += changed;
        }
      }
      if (n > 0) {
        const column = decision === 'approve' ? 'n_pending' : 'n_dead';
        this.#stmt(`UPDATE rlm_runs SET n_parked = n_parked - ?, ${column} = ${column} + ?, updated_at = ? WHERE id = ?`).run(n, n, now, runId);
        const released = emptyCounts();
        this.#releaseParents(runId, rejected, now, released);
        if (released.pending > 0) {
          this.#stmt('UPDATE rlm_runs SET n_waiting = n_waiting + ?, n_pending = n_pending + ? WHERE id = ?').run(released.waiting, released.pending, runId);
        }
        const run = this.#stmt('SELECT state, n_parked, pause_reason FROM rlm_runs WHERE id = ?').get(runId) as { state: RunState; n_parked: number; pause_reason: string | null };
        // The last parked node decided ends a pause for parked nodes, never a person's pause (only a resume does).
        if (run.state === 'paused' && run.n_parked === 0 && !isPersonPause(run.pause_reason)) {
          this.#stmt("UPDATE rlm_runs SET state = 'running', pause_reason = NULL WHERE id = ?").run(runId);
        }
        this.#settle(runId, now, true);
      }
      return n;
    });
  }
}

/**
 * Applies one commit's ops inside its transaction. Counter changes (run state counts, parents' unfinished
 * children) are gathered here and written once per row at the end: siblings usually commit together, so
 * a parent is decremented once per group instead of once per child.
 */
class CommitState {
  readonly #store: SqliteStore;
  readonly #workerId: string;
  readonly #now = Date.now();
  readonly rejected: number[] = [];
  readonly duplicates: number[] = [];
  readonly #rejectedSet = new Set<number>();
  /** Nodes created by this commit. */
  readonly #inserted = new Set<number>();
  /** Per run: its node budget and node count, read once and written back at the end. */
  readonly #budgets = new Map<string, { budget: number | null; count: number }>();
  readonly #counts = new Map<string, StateCounts>();
  /** Parent id → how many of its unfinished children finished in this commit. */
  readonly #decrements = new Map<number, number>();
  /** Parents whose counters changed or that started waiting: checked for readiness at the end. */
  readonly #touched = new Set<number>();
  readonly #runs = new Set<string>();
  readonly #pauseRuns = new Map<string, string>();

  constructor(store: SqliteStore, workerId: string) {
    this.#store = store;
    this.#workerId = workerId;
  }

  #delta(runId: string, state: NodeState, n: number): void {
    let counts = this.#counts.get(runId);
    if (!counts) {
      counts = emptyCounts();
      this.#counts.set(runId, counts);
    }
    counts[state] += n;
    this.#runs.add(runId);
  }

  apply(op: CommitOp): void {
    const s = this.#store;
    if (op.kind === 'effect') {
      const ok = s.stmt("SELECT 1 FROM rlm_nodes WHERE id = ? AND epoch = ? AND state = 'running'").get(op.nodeId, op.epoch);
      if (!ok) {
        this.#reject(op.nodeId);
        return;
      }
      s.stmt('INSERT OR IGNORE INTO rlm_effects (run_id, node_key, name, node_id, value, at) VALUES (?, ?, ?, ?, ?, ?)').run(
        op.runId,
        op.nodeKey,
        op.name,
        op.nodeId,
        seal(op.value),
        this.#now,
      );
      return;
    }
    if (op.kind === 'spawn') {
      const row = s.stmt("UPDATE rlm_nodes SET spawned = ?, updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING id").get(
        op.spawned,
        this.#now,
        op.nodeId,
        op.epoch,
      );
      if (!row) {
        this.#reject(op.nodeId);
        return;
      }
      if (failpoints.active) failpoints.hit('spawn.midChunk');
      this.#insertChildren(op.runId, op.nodeId, op.children, op.waits, op.passDead);
      return;
    }
    const o = op.outcome;
    const now = this.#now;
    if (op.merged) {
      // Written in its final state by the insert earlier in this commit; it stands only if that insert happened.
      if (!this.#inserted.has(op.nodeId)) {
        this.#reject(op.nodeId);
        return;
      }
      if (op.children.length > 0) this.#insertChildren(op.runId, op.nodeId, op.children, op.waits, op.passDead);
      if (o.type === 'wait' && op.children.length === 0) this.#touched.add(op.nodeId);
      for (const record of op.emits) {
        s.stmt('INSERT INTO rlm_emits (run_id, node_id, record) VALUES (?, ?, ?)').run(op.runId, op.nodeId, seal(record));
      }
      return;
    }
    if (op.ifReady) {
      this.#applyIfReady(op);
      return;
    }
    let row: { parent_id: number | null; shared: number } | undefined;
    switch (o.type) {
      case 'done':
        row = s
          .stmt(
            "UPDATE rlm_nodes SET state = 'done', result = ?, attempts = ?, owner = NULL, suspect = 0, updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(sealOptional(o.result), op.attempts, now, op.nodeId, op.epoch) as typeof row;
        break;
      case 'wait':
        row = s
          .stmt(
            "UPDATE rlm_nodes SET state = 'waiting', result = ?, attempts = ?, owner = NULL, suspect = 0, updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(sealOptional(o.result), op.attempts, now, op.nodeId, op.epoch) as typeof row;
        break;
      case 'retry':
        row = s
          .stmt(
            "UPDATE rlm_nodes SET state = 'pending', attempts = ?, owner = NULL, available_at = ?, errors = json_insert(COALESCE(errors, '[]'), '$[#]', json(?)), updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(op.attempts, o.availableAt, errorJson(o.error), now, op.nodeId, op.epoch) as typeof row;
        break;
      case 'dead':
        row = s
          .stmt(
            "UPDATE rlm_nodes SET state = 'dead', attempts = ?, owner = NULL, errors = json_insert(COALESCE(errors, '[]'), '$[#]', json(?)), updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(op.attempts, errorJson(o.error), now, op.nodeId, op.epoch) as typeof row;
        break;
      case 'park':
        row = s
          .stmt(
            "UPDATE rlm_nodes SET state = 'parked', attempts = ?, owner = NULL, park_reason = ?, updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(op.attempts, o.reason, now, op.nodeId, op.epoch) as typeof row;
        break;
      case 'release':
        row = s
          .stmt(
            "UPDATE rlm_nodes SET state = 'pending', owner = NULL, epoch = epoch + 1, attempts = ?, available_at = ?, updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(op.attempts, o.availableAt ?? 0, now, op.nodeId, op.epoch) as typeof row;
        break;
    }
    if (!row) {
      this.#reject(op.nodeId);
      return;
    }
    const newState: NodeState =
      o.type === 'retry' || o.type === 'release' ? 'pending' : o.type === 'wait' ? 'waiting' : o.type === 'park' ? 'parked' : o.type;
    this.#delta(op.runId, 'running', -1);
    this.#delta(op.runId, newState, 1);
    if (o.type === 'park' && o.pauseRun) this.#pauseRuns.set(op.runId, o.reason);
    if (op.children.length > 0) this.#insertChildren(op.runId, op.nodeId, op.children, op.waits, op.passDead);
    if (o.type === 'wait' && op.children.length === 0) this.#touched.add(op.nodeId);
    for (const record of op.emits) {
      s.stmt('INSERT INTO rlm_emits (run_id, node_id, record) VALUES (?, ?, ?)').run(op.runId, op.nodeId, seal(record));
    }
    if (op.waits && (o.type === 'done' || (o.type === 'dead' && op.passDead))) this.#finished(op.nodeId, row.parent_id, row.shared === 1);
  }

  /** A combine run ahead of the store's readiness (StepOp.ifReady): done now if nothing it waits on is left. */
  #applyIfReady(op: StepOp): void {
    const s = this.#store;
    const o = op.outcome;
    const row = s.stmt("SELECT parent_id, shared, pending_children FROM rlm_nodes WHERE id = ? AND epoch = ? AND state = 'waiting'").get(op.nodeId, op.epoch) as
      | { parent_id: number | null; shared: number; pending_children: number }
      | undefined;
    if (o.type !== 'done' || !row || row.pending_children - (this.#decrements.get(op.nodeId) ?? 0) > 0) {
      this.#reject(op.nodeId);
      return;
    }
    s.stmt("UPDATE rlm_nodes SET state = 'done', phase = 'combine', result = ?, attempts = ?, pending_children = 0, owner = NULL, suspect = 0, updated_at = ? WHERE id = ?").run(
      sealOptional(o.result),
      op.attempts,
      this.#now,
      op.nodeId,
    );
    this.#decrements.delete(op.nodeId);
    this.#delta(op.runId, 'waiting', -1);
    this.#delta(op.runId, 'done', 1);
    for (const record of op.emits) s.stmt('INSERT INTO rlm_emits (run_id, node_id, record) VALUES (?, ?, ?)').run(op.runId, op.nodeId, seal(record));
    if (op.waits) this.#finished(op.nodeId, row.parent_id, row.shared === 1);
  }

  #reject(nodeId: number): void {
    if (!this.#rejectedSet.has(nodeId)) {
      this.#rejectedSet.add(nodeId);
      this.rejected.push(nodeId);
    }
  }

  /** A node reached its end: each parent waiting on it has one unfinished child fewer. */
  #finished(nodeId: number, parentId: number | null, shared: boolean): void {
    if (parentId !== null) this.#decrements.set(parentId, (this.#decrements.get(parentId) ?? 0) + 1);
    if (shared) {
      for (const edge of this.#store.stmt('SELECT parent_id FROM rlm_edges WHERE child_id = ?').all(nodeId) as { parent_id: number }[]) {
        this.#decrements.set(edge.parent_id, (this.#decrements.get(edge.parent_id) ?? 0) + 1);
      }
    }
  }

  #insertChildren(runId: string, parentId: number, children: readonly NewNode[], waits: boolean, passDead: boolean): void {
    const s = this.#store;
    const now = this.#now;
    const order = s.orderOf(runId);
    let budget = this.#budgets.get(runId);
    if (!budget) {
      const row = s.stmt('SELECT node_budget, node_count FROM rlm_runs WHERE id = ?').get(runId) as { node_budget: number | null; node_count: number };
      budget = { budget: row.node_budget, count: row.node_count };
      this.#budgets.set(runId, budget);
    }
    let unfinished = 0;
    const insertKeyed = s.stmt(`${INSERT_NODES}${INSERT_ROW} ON CONFLICT (run_id, key) WHERE keyed = 1 DO NOTHING`);
    const batch: unknown[] = [];
    const plain: unknown[] = [];
    const findKeyed = s.stmt('SELECT id, state, parent_id FROM rlm_nodes WHERE run_id = ? AND key = ? AND keyed = 1');
    /** Links a keyed child that exists already to this parent (a memoised DAG); returns whether it is unfinished. */
    const share = (child: NewNode, existing: { id: number; state: NodeState; parent_id: number | null }): boolean => {
      this.duplicates.push(child.id);
      // A key this parent lists twice is one child of it: counted and linked once, or it would wait forever
      // for a second completion that never comes.
      if (existing.parent_id === parentId) return false;
      if (s.stmt('INSERT OR IGNORE INTO rlm_edges (parent_id, child_id, ord) VALUES (?, ?, ?)').run(parentId, existing.id, child.ord).changes === 0) return false;
      s.stmt('UPDATE rlm_nodes SET shared = 1 WHERE id = ? AND shared = 0').run(existing.id);
      return waits && existing.state !== 'done' && !(existing.state === 'dead' && passDead);
    };
    type Existing = { id: number; state: NodeState; parent_id: number | null };
    for (const child of children) {
      // The worker saw this key before: look it up first rather than fail an insert.
      const known = child.keyed && child.known ? (findKeyed.get(runId, child.key) as Existing | undefined) : undefined;
      if (known) {
        if (share(child, known)) unfinished++;
        continue;
      }
      let state: NodeState = child.state;
      let parkReason: string | null = null;
      // A child whose step ran already (born and finished within its parent's group) is kept as it is: parking
      // it now would leave its results, children and its parent's combine built on a node that never ran.
      if (budget.budget !== null && budget.count >= budget.budget && (state === 'pending' || state === 'running')) {
        state = 'parked';
        parkReason = `node budget of ${budget.budget} reached`;
        this.#pauseRuns.set(runId, parkReason);
      } else if (state === 'parked') {
        parkReason = child.error?.message ?? 'parked';
      }
      const owner = state === 'running' ? this.#workerId : null;
      const orderKey = order === 'dfs' ? -child.id : child.id;
      const epoch = state === 'running' || state === 'done' || state === 'waiting' ? 1 : 0;
      const result = state === 'done' || state === 'waiting' ? sealOptional(child.result) : null;
      const attempts = child.attempts ?? 0;
      let created = true;
      if (!child.keyed && child.priority === 0 && child.context === null && child.traceparent === null && parkReason === null && !child.error && !child.availableAt) {
        // The common child, with fewer values to bind (see PLAIN_ROW).
        plain.push(child.id, runId, parentId, child.ord, child.key, child.depth, orderKey, child.version, state, seal(child.input), owner, epoch, result, attempts, now, now);
      } else {
        const params = [
          child.id,
          runId,
          parentId,
          child.ord,
          child.key,
          child.keyed ? 1 : 0,
          child.depth,
          child.priority,
          orderKey,
          child.version,
          state,
          seal(child.input),
          sealOptional(child.context),
          owner,
          epoch,
          parkReason,
          child.error ? `[${errorJson(child.error)}]` : null,
          child.traceparent,
          result,
          attempts,
          child.availableAt ?? 0,
          now,
          now,
        ];
        // Unkeyed children cannot conflict: they wait for the multi-row INSERTs below.
        if (!child.keyed) batch.push(...params);
        else created = insertKeyed.run(...params).changes === 1;
      }
      if (created) {
        budget.count++;
        this.#inserted.add(child.id);
        this.#delta(runId, state, 1);
        if (state !== 'done' && !(state === 'dead' && passDead)) unfinished++;
        continue;
      }
      // A keyed child that exists already: this parent shares it.
      if (share(child, findKeyed.get(runId, child.key) as Existing)) unfinished++;
    }
    s.insertNodes(plain, 'plain');
    s.insertNodes(batch, 'all');
    if (waits && unfinished > 0) {
      s.stmt('UPDATE rlm_nodes SET pending_children = pending_children + ? WHERE id = ?').run(unfinished, parentId);
    } else if (waits) {
      // Every child finished already (or was shared and done): the parent may be ready for its combine now.
      this.#touched.add(parentId);
    }
  }

  finish(): CommitResult {
    const s = this.#store;
    const now = this.#now;
    for (const [parentId, n] of this.#decrements) {
      const row = s.stmt('UPDATE rlm_nodes SET pending_children = pending_children - ? WHERE id = ? RETURNING pending_children, state').get(n, parentId) as
        | { pending_children: number; state: NodeState }
        | undefined;
      if (row && row.pending_children <= 0 && row.state === 'waiting') this.#touched.add(parentId);
    }
    const ready: LeasedNode[] = [];
    for (const parentId of this.#touched) {
      const row = s
        .stmt(
          `UPDATE rlm_nodes SET state = 'running', owner = ?, epoch = epoch + 1, phase = 'combine', suspect = 0, attempts = 0, updated_at = ?
           WHERE id = ? AND state = 'waiting' AND pending_children <= 0 RETURNING ${LEASED_COLUMNS}`,
        )
        .get(this.#workerId, now, parentId) as Row | undefined;
      if (row) {
        const leased = leasedFromRow(row);
        this.#delta(leased.runId, 'waiting', -1);
        this.#delta(leased.runId, 'running', 1);
        ready.push(leased);
      }
    }
    for (const [runId, budget] of this.#budgets) s.stmt('UPDATE rlm_runs SET node_count = ? WHERE id = ?').run(budget.count, runId);
    const frontier: Record<string, number> = {};
    for (const [runId, c] of this.#counts) {
      const row = s
        .stmt(
          `UPDATE rlm_runs SET n_pending = n_pending + ?, n_running = n_running + ?, n_waiting = n_waiting + ?, n_done = n_done + ?,
           n_dead = n_dead + ?, n_parked = n_parked + ?, updated_at = ? WHERE id = ? RETURNING n_pending`,
        )
        .get(c.pending, c.running, c.waiting, c.done, c.dead, c.parked, now, runId) as { n_pending: number } | undefined;
      if (row) frontier[runId] = row.n_pending;
    }
    for (const [runId, reason] of this.#pauseRuns) {
      s.stmt("UPDATE rlm_runs SET state = 'paused', pause_reason = ?, updated_at = ? WHERE id = ? AND state = 'running'").run(reason, now, runId);
    }
    const finishedRuns: string[] = [];
    const runStates: Record<string, RunState> = {};
    for (const runId of this.#runs) {
      const run = s.stmt('SELECT state FROM rlm_runs WHERE id = ?').get(runId) as { state: RunState } | undefined;
      // A node names a run that does not exist: the file was damaged outside rlm.
      if (!run) throw new StoreCorruptError(`The store ${s.path} is damaged: a node names run ${JSON.stringify(runId)}, which it does not hold.`);
      const before = run.state;
      const after = s.settle(runId, now) ?? before;
      runStates[runId] = after;
      if (before === 'running' && after !== 'running') finishedRuns.push(runId);
    }
    const seq = s.bumpMeta('commit_seq', 1);
    return { rejected: this.rejected, ready, finishedRuns, duplicates: this.duplicates, seq, frontier, runStates };
  }
}

/**
 * The waiting nodes reachable from a root (`?`) through waiting nodes, as parent → child pairs: what a stalled
 * run's cycle search walks. Through first parents (rlm_nodes_parent) and shared edges (rlm_edges' key).
 */
const WAITING_EDGES = `
WITH RECURSIVE w(id) AS (
  SELECT id FROM rlm_nodes WHERE id = ? AND state = 'waiting'
  UNION SELECT c.id FROM w JOIN rlm_nodes c ON c.parent_id = w.id WHERE c.state = 'waiting'
  UNION SELECT e.child_id FROM w JOIN rlm_edges e ON e.parent_id = w.id JOIN rlm_nodes c ON c.id = e.child_id WHERE c.state = 'waiting'
)
SELECT w.id AS parent, c.id AS child FROM w JOIN rlm_nodes c ON c.parent_id = w.id WHERE c.state = 'waiting'
UNION ALL
SELECT w.id, e.child_id FROM w JOIN rlm_edges e ON e.parent_id = w.id JOIN rlm_nodes c ON c.id = e.child_id WHERE c.state = 'waiting'`;

const INSERT_NODES =
  'INSERT INTO rlm_nodes (id, run_id, parent_id, ord, key, keyed, depth, priority, order_key, version, state, input, context, owner, epoch, park_reason, errors, traceparent, result, attempts, available_at, created_at, updated_at) VALUES ';
const INSERT_ROW = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
const INSERT_ROW_PARAMS = 23;
const INSERT_BATCH = 16;
/** The common child: unkeyed, priority 0, no context, trace, park reason, error or timer. Fewer values to bind. */
const INSERT_PLAIN =
  'INSERT INTO rlm_nodes (id, run_id, parent_id, ord, key, depth, order_key, version, state, input, owner, epoch, result, attempts, created_at, updated_at) VALUES ';
const PLAIN_ROW = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
const PLAIN_ROW_PARAMS = 16;

/** How long opening a store waits for a lock another process holds, in milliseconds. */
const OPEN_BUSY_MS = 3_000;

/**
 * Creates the folder of a store and its missing parents, one level at a time. (`mkdirSync` with `recursive`
 * loops forever where a parent cannot hold folders, e.g. under /proc.) A folder that cannot be made is a
 * configuration error: the path is wrong or not writable.
 */
function makeFolder(dir: string, store: string): void {
  let stat: ReturnType<typeof statSync> | undefined;
  try {
    stat = statSync(dir);
  } catch {
    stat = undefined;
  }
  if (stat?.isDirectory()) return;
  const fail = (error: unknown) => {
    const code = (error as { code?: unknown })?.code;
    return new ConfigError(
      `Cannot create the folder ${dir} of the store ${store} (${(error as Error).message.startsWith(String(code)) ? (error as Error).message : `${String(code)}: ${(error as Error).message}`}). ` +
        'Choose a path in a folder this user may write, with --store sqlite:PATH (or RLM_STORE).',
      { cause: error },
    );
  };
  if (stat) throw fail(Object.assign(new Error(`${dir} is not a folder`), { code: 'ENOTDIR' }));
  const parent = dirname(dir);
  if (parent !== dir) makeFolder(parent, store);
  try {
    mkdirSync(dir);
  } catch (error) {
    if ((error as { code?: unknown })?.code === 'EEXIST' && statSync(dir).isDirectory()) return;
    throw fail(error);
  }
}

/** An effect's journaled value, checked against its checksum. */
function openEffect(row: Row): Payload {
  return open(row.value, { table: 'rlm_effects', column: 'value', row }) ?? 'null';
}

/** rlm's schema as its migrations create it, built once in memory. */
let expectedSchema: string[] | undefined;

function loadBetterSqlite3(): new (path: string, options?: Record<string, unknown>) => SqliteDatabase {
  const require = createRequire(import.meta.url);
  return require('better-sqlite3') as new (path: string, options?: Record<string, unknown>) => SqliteDatabase;
}

