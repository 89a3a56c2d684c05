import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import {
  ConfigError,
  NotFoundError,
  StoreCorruptError,
  StoreIoError,
  StoreTooNewError,
  StoreUnavailableError,
} from '../../engine/errors.js';
import { failpoints } from '../../failpoints.js';
import * as shared from '../rows.js';
import { type Columns, emptyCounts, LEASED_COLUMNS, type Row, workerFromRow } from '../rows.js';
import type {
  ClaimFilter,
  CommitOp,
  CommitResult,
  EffectRecord,
  EmitRecord,
  ErrorEntry,
  LeasedNode,
  NewNode,
  NewRun,
  NodeRecord,
  NodeState,
  Payload,
  RunCode,
  RunRecord,
  RunState,
  StateCounts,
  Store,
  StoreCapabilities,
  WorkerInfo,
  WorkerRecord,
} from '../store.js';
import { MIGRATIONS, SCHEMA_VERSION } from './schema.js';

/** The part of better-sqlite3's Statement that SqliteStore uses. */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

/** The part of better-sqlite3's Database that SqliteStore uses. */
export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement;
  exec(sql: string): unknown;
  pragma(sql: string, options?: { simple?: boolean }): unknown;
  transaction<F extends (...args: never[]) => unknown>(fn: F): F & { immediate: F };
  backup?(destination: string): Promise<unknown>;
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

function parseErrors(text: unknown): ErrorEntry[] {
  if (typeof text !== 'string' || text === '') return [];
  try {
    const parsed: unknown = JSON.parse(text);
    return Array.isArray(parsed) ? (parsed as ErrorEntry[]) : [];
  } catch {
    return [];
  }
}

/** Payloads are TEXT (JSON) or BLOB (bytes), read as they are; errors are JSON text. */
const COLUMNS: Columns = { payload: (value) => (value as Payload | null) ?? null, errors: parseErrors };

const leasedFromRow = (row: Row): LeasedNode => shared.leasedFromRow(row, COLUMNS);
const nodeFromRow = (row: Row): NodeRecord => shared.nodeFromRow(row, COLUMNS);
const runFromRow = (row: Row): RunRecord => shared.runFromRow(row, COLUMNS);

/** Maps a driver error to the RlmError a caller can act on. Disk errors are fatal for the connection. */
function classify(error: unknown, path: string): unknown {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string') return error;
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new StoreCorruptError(
      `The store file ${path} is damaged or is not an rlm store (${code}). rlm will not run on it: ` +
        'restore it from an `rlm snapshot` copy, or move it aside to start afresh.',
      { cause: error },
    );
  }
  if (code === 'SQLITE_CONSTRAINT_NOTNULL') {
    // rlm never writes NULL where its schema forbids one: a row that holds one (so that `epoch + 1` is NULL)
    // was damaged outside rlm.
    return new StoreCorruptError(
      `The store file ${path} is damaged: a stored row holds an empty value where rlm never writes one (${(error as Error).message}). rlm will not run on it: ` +
        'restore it from an `rlm snapshot` copy, or move it aside to start afresh.',
      { cause: error },
    );
  }
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED') {
    return new StoreUnavailableError(
      `The store file ${path} stayed locked by another process past the busy timeout (${code}): a worker frozen inside a write (SIGSTOP, a debugger, a full disk)? ` +
        'This write did not happen (committed work is safe); run the same command again once that process has gone on or been stopped.',
      { cause: error },
    );
  }
  if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_FULL' || code === 'SQLITE_READONLY' || code.startsWith('SQLITE_CANTOPEN')) {
    return new StoreIoError(
      `The store file ${path} could not be written (${code}). rlm stopped rather than go on after a disk error: ` +
        'free space or fix permissions, then run the same command again to resume.',
      { cause: error },
    );
  }
  return error;
}

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
    try {
      mkdirSync(dirname(path), { recursive: true });
    } catch (error) {
      throw new StoreUnavailableError(`Cannot create the folder of the store ${path}: ${(error as Error).message}`, { cause: error });
    }
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
      db.pragma(`busy_timeout = ${this.#config.busyTimeoutMs ?? 10_000}`);
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
    if (error instanceof StoreCorruptError || error instanceof StoreIoError) return error;
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
    try {
      this.#checkVersion();
      for (const migration of MIGRATIONS) {
        this.#write(() => {
          const applied = this.db.prepare('SELECT 1 FROM rlm_migrations WHERE version = ?').get(migration.version);
          if (applied) return;
          this.db.prepare('INSERT INTO rlm_migrations (version, applied_at) VALUES (?, ?)').run(migration.version, Date.now());
          this.db.exec(migration.sql);
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
        for (const migration of MIGRATIONS) memory.exec(migration.sql);
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
    this.#write(() => {
      if (this.#stmt('SELECT 1 FROM rlm_runs WHERE id = ?').get(run.id)) {
        throw new ConfigError(`A run with id ${run.id} exists already; resume it with --run ${run.id}, or choose another id.`);
      }
      const rootId = this.#allocate(1);
      this.#stmt(
        `INSERT INTO rlm_nodes (id, run_id, parent_id, ord, key, keyed, depth, priority, order_key, version, state, input, context, traceparent, created_at, updated_at)
         VALUES (?, ?, NULL, 0, ?, ?, 0, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)`,
      ).run(rootId, run.id, run.rootKey, run.rootKeyed ? 1 : 0, run.rootPriority, run.order === 'dfs' ? -rootId : rootId, run.taskVersion, run.input, run.context, run.traceparent, now, now);
      this.#stmt(
        `INSERT INTO rlm_runs (id, task, task_version, state, input, context, frontier_order, node_budget, node_count, root_id, n_pending, created_at, updated_at, pass_dead)
         VALUES (?, ?, ?, 'running', ?, ?, ?, ?, 1, ?, 1, ?, ?, ?)`,
      ).run(run.id, run.task, run.taskVersion, run.input, run.context, run.order, run.nodeBudget, rootId, now, now, run.passDead ? 1 : 0);
    });
    const created = await this.getRun(run.id);
    if (!created) throw new Error(`Run ${run.id} vanished right after it was created.`);
    return created;
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    const row = this.#read(() => this.#stmt('SELECT * FROM rlm_runs WHERE id = ?').get(runId) as Row | undefined);
    return row ? runFromRow(row) : undefined;
  }

  async listRuns(limit = 100): Promise<RunRecord[]> {
    return this.#read(() => (this.#stmt('SELECT * FROM rlm_runs ORDER BY created_at DESC LIMIT ?').all(limit) as Row[]).map(runFromRow));
  }

  async setRunState(runId: string, state: RunState, options: { from?: readonly RunState[]; reason?: string | null } = {}): Promise<boolean> {
    return this.#write(() => {
      const row = this.#stmt('SELECT state FROM rlm_runs WHERE id = ?').get(runId) as { state: RunState } | undefined;
      if (!row) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
      if (options.from && !options.from.includes(row.state)) return false;
      const now = Date.now();
      this.#stmt('UPDATE rlm_runs SET state = ?, pause_reason = ?, updated_at = ? WHERE id = ?').run(state, options.reason ?? null, now, runId);
      return true;
    });
  }

  async settleRun(runId: string): Promise<RunRecord | undefined> {
    this.#write(() => this.#settle(runId, Date.now(), true));
    return this.getRun(runId);
  }

  /** Decides whether a run has ended; `reopen` lets a finished run run again once it has work (after a redrive). */
  #settle(runId: string, now: number, reopen: boolean): RunState | undefined {
    const run = this.#stmt('SELECT * FROM rlm_runs WHERE id = ?').get(runId) as Row | undefined;
    if (!run) return undefined;
    const state = run.state as RunState;
    if (state === 'cancelled') return state;
    const active = (run.n_pending as number) + (run.n_running as number);
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
      this.#stmt('UPDATE rlm_runs SET code_version = ?, code_hash = ?, pass_dead = COALESCE(?, pass_dead) WHERE id = ?').run(
        code.version,
        code.hash,
        code.passDead === undefined ? null : code.passDead ? 1 : 0,
        runId,
      );
      return row.code_version === null || row.code_hash === null ? null : { version: row.code_version, hash: row.code_hash };
    });
  }

  async registerWorker(info: WorkerInfo, leaseMs: number): Promise<void> {
    const now = Date.now();
    this.#write(() => {
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

  async listWorkers(): Promise<WorkerRecord[]> {
    return this.#read(() => (this.#stmt('SELECT * FROM rlm_workers ORDER BY started_at DESC').all() as Row[]).map(workerFromRow));
  }

  async takeBack(options: { deadIds?: readonly string[]; expiredBefore?: number; blame?: readonly { id: number; epoch: number }[] }): Promise<number> {
    return this.#write(() => {
      const now = Date.now();
      for (const node of options.blame ?? []) {
        this.#stmt("UPDATE rlm_nodes SET attempts = attempts + 1 WHERE id = ? AND epoch = ? AND state = 'running'").run(node.id, node.epoch);
      }
      const victims: string[] = [];
      for (const id of options.deadIds ?? []) {
        if (this.#stmt("UPDATE rlm_workers SET state = 'dead' WHERE id = ? AND state = 'alive'").run(id).changes === 1) victims.push(id);
      }
      if (options.expiredBefore !== undefined) {
        const expired = this.#stmt("UPDATE rlm_workers SET state = 'dead' WHERE state = 'alive' AND lease_until < ? RETURNING id").all(
          options.expiredBefore,
        ) as { id: string }[];
        for (const row of expired) victims.push(row.id);
      }
      if (failpoints.active && victims.length > 0) failpoints.hit('takeback.afterMarkDead');
      let taken = 0;
      const deltas = new Map<string, number>();
      for (const id of victims) {
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
      () => this.#stmt('SELECT name, value, node_id, at FROM rlm_effects WHERE run_id = ? AND node_key = ? AND name = ?').get(runId, nodeKey, name) as Row | undefined,
    );
    return row ? { name: row.name as string, value: row.value as Payload, nodeId: row.node_id as number, at: row.at as number } : undefined;
  }

  async listEffects(nodeId: number): Promise<EffectRecord[]> {
    return this.#read(() =>
      (this.#stmt('SELECT name, value, node_id, at FROM rlm_effects WHERE node_id = ? ORDER BY at').all(nodeId) as Row[]).map((row) => ({
        name: row.name as string,
        value: row.value as Payload,
        nodeId: row.node_id as number,
        at: row.at as number,
      })),
    );
  }

  async childResults(nodeId: string | number): Promise<Array<{ key: string; state: NodeState; result: Payload | null; error: string | null }>> {
    return this.#read(() =>
      (
        this.#stmt(
          `SELECT key, state, result, errors FROM (
             SELECT ord, id, key, state, result, errors FROM rlm_nodes WHERE parent_id = ?
             UNION ALL
             SELECT e.ord, n.id, n.key, n.state, n.result, n.errors FROM rlm_edges e JOIN rlm_nodes n ON n.id = e.child_id WHERE e.parent_id = ?
           ) ORDER BY ord, id`,
        ).all(nodeId, nodeId) as Row[]
      ).map((row) => {
        const errors = parseErrors(row.errors);
        return {
          key: row.key as string,
          state: row.state as NodeState,
          result: (row.result as Payload | null) ?? null,
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
      (this.#stmt('SELECT seq, node_id, record FROM rlm_emits WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?').all(runId, afterSeq, limit) as Row[]).map(
        (row) => ({ seq: row.seq as number, nodeId: row.node_id as number, record: row.record as Payload }),
      ),
    );
  }

  async subtreeCounts(nodeId: number): Promise<StateCounts> {
    const rows = this.#read(
      () =>
        this.#stmt(
          `WITH RECURSIVE sub(id) AS (SELECT ? UNION SELECT n.id FROM rlm_nodes n JOIN sub ON n.parent_id = sub.id)
           SELECT n.state AS state, count(*) AS n FROM sub JOIN rlm_nodes n ON n.id = sub.id GROUP BY n.state`,
        ).all(nodeId) as { state: NodeState; n: number }[],
    );
    const counts = emptyCounts();
    for (const row of rows) counts[row.state] = row.n;
    return counts;
  }

  async depthHistogram(runId: string): Promise<Array<{ depth: number; count: number }>> {
    return this.#read(
      () => this.#stmt('SELECT depth, count(*) AS count FROM rlm_nodes WHERE run_id = ? GROUP BY depth ORDER BY depth').all(runId) as { depth: number; count: number }[],
    );
  }

  /** @internal Recounts a run's node states from the rows (tests compare it with the stored counters). */
  recount(runId: string): StateCounts {
    const counts = emptyCounts();
    for (const row of this.#read(() => this.#stmt('SELECT state, count(*) AS n FROM rlm_nodes WHERE run_id = ? GROUP BY state').all(runId) as { state: NodeState; n: number }[])) {
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
      const entry = JSON.stringify({ attempt: 0, message: 'Cancelled with its subtree (`rlm cancel`).', code: 'CANCELLED', stack: null, at: now, worker: 'cli' });
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
      for (const id of this.#heldIds(runId, 'dead', nodeIds)) {
        n += this.#stmt(
          "UPDATE rlm_nodes SET state = 'pending', attempts = 0, suspect = 0, available_at = 0, dropped = 0, owner = NULL, updated_at = ? WHERE id = ? AND run_id = ? AND state = 'dead'",
        ).run(now, id, runId).changes;
      }
      if (n > 0) {
        this.#stmt('UPDATE rlm_runs SET n_dead = n_dead - ?, n_pending = n_pending + ?, updated_at = ? WHERE id = ?').run(n, n, now, runId);
        this.#settle(runId, now, true);
      }
      return n;
    });
  }

  async dropDead(runId: string, nodeIds: readonly number[] | 'all'): Promise<number> {
    return this.#write(() => {
      let n = 0;
      for (const id of this.#heldIds(runId, 'dead', nodeIds)) {
        n += this.#stmt("UPDATE rlm_nodes SET dropped = 1 WHERE id = ? AND run_id = ? AND state = 'dead' AND dropped = 0").run(id, runId).changes;
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
            "UPDATE rlm_nodes SET state = 'pending', fanout_ok = CASE WHEN park_reason LIKE 'fan-out%' THEN 1 ELSE fanout_ok END, park_reason = NULL, updated_at = ? WHERE id = ? AND run_id = ? AND state = 'parked'",
          ).run(now, id, runId).changes;
        } else {
          const entry = JSON.stringify({ attempt: 0, message: 'Rejected by a person (`rlm reject`).', code: 'REJECTED', stack: null, at: now, worker: 'cli' });
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
        const run = this.#stmt('SELECT state, n_parked FROM rlm_runs WHERE id = ?').get(runId) as { state: RunState; n_parked: number };
        if (run.state === 'paused' && run.n_parked === 0) {
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
        op.value,
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
        s.stmt('INSERT INTO rlm_emits (run_id, node_id, record) VALUES (?, ?, ?)').run(op.runId, op.nodeId, record);
      }
      return;
    }
    let row: { parent_id: number | null; shared: number } | undefined;
    switch (o.type) {
      case 'done':
        row = s
          .stmt(
            "UPDATE rlm_nodes SET state = 'done', result = ?, attempts = ?, owner = NULL, suspect = 0, updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(o.result, op.attempts, now, op.nodeId, op.epoch) as typeof row;
        break;
      case 'wait':
        row = s
          .stmt(
            "UPDATE rlm_nodes SET state = 'waiting', result = ?, attempts = ?, owner = NULL, suspect = 0, updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(o.result, op.attempts, now, op.nodeId, op.epoch) as typeof row;
        break;
      case 'retry':
        row = s
          .stmt(
            "UPDATE rlm_nodes SET state = 'pending', attempts = ?, owner = NULL, available_at = ?, errors = json_insert(COALESCE(errors, '[]'), '$[#]', json(?)), updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(op.attempts, o.availableAt, JSON.stringify(o.error), now, op.nodeId, op.epoch) as typeof row;
        break;
      case 'dead':
        row = s
          .stmt(
            "UPDATE rlm_nodes SET state = 'dead', attempts = ?, owner = NULL, errors = json_insert(COALESCE(errors, '[]'), '$[#]', json(?)), updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(op.attempts, JSON.stringify(o.error), now, op.nodeId, op.epoch) as typeof row;
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
            "UPDATE rlm_nodes SET state = 'pending', owner = NULL, epoch = epoch + 1, attempts = ?, updated_at = ? WHERE id = ? AND epoch = ? AND state = 'running' RETURNING parent_id, shared",
          )
          .get(op.attempts, now, op.nodeId, op.epoch) as typeof row;
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
      s.stmt('INSERT INTO rlm_emits (run_id, node_id, record) VALUES (?, ?, ?)').run(op.runId, op.nodeId, record);
    }
    if (op.waits && (o.type === 'done' || (o.type === 'dead' && op.passDead))) this.#finished(op.nodeId, row.parent_id, row.shared === 1);
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
    let cycle: string | null = null;
    const insertKeyed = s.stmt(`${INSERT_NODES}${INSERT_ROW} ON CONFLICT (run_id, key) WHERE keyed = 1 DO NOTHING`);
    const batch: unknown[] = [];
    const plain: unknown[] = [];
    for (const child of children) {
      let state: NodeState = child.state;
      let parkReason: string | null = null;
      if (budget.budget !== null && budget.count >= budget.budget && state !== 'dead' && state !== 'parked') {
        state = 'parked';
        parkReason = `node budget of ${budget.budget} reached`;
        this.#pauseRuns.set(runId, parkReason);
      } else if (state === 'parked') {
        parkReason = child.error?.message ?? 'parked';
      }
      const owner = state === 'running' ? this.#workerId : null;
      const orderKey = order === 'dfs' ? -child.id : child.id;
      const epoch = state === 'running' || state === 'done' || state === 'waiting' ? 1 : 0;
      const result = state === 'done' || state === 'waiting' ? (child.result ?? null) : null;
      const attempts = child.attempts ?? 0;
      let created = true;
      if (!child.keyed && child.priority === 0 && child.context === null && child.traceparent === null && parkReason === null && !child.error) {
        // The common child, with fewer values to bind (see PLAIN_ROW).
        plain.push(child.id, runId, parentId, child.ord, child.key, child.depth, orderKey, child.version, state, child.input, owner, epoch, result, attempts, now, now);
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
          child.input,
          child.context,
          owner,
          epoch,
          parkReason,
          child.error ? JSON.stringify([child.error]) : null,
          child.traceparent,
          result,
          attempts,
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
      // A keyed child that exists already: this parent shares it (a memoised DAG).
      this.duplicates.push(child.id);
      const existing = s.stmt('SELECT id, state, parent_id FROM rlm_nodes WHERE run_id = ? AND key = ? AND keyed = 1').get(runId, child.key) as {
        id: number;
        state: NodeState;
        parent_id: number | null;
      };
      // A key this parent lists twice is one child of it: counted and linked once, or it would wait forever
      // for a second completion that never comes.
      if (existing.parent_id === parentId) continue;
      if (waits && existing.state !== 'done' && isAncestor(s, existing.id, parentId)) {
        cycle = child.key;
        continue;
      }
      if (s.stmt('INSERT OR IGNORE INTO rlm_edges (parent_id, child_id, ord) VALUES (?, ?, ?)').run(parentId, existing.id, child.ord).changes === 0) continue;
      s.stmt('UPDATE rlm_nodes SET shared = 1 WHERE id = ? AND shared = 0').run(existing.id);
      if (waits && existing.state !== 'done' && !(existing.state === 'dead' && passDead)) unfinished++;
    }
    s.insertNodes(plain, 'plain');
    s.insertNodes(batch, 'all');
    if (waits && unfinished > 0) {
      s.stmt('UPDATE rlm_nodes SET pending_children = pending_children + ? WHERE id = ?').run(unfinished, parentId);
    } else if (waits) {
      // Every child finished already (or was shared and done): the parent may be ready for its combine now.
      this.#touched.add(parentId);
    }
    if (cycle !== null) this.#cycle(runId, parentId, cycle, waits && passDead);
  }

  /** A child closes a dependency cycle: waiting would hang, so the parent goes to the dead-letter queue. */
  #cycle(runId: string, parentId: number, key: string, passDead: boolean): void {
    const error: ErrorEntry = {
      attempt: 0,
      message: `Dependency cycle: the child with key ${JSON.stringify(key)} is this node or one of its ancestors; waiting on it would never end.`,
      code: 'CYCLE',
      stack: null,
      at: this.#now,
      worker: this.#workerId,
    };
    const s = this.#store;
    const before = s.stmt('SELECT state, parent_id, shared FROM rlm_nodes WHERE id = ?').get(parentId) as
      | { state: NodeState; parent_id: number | null; shared: number }
      | undefined;
    const changed = s
      .stmt(
        "UPDATE rlm_nodes SET state = 'dead', owner = NULL, errors = json_insert(COALESCE(errors, '[]'), '$[#]', json(?)), updated_at = ? WHERE id = ? AND state IN ('waiting', 'running')",
      )
      .run(JSON.stringify(error), this.#now, parentId).changes;
    const row = changed === 1 && before ? { old: before.state } : undefined;
    if (row) {
      this.#delta(runId, row.old, -1);
      this.#delta(runId, 'dead', 1);
      // Its waiting parents count a dead child as finished when dead children pass; otherwise they would wait forever.
      if (passDead && before) this.#finished(parentId, before.parent_id, before.shared === 1);
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
    for (const runId of this.#runs) {
      const run = s.stmt('SELECT state FROM rlm_runs WHERE id = ?').get(runId) as { state: RunState } | undefined;
      // A node names a run that does not exist: the file was damaged outside rlm.
      if (!run) throw new StoreCorruptError(`The store ${s.path} is damaged: a node names run ${JSON.stringify(runId)}, which it does not hold.`);
      const before = run.state;
      const after = s.settle(runId, now);
      if (before === 'running' && after !== 'running') finishedRuns.push(runId);
    }
    const seq = s.bumpMeta('commit_seq', 1);
    return { rejected: this.rejected, ready, finishedRuns, duplicates: this.duplicates, seq, frontier };
  }
}

const INSERT_NODES =
  'INSERT INTO rlm_nodes (id, run_id, parent_id, ord, key, keyed, depth, priority, order_key, version, state, input, context, owner, epoch, park_reason, errors, traceparent, result, attempts, created_at, updated_at) VALUES ';
const INSERT_ROW = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
const INSERT_ROW_PARAMS = 22;
const INSERT_BATCH = 16;
/** The common child: unkeyed, priority 0, no context, trace, park reason or error. Fewer values to bind. */
const INSERT_PLAIN =
  'INSERT INTO rlm_nodes (id, run_id, parent_id, ord, key, depth, order_key, version, state, input, owner, epoch, result, attempts, created_at, updated_at) VALUES ';
const PLAIN_ROW = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
const PLAIN_ROW_PARAMS = 16;

/** Whether `ancestorId` is `nodeId` or above it, through first parents and shared edges. */
function isAncestor(s: SqliteStore, ancestorId: number, nodeId: number): boolean {
  const seen = new Set<number>();
  const queue = [nodeId];
  while (queue.length > 0) {
    const id = queue.pop() as number;
    if (id === ancestorId) return true;
    if (seen.has(id)) continue;
    seen.add(id);
    const row = s.stmt('SELECT parent_id FROM rlm_nodes WHERE id = ?').get(id) as { parent_id: number | null } | undefined;
    if (row?.parent_id != null) queue.push(row.parent_id);
    for (const edge of s.stmt('SELECT parent_id FROM rlm_edges WHERE child_id = ?').all(id) as { parent_id: number }[]) queue.push(edge.parent_id);
  }
  return false;
}

/** rlm's schema as its migrations create it, built once in memory. */
let expectedSchema: string[] | undefined;

function loadBetterSqlite3(): new (path: string, options?: Record<string, unknown>) => SqliteDatabase {
  const require = createRequire(import.meta.url);
  return require('better-sqlite3') as new (path: string, options?: Record<string, unknown>) => SqliteDatabase;
}
