import { createHash, randomUUID } from 'node:crypto';
import { ConfigError, NotFoundError, RunBusyError, StoreTooNewError } from '../../engine/errors.js';
import { failpoints } from '../../failpoints.js';
import { redactUrl } from '../open.js';
import { counterProblems, type DoctorReport, runDamaged } from '../audit.js';
import { sealError, sealText } from '../checksum.js';
import { CONSTRAINTS } from '../constraints.js';
import { checkValuesPostgres, doctorPostgres } from './doctor.js';
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
  NewRun,
  NodeRecord,
  NodeState,
  Payload,
  RunCode,
  RunFilter,
  RunRecord,
  RunState,
  StateCounts,
  Store,
  StoreCapabilities,
  WorkerInfo,
  WorkerLeases,
  WorkerRecord,
} from '../store.js';
import { cycleError, findCycleClosers } from '../cycles.js';
import { grantGroup } from '../groups.js';
import { COST_EFFECT_PREFIX, costEntry, costOf, decideCharge, payloadText, signalRefused, signalWaitReason } from '../charges.js';
import { isPersonPause, WORKER_RETENTION_MS } from '../store.js';
import { dropRefused } from '../rows.js';
import { PgCommit } from './commit.js';
import {
  countsFromRow,
  emptyCounts,
  errorsOf,
  LEASED_COLUMNS,
  leasedAsText,
  leasedFromRow,
  leasedFromText,
  nodeFromRow,
  payloadOf,
  runFromRow,
  settledState,
  storableError,
  textOf,
  textOfOptional,
  workerFromRow,
} from './rows.js';
import { MIGRATIONS, SCHEMA_VERSION, type Tables, tablesIn } from './schema.js';
import { Listener, type Row, Session, type Transaction } from './session.js';

export interface PostgresStoreConfig {
  /** `postgres://user:password@host:port/database`. The password never appears in errors or `description`. */
  connectionString: string;
  /** Schema that holds rlm's tables; created by `migrate()` when missing. @default 'public' */
  schema?: string;
  /** Connections in this store's pool. Raise it when many engines share one store. @default 10 */
  poolSize?: number;
  /** `application_name` of the sessions, as `pg_stat_activity` shows them. @default 'rlm-worker' */
  applicationName?: string;
  /** How long transient errors (a restart, a dropped connection) are retried before the store gives up, in ms. @default 30_000 */
  retryForMs?: number;
  /** `idle_in_transaction_session_timeout` of the sessions: a stuck session stops holding locks after it, in ms. @default 60_000 */
  idleInTransactionTimeoutMs?: number;
  /** How long to wait for a new connection, in ms. @default 10_000 */
  connectTimeoutMs?: number;
}

/** The clock leases are judged by: the database's, in epoch milliseconds, so workers on skewed hosts agree. */
const DB_NOW = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** Every constraint on a table's rows, as one condition (for the check before a resume). */
const checksOf = (table: string) =>
  CONSTRAINTS.filter((c) => c.table === table && c.postgres)
    .map((c) => `COALESCE((${c.postgres}), true)`)
    .join(' AND ');
const NODE_CHECKS = checksOf('rlm_nodes');
const RUN_CHECKS = checksOf('rlm_runs');
const MIGRATION_LOCK = 0x726c6d; // 'rlm'
/** Commit markers are needed only while a worker resolves a lost COMMIT; older ones are pruned. */
const MARKER_PRUNE_EVERY = 512;

function positiveInteger(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) {
    throw new ConfigError(`Expected \`${name}\` to be an integer >= ${min}, got \`${String(value)}\` (${typeof value}).`);
  }
  return value;
}

/**
 * The shared store: PostgreSQL. Many workers on many machines write at once; commits on one run take turns
 * on the run's row, claims skip each other's rows, leases are judged by the database clock, and a commit whose
 * connection dropped during COMMIT is resolved through its marker row, never applied twice.
 */
export class PostgresStore implements Store {
  readonly capabilities: StoreCapabilities = { concurrentWriters: true, notifications: true };
  readonly description: string;
  readonly schema: string;
  readonly #t: Tables;
  readonly #session: Session;
  readonly #listener: Listener;
  readonly #channel: string;
  #commits = 0;

  constructor(config: PostgresStoreConfig) {
    if (typeof config?.connectionString !== 'string' || config.connectionString === '') {
      throw new ConfigError('Expected `connectionString` to be a postgres:// URL, e.g. postgres://user@127.0.0.1:5432/rlm.');
    }
    const schema = config.schema ?? 'public';
    if (typeof schema !== 'string' || schema === '' || schema.length > 63) {
      throw new ConfigError(`Expected \`schema\` to be a PostgreSQL schema name of 1 to 63 characters, got \`${String(schema)}\`.`);
    }
    this.schema = schema;
    this.#t = tablesIn(schema);
    this.description = `${redactUrl(config.connectionString)}${schema === 'public' ? '' : ` (schema ${schema})`}`;
    this.#session = new Session({
      connectionString: config.connectionString,
      description: this.description,
      poolSize: positiveInteger('poolSize', config.poolSize, 10, 1),
      applicationName: config.applicationName ?? 'rlm-worker',
      retryForMs: positiveInteger('retryForMs', config.retryForMs, 30_000, 0),
      idleInTransactionTimeoutMs: positiveInteger('idleInTransactionTimeoutMs', config.idleInTransactionTimeoutMs, 60_000, 0),
      connectTimeoutMs: positiveInteger('connectTimeoutMs', config.connectTimeoutMs, 10_000, 1),
    });
    // Channel names are identifiers of at most 63 bytes; a long schema name is hashed.
    this.#channel = schema.length <= 50 ? `rlm_work:${schema}` : `rlm_work:${createHash('sha1').update(schema).digest('hex').slice(0, 32)}`;
    this.#listener = new Listener(this.#session, this.#channel);
  }

  #write<T>(body: (tx: Transaction) => Promise<T>): Promise<T> {
    if (failpoints.active) failpoints.hit('store.call');
    return this.#session.write(body);
  }

  #query(text: string, values?: readonly unknown[]): Promise<Row[]> {
    return this.#session.query(text, values);
  }

  async #notify(tx: Transaction, runIds: Iterable<string>): Promise<void> {
    const ids = [...new Set(runIds)];
    if (ids.length > 0) await tx.query('SELECT pg_notify($1, r) FROM unnest($2::text[]) AS r', [this.#channel, ids]);
  }

  async migrate(): Promise<void> {
    const t = this.#t;
    await this.#write(async (tx) => {
      // Several workers may start at once: they take turns here, and each finds the others' work done.
      await tx.begin(` SELECT pg_advisory_xact_lock(${MIGRATION_LOCK}, hashtext(${tx.literal(this.schema)}));`);
      const exists = await tx.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [this.schema]);
      if (exists.length === 0) await tx.query(`CREATE SCHEMA ${t.schema}`);
      await tx.query(`CREATE TABLE IF NOT EXISTS ${t.migrations} (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`);
      const applied = new Set((await tx.query(`SELECT version FROM ${t.migrations}`)).map((row) => row.version as number));
      const newest = Math.max(0, ...applied);
      if (newest > SCHEMA_VERSION) {
        throw new StoreTooNewError(
          `The store ${this.description} has schema version ${newest}, written by a newer rlm; this rlm knows up to ${SCHEMA_VERSION}. Upgrade rlm to use it.`,
        );
      }
      for (const migration of MIGRATIONS) {
        if (applied.has(migration.version)) continue;
        await tx.query(`INSERT INTO ${t.migrations} (version, applied_at) VALUES ($1, $2)`, [migration.version, Date.now()]);
        await tx.query(`SET LOCAL search_path TO ${t.schema}`);
        if (migration.sql.trim() !== '') await tx.client.query(migration.sql);
        if (migration.data === 'seal') await sealStoredValues(tx, t);
      }
    });
  }

  async close(): Promise<void> {
    await this.#listener.close();
    await this.#session.close();
  }

  async allocateIds(count: number): Promise<number> {
    if (!Number.isInteger(count) || count < 1) throw new ConfigError(`Expected \`count\` to be an integer >= 1, got \`${String(count)}\`.`);
    // One statement: a retry after a lost answer only skips a block of ids, which is harmless.
    const rows = await this.#query(`UPDATE ${this.#t.meta} SET value = value + $1 WHERE key = 'next_node_id' RETURNING value - $1 AS first`, [count]);
    return rows[0]?.first as number;
  }

  async createRun(run: NewRun): Promise<RunRecord> {
    const t = this.#t;
    const now = Date.now();
    await this.#write(async (tx) => {
      await tx.begin();
      const rows = await tx.query(
        `WITH id AS (UPDATE ${t.meta} SET value = value + 1 WHERE key = 'next_node_id' RETURNING value - 1 AS root_id),
         run AS (
           INSERT INTO ${t.runs} (id, task, task_version, state, input, context, frontier_order, node_budget, node_count, root_id, n_pending, created_at, updated_at, pass_dead, estimate, cost_budget)
           SELECT $1, $2, $3, 'running', $4, $5, $6, $7, 1, id.root_id, 1, $8, $8, $13, $14::bigint, $15::double precision FROM id
           ON CONFLICT (id) DO NOTHING RETURNING root_id)
         INSERT INTO ${t.nodes} (id, run_id, parent_id, ord, key, keyed, depth, priority, order_key, version, state, input, context, traceparent, created_at, updated_at)
         SELECT run.root_id, $1, NULL, 0, $9, $12, 0, $10, CASE WHEN $6 = 'dfs' THEN -run.root_id ELSE run.root_id END, $3, 'pending', $4, $5, $11, $8, $8 FROM run
         RETURNING id`,
        [run.id, run.task, run.taskVersion, textOf(run.input), textOfOptional(run.context), run.order, run.nodeBudget, now, run.rootKey, run.rootPriority, run.traceparent, run.rootKeyed, run.passDead, run.estimate ?? null, run.costBudget ?? null],
      );
      if (rows.length === 0) {
        throw new ConfigError(`A run with id ${run.id} exists already; resume it with --run ${run.id}, or choose another id.`);
      }
      await this.#notify(tx, [run.id]);
    });
    const created = await this.getRun(run.id);
    if (!created) throw new Error(`Run ${run.id} vanished right after it was created.`);
    return created;
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    const rows = await this.#query(`SELECT * FROM ${this.#t.runs} WHERE id = $1`, [runId]);
    return rows[0] ? runFromRow(rows[0]) : undefined;
  }

  async listRuns(limit = 100, filter: RunFilter = {}): Promise<RunRecord[]> {
    const rows = await this.#query(
      `SELECT * FROM ${this.#t.runs} WHERE ($3::text IS NULL OR state = $3) ORDER BY created_at DESC, id LIMIT $1 OFFSET $2`,
      [limit, filter.offset ?? 0, filter.state ?? null],
    );
    return rows.map(runFromRow);
  }

  async countRuns(filter: RunFilter = {}): Promise<number> {
    const rows = await this.#query(`SELECT count(*)::int AS n FROM ${this.#t.runs} WHERE ($1::text IS NULL OR state = $1)`, [filter.state ?? null]);
    return rows[0]?.n as number;
  }

  /** Locks a run's row for the rest of the transaction; commits on the run wait until it ends. */
  async #lockRun(tx: Transaction, runId: string): Promise<Row> {
    const rows = await tx.begin(` SELECT * FROM ${this.#t.runs} WHERE id = ${tx.literal(runId)} FOR UPDATE;`);
    const row = rows[0]?.rows[0];
    if (!row) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
    return row;
  }

  async setRunState(runId: string, state: RunState, options: { from?: readonly RunState[]; reason?: string | null } = {}): Promise<boolean> {
    return this.#write(async (tx) => {
      const row = await this.#lockRun(tx, runId);
      if (options.from && !options.from.includes(row.state as RunState)) return false;
      await tx.query(
        `UPDATE ${this.#t.runs} SET state = $2, pause_reason = $3, finished_at = CASE WHEN $2 = 'cancelled' THEN $4 ELSE finished_at END, updated_at = $4 WHERE id = $1`,
        [runId, state, options.reason ?? null, Date.now()],
      );
      if (state === 'running') await this.#notify(tx, [runId]);
      return true;
    });
  }

  async setNodeBudget(runId: string, budget: number | null): Promise<number> {
    const [row] = await this.#query(`UPDATE ${this.#t.runs} SET node_budget = $2, updated_at = $3 WHERE id = $1 RETURNING node_count`, [runId, budget, Date.now()]);
    if (!row) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
    return row.node_count as number;
  }

  /** Nodes of a locked run leased by workers still alive: deleting them would pull work from under those workers. */
  async #liveLeases(tx: Transaction, runId: string): Promise<number> {
    const t = this.#t;
    const [row] = await tx.query(
      `SELECT count(*)::integer AS n FROM ${t.nodes} WHERE state = 'running' AND run_id = $1
         AND owner IN (SELECT id FROM ${t.workers} WHERE state = 'alive' AND lease_until >= ${DB_NOW})`,
      [runId],
    );
    return (row?.n as number) ?? 0;
  }

  /** Deletes everything a locked run owns but its row; returns the number of nodes deleted. */
  async #deleteRunContents(tx: Transaction, runId: string): Promise<number> {
    const t = this.#t;
    await tx.query(`DELETE FROM ${t.edges} WHERE parent_id IN (SELECT id FROM ${t.nodes} WHERE run_id = $1)`, [runId]);
    await tx.query(`DELETE FROM ${t.effects} WHERE run_id = $1`, [runId]);
    await tx.query(`DELETE FROM ${t.emits} WHERE run_id = $1`, [runId]);
    await tx.query(`DELETE FROM ${t.groupLeases} WHERE run_id = $1`, [runId]);
    await tx.query(`DELETE FROM ${t.groupBuckets} WHERE run_id = $1`, [runId]);
    await tx.query(`DELETE FROM ${t.signals} WHERE run_id = $1`, [runId]);
    const [row] = await tx.query(`WITH gone AS (DELETE FROM ${t.nodes} WHERE run_id = $1 RETURNING 1) SELECT count(*)::integer AS n FROM gone`, [runId]);
    return (row?.n as number) ?? 0;
  }

  async deleteRun(runId: string, options: { force?: boolean } = {}): Promise<number> {
    return this.#write(async (tx) => {
      await this.#lockRun(tx, runId);
      const leased = await this.#liveLeases(tx, runId);
      if (leased > 0 && !options.force) throw new RunBusyError(runId, leased, 'deleting it');
      const n = await this.#deleteRunContents(tx, runId);
      await tx.query(`DELETE FROM ${this.#t.runs} WHERE id = $1`, [runId]);
      return n;
    });
  }

  async purgeRuns(finishedBefore: number): Promise<string[]> {
    const finished = `state IN ('completed', 'failed', 'cancelled') AND COALESCE(finished_at, updated_at) < $1`;
    const doomed = await this.#query(`SELECT id FROM ${this.#t.runs} WHERE ${finished} ORDER BY created_at`, [finishedBefore]);
    const purged: string[] = [];
    // One transaction per run, so a large purge never holds many runs' locks at once.
    for (const { id } of doomed) {
      const gone = await this.#write(async (tx) => {
        await tx.begin();
        const [row] = await tx.query(`SELECT 1 FROM ${this.#t.runs} WHERE ${finished} AND id = $2 FOR UPDATE`, [finishedBefore, id]);
        if (!row || (await this.#liveLeases(tx, id as string)) > 0) return false;
        await this.#deleteRunContents(tx, id as string);
        await tx.query(`DELETE FROM ${this.#t.runs} WHERE id = $1`, [id]);
        return true;
      });
      if (gone) purged.push(id as string);
    }
    return purged;
  }

  async restartRun(runId: string, options: { force?: boolean } = {}): Promise<RunRecord> {
    const t = this.#t;
    await this.#write(async (tx) => {
      const run = await this.#lockRun(tx, runId);
      const leased = await this.#liveLeases(tx, runId);
      if (leased > 0 && !options.force) throw new RunBusyError(runId, leased, 'restarting it');
      const [root] = await tx.query(`SELECT key, keyed, priority, traceparent FROM ${t.nodes} WHERE id = $1`, [run.root_id]);
      await this.#deleteRunContents(tx, runId);
      const now = Date.now();
      await tx.query(
        `WITH id AS (UPDATE ${t.meta} SET value = value + 1 WHERE key = 'next_node_id' RETURNING value - 1 AS root_id),
         root AS (
           INSERT INTO ${t.nodes} (id, run_id, parent_id, ord, key, keyed, depth, priority, order_key, version, state, input, context, traceparent, created_at, updated_at)
           SELECT id.root_id, $1, NULL, 0, $2, $3, 0, $4, CASE WHEN $5 = 'dfs' THEN -id.root_id ELSE id.root_id END, $6, 'pending', $7, $8, $9, $10, $10 FROM id
           RETURNING id)
         UPDATE ${t.runs} SET state = 'running', result = NULL, pause_reason = NULL, finished_at = NULL, node_count = 1, root_id = (SELECT id FROM root),
           n_pending = 1, cost_spent = 0, n_running = 0, n_waiting = 0, n_done = 0, n_dead = 0, n_parked = 0, updated_at = $10 WHERE id = $1`,
        [
          runId,
          root?.key ?? 'root',
          root?.keyed ?? false,
          root?.priority ?? 0,
          run.frontier_order,
          run.task_version,
          run.input,
          run.context,
          root?.traceparent ?? null,
          now,
        ],
      );
      await this.#notify(tx, [runId]);
    });
    const run = await this.getRun(runId);
    if (!run) throw new Error(`Run ${runId} vanished right after it was restarted.`);
    return run;
  }

  async settleRun(runId: string): Promise<RunRecord | undefined> {
    const exists = await this.#write(async (tx) => {
      const rows = await tx.begin(` SELECT 1 FROM ${this.#t.runs} WHERE id = ${tx.literal(runId)} FOR UPDATE;`);
      if (rows[0]?.rows.length === 0) return false;
      const state = await this.#settle(tx, runId, true);
      if (state === 'running') await this.#notify(tx, [runId]);
      return true;
    });
    return exists ? this.getRun(runId) : undefined;
  }

  /** Decides whether a locked run has ended; `reopen` lets a finished run run again once it has work (after a redrive). */
  async #settle(tx: Transaction, runId: string, reopen: boolean): Promise<RunState> {
    const t = this.#t;
    const read = `SELECT r.*, (SELECT s.state FROM ${t.nodes} s WHERE s.id = r.root_id) AS root_state FROM ${t.runs} r WHERE r.id = $1`;
    let [run] = await tx.query(read, [runId]);
    if (!run) throw new NotFoundError(`No run ${runId} in ${this.description}.`);
    // Nothing can move and nodes still wait: a dependency cycle may hold them (see store/cycles.ts).
    if (run.state !== 'cancelled' && (run.n_pending as number) + (run.n_running as number) === 0 && (run.n_waiting as number) > 0) {
      const broken = await this.#breakCycles(tx, runId, run.root_id as number);
      if (broken.released > 0) await this.#notify(tx, [runId]);
      if (broken.dead > 0) {
        [run] = await tx.query(read, [runId]);
        if (!run) throw new NotFoundError(`No run ${runId} in ${this.description}.`);
      }
    }
    const state = run.state as RunState;
    const next = settledState({
      state,
      counts: countsFromRow(run),
      rootState: (run.root_state as NodeState | null) ?? null,
      pauseReason: (run.pause_reason as string | null) ?? null,
      reopen,
    });
    if (next.state !== state || next.state === 'completed') {
      const now = Date.now();
      await tx.query(
        `UPDATE ${t.runs} r SET state = $2, result = CASE WHEN $2 = 'completed' THEN (SELECT s.result FROM ${t.nodes} s WHERE s.id = r.root_id) END,
           pause_reason = $3, finished_at = $4, updated_at = $5 WHERE r.id = $1`,
        [runId, next.state, next.state === 'paused' ? next.pauseReason : null, next.state === 'completed' || next.state === 'failed' ? now : null, now],
      );
    }
    return next.state;
  }

  async recordRunCode(runId: string, code: RunCode): Promise<RunCode | null> {
    const t = this.#t;
    const rows = await this.#query(
      `UPDATE ${t.runs} r SET code_version = $2, code_hash = $3, pass_dead = COALESCE($4, r.pass_dead),
         last_worker = COALESCE($5, r.last_worker), last_worker_at = COALESCE($6::bigint, r.last_worker_at)
       FROM (SELECT id, code_version, code_hash FROM ${t.runs} WHERE id = $1 FOR UPDATE) old
       WHERE r.id = old.id RETURNING old.code_version, old.code_hash`,
      [runId, code.version, code.hash, code.passDead ?? null, code.workerId ?? null, code.workerId === undefined ? null : Date.now()],
    );
    const [row] = rows;
    if (!row) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
    return row.code_version === null || row.code_hash === null ? null : { version: row.code_version as number, hash: row.code_hash as string };
  }

  async setRunEstimate(runId: string, estimate: number | null): Promise<void> {
    const rows = await this.#query(`UPDATE ${this.#t.runs} SET estimate = $2 WHERE id = $1 RETURNING id`, [runId, estimate]);
    if (rows.length === 0) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
  }

  async setCostBudget(runId: string, budget: number | null): Promise<void> {
    const rows = await this.#query(`UPDATE ${this.#t.runs} SET cost_budget = $2 WHERE id = $1 RETURNING id`, [runId, budget]);
    if (rows.length === 0) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
  }

  async chargeCost(charge: CostCharge): Promise<{ granted: boolean; amount: number; spent: number; budget: number | null }> {
    const t = this.#t;
    return this.#write(async (tx) => {
      await tx.begin();
      // The run's row is the budget's lock: charges of one run take turns, so none passes the budget.
      const [run] = await tx.query(`SELECT cost_budget, cost_spent FROM ${t.runs} WHERE id = $1 FOR UPDATE`, [charge.runId]);
      if (!run) throw new NotFoundError(`No run ${charge.runId} in ${this.description}; \`rlm status\` lists the runs.`);
      const budget = run.cost_budget === null ? null : Number(run.cost_budget);
      const before = Number(run.cost_spent);
      const [journaled] = await tx.query(`SELECT run_id, value FROM ${t.effects} WHERE run_id = $1 AND node_key = $2 AND name = $3`, [charge.runId, charge.nodeKey, charge.name]);
      const held = journaled ? costOf(payloadOf(journaled.value, { table: 'rlm_effects', column: 'value', row: journaled }) ?? 'null') : undefined;
      const { write, ...decided } = decideCharge(charge, before, budget, held);
      if (!write) return decided;
      await tx.query(`UPDATE ${t.runs} SET cost_spent = $2 WHERE id = $1`, [charge.runId, decided.spent]);
      await tx.query(`INSERT INTO ${t.effects} (run_id, node_key, name, node_id, value, at) VALUES ($1, $2, $3, $4, $5, $6)`, [
        charge.runId,
        charge.nodeKey,
        charge.name,
        charge.nodeId,
        sealText(costEntry(charge.amount)),
        Date.now(),
      ]);
      return decided;
    });
  }

  async sendSignal(runId: string, name: string, payload: Payload): Promise<{ sent: boolean; woke: number }> {
    const t = this.#t;
    return this.#write(async (tx) => {
      const run = await this.#lockRun(tx, runId);
      const [before] = await tx.query(`SELECT run_id, payload FROM ${t.signals} WHERE run_id = $1 AND name = $2`, [runId, name]);
      if (before) {
        if (payloadOf(before.payload, { table: 'rlm_signals', column: 'payload', row: before }) !== payloadText(payload)) throw signalRefused(runId, name);
      }
      const now = Date.now();
      if (!before) await tx.query(`INSERT INTO ${t.signals} (run_id, name, payload, sent_at) VALUES ($1, $2, $3, $4)`, [runId, name, sealText(payloadText(payload)), now]);
      const rows = await tx.query(
        this.#movedSql(`UPDATE ${t.nodes} SET state = 'pending', park_reason = NULL, updated_at = $2 WHERE run_id = $1 AND state = 'parked' AND park_reason = $3`, 'parked', 'pending', '$2'),
        [runId, now, signalWaitReason(name)],
      );
      const woke = rows.reduce((sum, row) => sum + Number(row.n), 0);
      if (woke > 0) {
        // Woken nodes run though others still wait: a pause for parked nodes ends, a person's pause stays.
        if (run.state === 'paused' && !isPersonPause(run.pause_reason as string | null)) {
          await tx.query(`UPDATE ${t.runs} SET state = 'running', pause_reason = NULL WHERE id = $1`, [runId]);
        }
        await this.#notify(tx, [runId]);
      }
      return { sent: !before, woke };
    });
  }

  async getSignal(runId: string, name: string): Promise<Payload | undefined> {
    const [row] = await this.#query(`SELECT run_id, payload FROM ${this.#t.signals} WHERE run_id = $1 AND name = $2`, [runId, name]);
    return row ? (payloadOf(row.payload, { table: 'rlm_signals', column: 'payload', row }) ?? undefined) : undefined;
  }

  async subtreeCost(nodeId: number): Promise<number> {
    const t = this.#t;
    const rows = await this.#query(
      `WITH RECURSIVE sub(id) AS (SELECT $1::bigint UNION SELECT n.id FROM ${t.nodes} n JOIN sub ON n.parent_id = sub.id)
       SELECT e.run_id, e.value FROM ${t.effects} e JOIN ${t.nodes} n ON e.run_id = n.run_id AND e.node_key = n.key JOIN sub ON sub.id = n.id
       WHERE e.name LIKE '${COST_EFFECT_PREFIX}%'`,
      [nodeId],
    );
    return rows.reduce((sum, row) => sum + costOf(payloadOf(row.value, { table: 'rlm_effects', column: 'value', row }) ?? 'null'), 0);
  }

  async registerWorker(info: WorkerInfo, leaseMs: number): Promise<void> {
    // Each process adds a row: rows of workers gone long ago are pruned here, once per process.
    await this.#query(`DELETE FROM ${this.#t.workers} WHERE state <> 'alive' AND heartbeat_at < ${DB_NOW} - $1`, [WORKER_RETENTION_MS]);
    // A retry after a lost answer finds the row written: DO NOTHING keeps the statement idempotent.
    await this.#query(
      `INSERT INTO ${this.#t.workers} (id, host, pid, pid_start, task, version, state, lease_until, heartbeat_at, started_at)
       VALUES ($1, $2, $3, $4, $5, $6, 'alive', ${DB_NOW} + $7, ${DB_NOW}, ${DB_NOW}) ON CONFLICT (id) DO NOTHING`,
      [info.id, info.host, info.pid, info.pidStart, info.task, info.version, leaseMs],
    );
  }

  async heartbeat(workerId: string, leaseMs: number): Promise<boolean> {
    if (failpoints.active) failpoints.hit('heartbeat.beforeRenew');
    const rows = await this.#query(
      `UPDATE ${this.#t.workers} SET lease_until = ${DB_NOW} + $2, heartbeat_at = ${DB_NOW} WHERE id = $1 AND state = 'alive' RETURNING 1`,
      [workerId, leaseMs],
    );
    if (failpoints.active) failpoints.hit('heartbeat.afterRenew');
    return rows.length === 1;
  }

  async listWorkers(options: { alive?: boolean } = {}): Promise<WorkerRecord[]> {
    const where = options.alive ? ` WHERE state = 'alive'` : '';
    return (await this.#query(`SELECT * FROM ${this.#t.workers}${where} ORDER BY started_at DESC`)).map(workerFromRow);
  }

  async workerLeases(): Promise<WorkerLeases[]> {
    const rows = await this.#query(
      `SELECT owner, run_id, count(*)::int AS n FROM ${this.#t.nodes} WHERE state = 'running' AND owner IS NOT NULL GROUP BY owner, run_id ORDER BY owner, run_id`,
    );
    return rows.map((row) => ({ workerId: row.owner as string, runId: row.run_id as string, nodes: row.n as number }));
  }

  /** Moves counted nodes between states on their runs' counters, in the same statement as `nodesSql`. */
  #movedSql(nodesSql: string, from: NodeState, to: NodeState, now: string): string {
    return `WITH moved AS (${nodesSql} RETURNING run_id),
      per_run AS (SELECT run_id, count(*) AS n FROM moved GROUP BY run_id),
      counted AS (UPDATE ${this.#t.runs} r SET n_${from} = r.n_${from} - c.n, n_${to} = r.n_${to} + c.n, updated_at = ${now}
                  FROM per_run c WHERE r.id = c.run_id RETURNING r.id, c.n)
      SELECT id, n FROM counted`;
  }

  async takeBack(options: { deadIds?: readonly string[]; expiredBefore?: number; blame?: readonly { id: number; epoch: number }[] }): Promise<number> {
    const t = this.#t;
    return this.#write(async (tx) => {
      await tx.begin();
      // Any `expiredBefore` means "now": leases are judged by the database clock, not this host's.
      const victims = await tx.query(
        `UPDATE ${t.workers} SET state = 'dead' WHERE state = 'alive' AND (id = ANY($1::text[]) OR ($2::boolean AND lease_until < ${DB_NOW})) RETURNING id, alone_id, alone_epoch`,
        [options.deadIds ?? [], options.expiredBefore !== undefined],
      );
      // A dead worker's group slots are free at once, as its nodes are.
      if (victims.length > 0) await tx.query(`DELETE FROM ${t.groupLeases} WHERE worker_id = ANY($1::text[])`, [victims.map((row) => row.id as string)]);
      // A victim running a node alone (see markAlone) is that node's fault, wherever its process was: charged
      // once, whether its own host's flight recorder or the store says so.
      const charged = new Map<number, number>();
      for (const node of options.blame ?? []) charged.set(node.id, node.epoch);
      for (const row of victims) if (row.alone_id !== null && row.alone_epoch !== null) charged.set(Number(row.alone_id), Number(row.alone_epoch));
      const blame = [...charged].map(([id, epoch]) => ({ id, epoch }));
      if (blame.length > 0) {
        // These nodes were running alone when their worker died: the crash counts as an attempt.
        await tx.query(
          `UPDATE ${t.nodes} n SET attempts = n.attempts + 1 FROM unnest($1::bigint[], $2::integer[]) AS b(id, epoch)
           WHERE n.id = b.id AND n.epoch = b.epoch AND n.state = 'running'`,
          [blame.map((node) => node.id), blame.map((node) => node.epoch)],
        );
      }
      if (victims.length === 0) return 0;
      if (failpoints.active) failpoints.hit('takeback.afterMarkDead');
      const rows = await tx.query(
        this.#movedSql(
          `UPDATE ${t.nodes} SET state = 'pending', owner = NULL, epoch = epoch + 1, suspect = true, updated_at = $2 WHERE owner = ANY($1::text[]) AND state = 'running'`,
          'running',
          'pending',
          '$2',
        ),
        [victims.map((row) => row.id), Date.now()],
      );
      await this.#notify(
        tx,
        rows.map((row) => row.id as string),
      );
      return rows.reduce((sum, row) => sum + (row.n as number), 0);
    });
  }

  async markAlone(workerId: string, node: { id: number; epoch: number } | null): Promise<void> {
    await this.#query(`UPDATE ${this.#t.workers} SET alone_id = $2, alone_epoch = $3 WHERE id = $1`, [workerId, node?.id ?? null, node?.epoch ?? null]);
  }

  async releaseWorker(workerId: string, nodes?: readonly { id: number; epoch: number }[]): Promise<void> {
    const t = this.#t;
    await this.#write(async (tx) => {
      await tx.begin();
      if (failpoints.active) failpoints.hit('stop.release');
      if (!nodes) {
        await tx.query(`UPDATE ${t.workers} SET state = 'stopped' WHERE id = $1 AND state = 'alive'`, [workerId]);
        await tx.query(`DELETE FROM ${t.groupLeases} WHERE worker_id = $1`, [workerId]);
      }
      const release = `UPDATE ${t.nodes} SET state = 'pending', owner = NULL, epoch = epoch + 1, updated_at = $2
        WHERE owner = $1 AND state = 'running'`;
      const rows = nodes
        ? await tx.query(this.#movedSql(`${release} AND (id, epoch) IN (SELECT * FROM unnest($3::bigint[], $4::integer[]))`, 'running', 'pending', '$2'), [
            workerId,
            Date.now(),
            nodes.map((node) => node.id),
            nodes.map((node) => node.epoch),
          ])
        : await tx.query(this.#movedSql(release, 'running', 'pending', '$2'), [workerId, Date.now()]);
      await this.#notify(
        tx,
        rows.map((row) => row.id as string),
      );
    });
  }

  async waitForWork(timeoutMs: number): Promise<void> {
    await this.#listener.wait(timeoutMs);
  }

  async claimNodes(workerId: string, filter: ClaimFilter, limit: number): Promise<LeasedNode[]> {
    if (limit < 1 || (filter.runIds && filter.runIds.length === 0)) return [];
    const t = this.#t;
    // An idle worker polls: a read finds out whether anything is runnable before a write transaction (which
    // locks the worker row and flushes the WAL at COMMIT) is spent on it.
    const [probe] = await this.#query(
      `SELECT EXISTS (
         SELECT 1 FROM ${t.runs} r JOIN LATERAL (
           SELECT 1 FROM ${t.nodes} n WHERE n.run_id = r.id AND n.state = 'pending' AND n.available_at <= $3 AND n.version <= $4 LIMIT 1
         ) n ON true
         WHERE r.task = $1 AND r.state = 'running' AND ($2::text[] IS NULL OR r.id = ANY($2::text[]))
       ) AS runnable`,
      [filter.task, filter.runIds ?? null, Date.now(), filter.maxVersion],
    );
    if (probe?.runnable !== true) return [];
    return this.#write(async (tx) => {
      if (failpoints.active) failpoints.hit('claim.beforeUpdate');
      const only = filter.runIds ? ` AND id IN (${filter.runIds.map((id) => tx.literal(id)).join(', ')})` : '';
      // The worker row is locked FOR SHARE: a take-back of this worker waits for the claim, then sees its nodes.
      const [alive, runRows] = await tx.begin(
        ` SELECT 1 FROM ${t.workers} WHERE id = ${tx.literal(workerId)} AND state = 'alive' FOR SHARE;` +
          ` SELECT id FROM ${t.runs} WHERE task = ${tx.literal(filter.task)} AND state = 'running'${only} ORDER BY created_at;`,
      );
      if (!alive?.rows.length) return [];
      let runIds = (runRows?.rows ?? []).map((row) => row.id as string);
      if (filter.runIds) {
        const present = new Set(runIds);
        runIds = filter.runIds.filter((id) => present.has(id));
      }
      const now = Date.now();
      const claimed: LeasedNode[] = [];
      for (const runId of runIds) {
        if (claimed.length >= limit) break;
        // The run's row first, as commits take it: a claim then picks with a snapshot taken after every commit
        // before it, and never holds a node lock a commit waits on while it waits on the commit's run lock.
        await tx.query(`SELECT 1 FROM ${t.runs} WHERE id = $1 FOR UPDATE`, [runId]);
        const rows = await tx.query(
          `WITH picked AS (
             SELECT id FROM ${t.nodes}
             WHERE run_id = $2 AND state = 'pending' AND available_at <= $3 AND version <= $4
             ORDER BY priority DESC, order_key LIMIT $5
             FOR UPDATE SKIP LOCKED
           ), leased AS (
             UPDATE ${t.nodes} n SET state = 'running', owner = $1, epoch = n.epoch + 1, updated_at = $3
             FROM picked WHERE n.id = picked.id AND n.state = 'pending'
             RETURNING n.${LEASED_COLUMNS.split(', ').join(', n.')}, n.order_key
           ), counted AS (
             UPDATE ${t.runs} r SET n_pending = r.n_pending - c.n, n_running = r.n_running + c.n, updated_at = $3
             FROM (SELECT count(*) AS n FROM leased) c WHERE r.id = $2 AND c.n > 0 RETURNING 1
           )
           SELECT * FROM leased ORDER BY priority DESC, order_key`,
          [workerId, runId, now, filter.maxVersion, limit - claimed.length],
        );
        for (const row of rows) claimed.push(leasedFromRow(row));
      }
      if (failpoints.active) failpoints.hit('claim.beforeCommit');
      return claimed;
    });
  }

  async commit(workerId: string, ops: readonly CommitOp[]): Promise<CommitResult> {
    if (failpoints.active) failpoints.hit('commit.beforeBegin');
    const t = this.#t;
    const marker = randomUUID();
    const result = await this.#session.write(
      async (tx) => {
        const { result, notify, stalled } = await new PgCommit({ tx, tables: t, workerId, ops }).run();
        for (const { runId, wasRunning } of stalled) {
          const state = await this.#settle(tx, runId, false);
          if (result.runStates) result.runStates[runId] = state;
          if (state !== 'running' && wasRunning) result.finishedRuns.push(runId);
        }
        const [row] = await tx.query(
          `WITH marker AS (INSERT INTO ${t.commits} (id, result) VALUES ($1, $2) RETURNING seq),
                woken AS (SELECT pg_notify($3, r) FROM unnest($4::text[]) AS r)
           SELECT (SELECT seq FROM marker) AS seq, (SELECT count(*) FROM woken) AS woken`,
          [marker, JSON.stringify({ ...result, ready: result.ready.map(leasedAsText) }), this.#channel, notify],
        );
        return { ...result, seq: row?.seq as number };
      },
      { failpoints: true, recover: () => this.#committed(marker) },
    );
    if (++this.#commits % MARKER_PRUNE_EVERY === 0) {
      this.#query(`DELETE FROM ${t.commits} WHERE created_at < now() - interval '15 minutes'`).catch(() => undefined);
    }
    return result;
  }

  /** The result of a commit that happened, read back from its marker. */
  async #committed(marker: string): Promise<CommitResult | undefined> {
    const [row] = await this.#query(`SELECT seq, result FROM ${this.#t.commits} WHERE id = $1`, [marker]);
    if (!row) return undefined;
    const result = JSON.parse(row.result as string) as Omit<CommitResult, 'seq'>;
    return { ...result, ready: result.ready.map(leasedFromText), seq: row.seq as number };
  }

  async getEffect(runId: string, nodeKey: string, name: string): Promise<EffectRecord | undefined> {
    const [row] = await this.#query(`SELECT run_id, name, value, node_id, at FROM ${this.#t.effects} WHERE run_id = $1 AND node_key = $2 AND name = $3`, [
      runId,
      nodeKey,
      name,
    ]);
    return row ? { name: row.name as string, value: payloadOf(row.value, { table: 'rlm_effects', column: 'value', row }) ?? 'null', nodeId: row.node_id as number, at: row.at as number } : undefined;
  }

  async listEffects(nodeId: number): Promise<EffectRecord[]> {
    return (await this.#query(`SELECT run_id, name, value, node_id, at FROM ${this.#t.effects} WHERE node_id = $1 ORDER BY at, name`, [nodeId])).map((row) => ({
      name: row.name as string,
      value: payloadOf(row.value, { table: 'rlm_effects', column: 'value', row }) ?? 'null',
      nodeId: row.node_id as number,
      at: row.at as number,
    }));
  }

  async childResults(nodeId: string | number): Promise<Array<{ key: string; state: NodeState; result: Payload | null; error: string | null }>> {
    const t = this.#t;
    const rows = await this.#query(
      `SELECT id, run_id, key, state, result, errors FROM (
         SELECT ord, id, run_id, key, state, result, errors FROM ${t.nodes} WHERE parent_id = $1::bigint
         UNION ALL
         SELECT e.ord, n.id, n.run_id, n.key, n.state, n.result, n.errors FROM ${t.edges} e JOIN ${t.nodes} n ON n.id = e.child_id WHERE e.parent_id = $1::bigint
       ) c ORDER BY ord, id`,
      [nodeId],
    );
    return rows.map((row) => {
      const errors = errorsOf(row.errors, { table: 'rlm_nodes', column: 'errors', row });
      return {
        key: row.key as string,
        state: row.state as NodeState,
        result: payloadOf(row.result, { table: 'rlm_nodes', column: 'result', row }),
        error: errors.length > 0 ? (errors[errors.length - 1]?.message ?? null) : null,
      };
    });
  }

  async getNode(nodeId: number): Promise<NodeRecord | undefined> {
    const [row] = await this.#query(`SELECT * FROM ${this.#t.nodes} WHERE id = $1`, [nodeId]);
    return row ? nodeFromRow(row) : undefined;
  }

  async listChildren(nodeId: number, limit = 1000, offset = 0): Promise<NodeRecord[]> {
    const t = this.#t;
    return (
      await this.#query(
        `SELECT * FROM (
           SELECT n.*, n.ord AS sort_ord FROM ${t.nodes} n WHERE n.parent_id = $1
           UNION ALL
           SELECT n.*, e.ord AS sort_ord FROM ${t.edges} e JOIN ${t.nodes} n ON n.id = e.child_id WHERE e.parent_id = $1
         ) c ORDER BY sort_ord, id LIMIT $2 OFFSET $3`,
        [nodeId, limit, offset],
      )
    ).map(nodeFromRow);
  }

  async listNodes(runId: string, filter: { state?: NodeState; limit?: number; afterId?: number }): Promise<NodeRecord[]> {
    const t = this.#t;
    const limit = filter.limit ?? 1000;
    const after = filter.afterId ?? 0;
    const rows = filter.state
      ? await this.#query(`SELECT * FROM ${t.nodes} WHERE run_id = $1 AND state = $2 AND id > $3 AND NOT dropped ORDER BY id LIMIT $4`, [runId, filter.state, after, limit])
      : await this.#query(`SELECT * FROM ${t.nodes} WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3`, [runId, after, limit]);
    return rows.map(nodeFromRow);
  }

  async readEmits(runId: string, afterSeq: number, limit: number): Promise<EmitRecord[]> {
    const rows = await this.#query(`SELECT seq, run_id, node_id, record FROM ${this.#t.emits} WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, [runId, afterSeq, limit]);
    return rows.map((row) => ({ seq: row.seq as number, nodeId: row.node_id as number, record: payloadOf(row.record, { table: 'rlm_emits', column: 'record', row }) ?? 'null' }));
  }

  async subtreeCounts(nodeId: number): Promise<StateCounts> {
    return (await this.#subtree(nodeId, null)) as StateCounts;
  }

  async subtreeCountsUpTo(nodeId: number, maxNodes: number): Promise<StateCounts | null> {
    return this.#subtree(nodeId, maxNodes);
  }

  /**
   * Walks the first-parent tree (parent_id is set once, to a node created earlier: no cycles, so UNION ALL), carrying
   * each node's state. PostgreSQL computes only the rows of a recursive query its parent fetches: the inner LIMIT
   * stops the walk.
   */
  async #subtree(nodeId: number, maxNodes: number | null): Promise<StateCounts | null> {
    const t = this.#t;
    const rows = await this.#query(
      `WITH RECURSIVE sub(id, state) AS (SELECT id, state FROM ${t.nodes} WHERE id = $1::bigint UNION ALL SELECT n.id, n.state FROM ${t.nodes} n JOIN sub ON n.parent_id = sub.id)
       SELECT state, count(*) AS n FROM (SELECT state FROM sub LIMIT $2::bigint) s GROUP BY state`,
      [nodeId, maxNodes === null ? null : maxNodes + 1],
    );
    const counts = emptyCounts();
    let total = 0;
    for (const row of rows) {
      counts[row.state as NodeState] = Number(row.n);
      total += Number(row.n);
    }
    return maxNodes !== null && total > maxNodes ? null : counts;
  }

  async acquireGroup(request: GroupRequest): Promise<GroupGrant> {
    const t = this.#t;
    const { runId, group, workerId } = request;
    return this.#write(async (tx) => {
      await tx.begin();
      // The bucket's row, made if missing, is the group's lock: workers asking at once take turns.
      await tx.query(
        `INSERT INTO ${t.groupBuckets} (run_id, grp, tokens, refilled_at) VALUES ($1, $2, $3, ${DB_NOW}) ON CONFLICT (run_id, grp) DO NOTHING`,
        [runId, group, request.burst],
      );
      const [locked] = await tx.query(
        `SELECT tokens, refilled_at, ${DB_NOW} AS now FROM ${t.groupBuckets} WHERE run_id = $1 AND grp = $2 FOR UPDATE`,
        [runId, group],
      );
      const now = Number(locked?.now);
      let others = 0;
      if (request.concurrency !== null) {
        await tx.query(`DELETE FROM ${t.groupLeases} WHERE run_id = $1 AND grp = $2 AND expires_at < $3`, [runId, group, now]);
        const [row] = await tx.query(`SELECT COALESCE(sum(slots), 0)::int AS n FROM ${t.groupLeases} WHERE run_id = $1 AND grp = $2 AND worker_id <> $3`, [
          runId,
          group,
          workerId,
        ]);
        others = Number(row?.n ?? 0);
      }
      const bucket = { tokens: Number(locked?.tokens), refilledAt: Number(locked?.refilled_at) };
      const grant = grantGroup(request, others, bucket, now);
      if (request.concurrency !== null) {
        if (grant.slots > 0) {
          await tx.query(
            `INSERT INTO ${t.groupLeases} (run_id, grp, worker_id, slots, expires_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (run_id, grp, worker_id) DO UPDATE SET slots = excluded.slots, expires_at = excluded.expires_at`,
            [runId, group, workerId, grant.slots, now + request.leaseMs],
          );
        } else {
          await tx.query(`DELETE FROM ${t.groupLeases} WHERE run_id = $1 AND grp = $2 AND worker_id = $3`, [runId, group, workerId]);
        }
      }
      if (grant.bucket) {
        await tx.query(`UPDATE ${t.groupBuckets} SET tokens = $3, refilled_at = $4 WHERE run_id = $1 AND grp = $2`, [runId, group, grant.bucket.tokens, grant.bucket.refilledAt]);
      }
      return { slots: grant.slots, tokens: grant.tokens, nextTokenInMs: grant.nextTokenInMs };
    });
  }

  async nextWake(runId: string): Promise<{ at: number; nodes: number } | null> {
    const [row] = await this.#query(
      `SELECT min(available_at) AS at, count(*)::int AS n FROM ${this.#t.nodes} WHERE run_id = $1 AND state = 'pending' AND available_at > $2`,
      [runId, Date.now()],
    );
    return row?.at === null || row?.at === undefined ? null : { at: Number(row.at), nodes: Number(row.n) };
  }

  async depthHistogram(runId: string): Promise<Array<{ depth: number; count: number }>> {
    const rows = await this.#query(`SELECT depth, count(*) AS count FROM ${this.#t.nodes} WHERE run_id = $1 GROUP BY depth ORDER BY depth`, [runId]);
    return rows.map((row) => ({ depth: row.depth as number, count: row.count as number }));
  }

  /**
   * Once per resume, beside the run (the engine waits for it before it reports an outcome): every value of the
   * run against its checksum, its counters against a recount of its rows, its rows against the constraints.
   */
  async verifyRun(runId: string): Promise<void> {
    const [run] = await this.#query(`SELECT * FROM ${this.#t.runs} WHERE id = $1`, [runId]);
    if (!run) return;
    await checkValuesPostgres((text, values) => this.#query(text, values), this.#t, runId, (error) => {
      throw error;
    });
    // Counters and recount in one statement, so of one snapshot: workers may be committing meanwhile.
    const [now] = await this.#query(
      `SELECT r.*, (SELECT json_object_agg(s.state, s.n) FROM (SELECT state, count(*) AS n FROM ${this.#t.nodes} WHERE run_id = r.id AND NOT dropped GROUP BY state) s) AS recount
         FROM ${this.#t.runs} r WHERE r.id = $1`,
      [runId],
    );
    if (!now) return;
    const recount = new Map(Object.entries((now.recount ?? {}) as Record<string, number>).map(([state, n]) => [state, Number(n)]));
    const problems = counterProblems(runId, countsFromRow(now), recount);
    // The constraints refuse bad values on write; this finds rows written while one was missing (see doctor).
    const [broken] = await this.#query(`SELECT count(*)::int AS n, min(id) AS example FROM ${this.#t.nodes} WHERE run_id = $1 AND NOT (${NODE_CHECKS})`, [runId]);
    if (Number(broken?.n ?? 0) > 0) problems.push(`${String(broken?.n)} node(s) hold values outside rlm's schema (e.g. node ${String(broken?.example)})`);
    const [runBroken] = await this.#query(`SELECT count(*)::int AS n FROM ${this.#t.runs} WHERE id = $1 AND NOT (${RUN_CHECKS})`, [runId]);
    if (Number(runBroken?.n ?? 0) > 0) problems.push(`its rlm_runs row holds values outside rlm's schema (state ${JSON.stringify(String(run.state))})`);
    if (problems.length > 0) throw runDamaged(this.description, runId, problems);
  }

  /** Checks the whole schema (`rlm doctor`): tables, indexes, constraints, every checksum and counter, leases. */
  async doctor(): Promise<DoctorReport> {
    return doctorPostgres((text, values) => this.#query(text, values), this.#t, this.schema);
  }

  /** @internal Recounts a run's node states from the rows (tests compare it with the stored counters). */
  async recount(runId: string): Promise<StateCounts> {
    const counts = emptyCounts();
    for (const row of await this.#query(`SELECT state, count(*) AS n FROM ${this.#t.nodes} WHERE run_id = $1 AND NOT dropped GROUP BY state`, [runId])) {
      counts[row.state as NodeState] = row.n as number;
    }
    return counts;
  }

  async cancelSubtree(runId: string, nodeId: number): Promise<number> {
    const t = this.#t;
    return this.#write(async (tx) => {
      await this.#lockRun(tx, runId);
      const now = Date.now();
      // Leases in the subtree are fenced (epoch + 1): a late commit from their holders is rejected.
      const rows = await tx.query(
        `WITH RECURSIVE sub(id) AS (
           SELECT id FROM ${t.nodes} WHERE id = $2 AND run_id = $1
           UNION SELECT n.id FROM ${t.nodes} n JOIN sub ON n.parent_id = sub.id
         ), doomed AS (
           SELECT n.id, n.state FROM sub JOIN ${t.nodes} n ON n.id = sub.id WHERE n.state IN ('pending', 'running', 'waiting', 'parked') FOR UPDATE OF n
         ), cancelled AS (
           UPDATE ${t.nodes} n SET state = 'dead', owner = NULL, epoch = n.epoch + 1, updated_at = $3,
             errors = COALESCE(n.errors, '[]'::jsonb) || jsonb_build_array($4::jsonb)
           FROM doomed d WHERE n.id = d.id RETURNING n.id, d.state AS was
         )
         SELECT id, was FROM cancelled`,
        [runId, nodeId, now, JSON.stringify(sealError({ attempt: 0, message: 'Cancelled with its subtree (`rlm cancel`).', code: 'CANCELLED', stack: null, at: now, worker: 'cli' }))],
      );
      const moved = emptyCounts();
      for (const row of rows) moved[row.was as NodeState]++;
      await tx.query(
        `UPDATE ${t.runs} SET n_pending = n_pending - $2, n_running = n_running - $3, n_waiting = n_waiting - $4, n_parked = n_parked - $5,
           n_dead = n_dead + $6, updated_at = $7 WHERE id = $1`,
        [runId, moved.pending, moved.running, moved.waiting, moved.parked, rows.length, now],
      );
      const released = await this.#releaseParents(
        tx,
        runId,
        rows.map((row) => row.id as number),
        now,
      );
      await this.#settle(tx, runId, false);
      if (released > 0) await this.#notify(tx, [runId]);
      return rows.length;
    });
  }

  async compact(runId: string): Promise<{ deleted: number; pruned: number }> {
    const t = this.#t;
    return this.#write(async (tx) => {
      await this.#lockRun(tx, runId);
      // Unkeyed children are never shared (only keyed children get edges), so a finished one under a finished
      // parent is needed by nobody: its row and its effects go. The run's counters keep their totals.
      const [deleted] = await tx.query(
        `WITH doomed AS (
           SELECT c.id FROM ${t.nodes} p JOIN ${t.nodes} c ON c.parent_id = p.id
           WHERE p.run_id = $1 AND p.state = 'done' AND c.state = 'done' AND NOT c.keyed
         ), effects AS (DELETE FROM ${t.effects} WHERE run_id = $1 AND node_id IN (SELECT id FROM doomed)),
         nodes AS (DELETE FROM ${t.nodes} WHERE id IN (SELECT id FROM doomed) RETURNING 1)
         SELECT count(*) AS n FROM nodes`,
        [runId],
      );
      const pruned = await tx.query(
        `UPDATE ${t.nodes} SET input = NULL, context = NULL WHERE run_id = $1 AND state = 'done' AND keyed AND (input IS NOT NULL OR context IS NOT NULL) RETURNING 1`,
        [runId],
      );
      return { deleted: (deleted?.n as number) ?? 0, pruned: pruned.length };
    });
  }

  /** Which held nodes an operation names: the given ids (as parameter `$param`), or every one not dropped. */
  /**
   * Nodes just dead-lettered outside a commit (a reject, a cancelled subtree): under the run's deadChildren
   * 'pass' each counts as finished for the parents waiting on it, and a parent left with no unfinished child
   * becomes pending for its combine phase, as in a commit. Returns how many parents became ready.
   */
  async #releaseParents(tx: Transaction, runId: string, deadIds: readonly number[], now: number): Promise<number> {
    const t = this.#t;
    if (deadIds.length === 0) return 0;
    const [run] = await tx.query(`SELECT pass_dead FROM ${t.runs} WHERE id = $1`, [runId]);
    if (run?.pass_dead !== true) return 0;
    const counted = await tx.query(
      `WITH dead AS (SELECT unnest($1::bigint[]) AS id),
         parents AS (
           SELECT n.parent_id AS id FROM ${t.nodes} n JOIN dead d ON d.id = n.id WHERE n.parent_id IS NOT NULL
           UNION ALL SELECT e.parent_id FROM ${t.edges} e JOIN dead d ON d.id = e.child_id
         ), per AS (SELECT id, count(*) AS n FROM parents WHERE id <> ALL($1::bigint[]) GROUP BY id)
       UPDATE ${t.nodes} p SET pending_children = p.pending_children - per.n FROM per
        WHERE p.id = per.id AND p.state = 'waiting' RETURNING p.id, p.pending_children`,
      [deadIds],
    );
    const ready = counted.filter((row) => (row.pending_children as number) <= 0).map((row) => row.id as number);
    if (ready.length === 0) return 0;
    const moved = await tx.query(
      this.#movedSql(
        `UPDATE ${t.nodes} SET state = 'pending', phase = 'combine', owner = NULL, epoch = epoch + 1, attempts = 0, suspect = false, available_at = 0, updated_at = $2
         WHERE id = ANY($1::bigint[]) AND state = 'waiting'`,
        'waiting',
        'pending',
        '$2',
      ),
      [ready, now],
    );
    return moved.reduce((sum, row) => sum + (row.n as number), 0);
  }

  /**
   * A stalled run's dependency cycles: each node that closes one goes to the dead-letter queue (and, under
   * deadChildren 'pass', counts as finished for its parents). Returns how many died and how many parents that
   * made ready.
   */
  async #breakCycles(tx: Transaction, runId: string, rootId: number): Promise<{ dead: number; released: number }> {
    const t = this.#t;
    // The waiting nodes reachable from the root through waiting nodes, then the waiting children of each.
    const children = `CROSS JOIN LATERAL (
        SELECT c.id AS child FROM ${t.nodes} c WHERE c.parent_id = w.id AND c.state = 'waiting'
        UNION ALL
        SELECT e.child_id FROM ${t.edges} e JOIN ${t.nodes} c ON c.id = e.child_id WHERE e.parent_id = w.id AND c.state = 'waiting'
      ) x`;
    const edges = await tx.query(
      `WITH RECURSIVE w(id) AS (
         SELECT id FROM ${t.nodes} WHERE id = $1 AND state = 'waiting'
         UNION SELECT x.child FROM w ${children}
       ) SELECT w.id AS parent, x.child FROM w ${children}`,
      [rootId],
    );
    const closers = findCycleClosers(
      rootId,
      edges.map((row) => ({ parent: Number(row.parent), child: Number(row.child) })),
    );
    if (closers.length === 0) return { dead: 0, released: 0 };
    const ids = [...new Set(closers.flatMap((closer) => closer.path))];
    const keys = new Map((await tx.query(`SELECT id, key FROM ${t.nodes} WHERE id = ANY($1::bigint[])`, [ids])).map((row) => [Number(row.id), row.key as string]));
    const now = Date.now();
    const errors = closers.map((closer) => storableError(cycleError(closer.path.map((id) => keys.get(id) ?? String(id)), now, 'rlm')));
    const dead = await tx.query(
      `UPDATE ${t.nodes} n SET state = 'dead', owner = NULL, updated_at = $3, errors = COALESCE(n.errors, '[]'::jsonb) || jsonb_build_array(v.error)
         FROM (SELECT unnest($1::bigint[]) AS id, unnest($2::jsonb[]) AS error) v
        WHERE n.id = v.id AND n.state = 'waiting' RETURNING n.id`,
      [closers.map((closer) => closer.nodeId), errors.map((error) => JSON.stringify(error)), now],
    );
    const deadIds = dead.map((row) => Number(row.id));
    await tx.query(`UPDATE ${t.runs} SET n_waiting = n_waiting - $2, n_dead = n_dead + $2, updated_at = $3 WHERE id = $1`, [runId, deadIds.length, now]);
    const released = await this.#releaseParents(tx, runId, deadIds, now);
    return { dead: deadIds.length, released };
  }

  #held(nodeIds: readonly number[] | 'all', param: number): { sql: string; params: number[][] } {
    return nodeIds === 'all' ? { sql: 'NOT dropped', params: [] } : { sql: `id = ANY($${param}::bigint[])`, params: [[...nodeIds]] };
  }

  async redrive(runId: string, nodeIds: readonly number[] | 'all'): Promise<number> {
    const t = this.#t;
    return this.#write(async (tx) => {
      await this.#lockRun(tx, runId);
      const held = this.#held(nodeIds, 3);
      const now = Date.now();
      // A dropped node left the dead count when it was dropped: only the others move from n_dead.
      const [moved] = await tx.query(
        `WITH old AS (SELECT id, dropped FROM ${t.nodes} WHERE run_id = $1 AND state = 'dead' AND ${held.sql} FOR UPDATE),
           upd AS (UPDATE ${t.nodes} n SET state = 'pending', attempts = 0, suspect = false, available_at = 0, dropped = false, owner = NULL, updated_at = $2
                   FROM old WHERE n.id = old.id RETURNING old.dropped)
         SELECT count(*)::integer AS n, count(*) FILTER (WHERE dropped)::integer AS dropped FROM upd`,
        [runId, now, ...held.params],
      );
      const n = (moved?.n as number) ?? 0;
      if (n > 0) {
        await tx.query(`UPDATE ${t.runs} SET n_dead = n_dead - $2, n_pending = n_pending + $3, updated_at = $4 WHERE id = $1`, [
          runId,
          n - ((moved?.dropped as number) ?? 0),
          n,
          now,
        ]);
        await this.#settle(tx, runId, true);
        await this.#notify(tx, [runId]);
      }
      return n;
    });
  }

  async dropDead(runId: string, nodeIds: readonly number[] | 'all'): Promise<number> {
    const t = this.#t;
    return this.#write(async (tx) => {
      const run = await this.#lockRun(tx, runId);
      const held = this.#held(nodeIds, 2);
      if (run.pass_dead !== true) {
        const [waiting] = await tx.query(
          `WITH doomed AS (SELECT id FROM ${t.nodes} WHERE run_id = $1 AND state = 'dead' AND NOT dropped AND ${held.sql})
           SELECT d.id AS child, p.id AS parent FROM doomed d JOIN ${t.nodes} c ON c.id = d.id JOIN ${t.nodes} p ON p.id = c.parent_id WHERE p.state = 'waiting'
           UNION ALL SELECT d.id, p.id FROM doomed d JOIN ${t.edges} e ON e.child_id = d.id JOIN ${t.nodes} p ON p.id = e.parent_id WHERE p.state = 'waiting'
           LIMIT 1`,
          [runId, ...held.params],
        );
        if (waiting) throw dropRefused(runId, waiting.child as number, waiting.parent as number);
      }
      const rows = await tx.query(`UPDATE ${t.nodes} SET dropped = true WHERE run_id = $1 AND state = 'dead' AND NOT dropped AND ${held.sql} RETURNING 1`, [
        runId,
        ...held.params,
      ]);
      if (rows.length > 0) {
        await tx.query(`UPDATE ${t.runs} SET n_dead = n_dead - $2, updated_at = $3 WHERE id = $1`, [runId, rows.length, Date.now()]);
        await this.#settle(tx, runId, false);
      }
      return rows.length;
    });
  }

  async decideParked(runId: string, nodeIds: readonly number[] | 'all', decision: 'approve' | 'reject'): Promise<number> {
    const t = this.#t;
    return this.#write(async (tx) => {
      await this.#lockRun(tx, runId);
      const held = this.#held(nodeIds, 3);
      const now = Date.now();
      const change =
        decision === 'approve'
          ? `state = 'pending', fanout_ok = CASE WHEN park_reason LIKE 'fan-out%' OR park_reason LIKE 'gate:%' THEN true ELSE fanout_ok END, park_reason = NULL`
          : `state = 'dead', errors = COALESCE(errors, '[]'::jsonb) || jsonb_build_array($${3 + held.params.length}::jsonb)`;
      const rejection = JSON.stringify(sealError({ attempt: 0, message: 'Rejected by a person (`rlm reject`).', code: 'REJECTED', stack: null, at: now, worker: 'cli' }));
      // The rejected nodes' ids, for their waiting parents (held's parameter comes second here).
      const rejected =
        decision === 'reject'
          ? (await tx.query(`SELECT id FROM ${t.nodes} WHERE run_id = $1 AND state = 'parked' AND ${this.#held(nodeIds, 2).sql}`, [runId, ...held.params])).map(
              (row) => row.id as number,
            )
          : [];
      const rows = await tx.query(
        this.#movedSql(
          `UPDATE ${t.nodes} SET ${change}, updated_at = $2 WHERE run_id = $1 AND state = 'parked' AND ${held.sql}`,
          'parked',
          decision === 'approve' ? 'pending' : 'dead',
          '$2',
        ),
        decision === 'approve' ? [runId, now, ...held.params] : [runId, now, ...held.params, rejection],
      );
      const n = rows.reduce((sum, row) => sum + (row.n as number), 0);
      if (rejected.length > 0) await this.#releaseParents(tx, runId, rejected, now);
      if (n > 0) {
        // The last parked node decided ends a pause for parked nodes, never a person's pause (only a resume does).
        const [after] = await tx.query(`SELECT state, n_parked, pause_reason FROM ${t.runs} WHERE id = $1`, [runId]);
        if (after?.state === 'paused' && after.n_parked === 0 && !isPersonPause(after.pause_reason as string | null)) {
          await tx.query(`UPDATE ${t.runs} SET state = 'running', pause_reason = NULL WHERE id = $1`, [runId]);
        }
        const state = await this.#settle(tx, runId, true);
        if (decision === 'approve' || state === 'running') await this.#notify(tx, [runId]);
      }
      return n;
    });
  }
}

/**
 * Puts every value a store held before checksums under its checksum (the migration to schema version 4), a batch
 * of rows at a time in key order, inside the migration's transaction.
 */
async function sealStoredValues(tx: Transaction, t: Tables): Promise<void> {
  const sealed = (value: unknown) => (typeof value === 'string' ? sealText(value) : value);
  const sealedErrors = (value: unknown) =>
    Array.isArray(value) ? value.map((entry) => (entry !== null && typeof entry === 'object' ? sealError(entry as ErrorEntry) : entry)) : value;
  const BATCH = 5_000;
  const tables: { table: string; key: string[]; types: string[]; columns: string[]; errors?: boolean }[] = [
    { table: t.runs, key: ['id'], types: ['text'], columns: ['input', 'context', 'result'] },
    { table: t.nodes, key: ['id'], types: ['bigint'], columns: ['input', 'context', 'result'], errors: true },
    { table: t.emits, key: ['seq'], types: ['bigint'], columns: ['record'] },
    { table: t.effects, key: ['run_id', 'node_key', 'name'], types: ['text', 'text', 'text'], columns: ['value'] },
  ];
  for (const spec of tables) {
    const read = [...spec.key, ...spec.columns, ...(spec.errors ? ['errors'] : [])];
    let after: unknown[] | null = null;
    for (;;) {
      const where: string = after === null ? '' : `WHERE (${spec.key.join(', ')}) > (${spec.key.map((_, i) => `$${i + 1}::${spec.types[i]}`).join(', ')})`;
      const rows: Row[] = await tx.query(`SELECT ${read.join(', ')} FROM ${spec.table} ${where} ORDER BY ${spec.key.join(', ')} LIMIT ${BATCH}`, after ?? []);
      if (rows.length === 0) break;
      const updates = rows.map((row) => {
        const out: Record<string, unknown> = {};
        for (const k of spec.key) out[k] = row[k];
        for (const c of spec.columns) out[c] = sealed(row[c]);
        if (spec.errors) out.errors = sealedErrors(row.errors);
        return out;
      });
      const set = [...spec.columns, ...(spec.errors ? ['errors'] : [])].map((c) => `${c} = v.${c}`).join(', ');
      const shape = [...spec.key.map((k, i) => `${k} ${spec.types[i]}`), ...spec.columns.map((c) => `${c} text`), ...(spec.errors ? ['errors jsonb'] : [])].join(', ');
      await tx.query(
        `UPDATE ${spec.table} AS x SET ${set} FROM json_to_recordset($1::json) AS v(${shape}) WHERE ${spec.key.map((k) => `x.${k} = v.${k}`).join(' AND ')}`,
        [JSON.stringify(updates)],
      );
      const last = rows[rows.length - 1] as Row;
      after = spec.key.map((k) => last[k]);
      if (rows.length < BATCH) break;
    }
  }
}
