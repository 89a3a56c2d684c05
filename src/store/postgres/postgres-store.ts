import { createHash, randomUUID } from 'node:crypto';
import { ConfigError, NotFoundError, StoreTooNewError } from '../../engine/errors.js';
import { failpoints } from '../../failpoints.js';
import { redactUrl } from '../open.js';
import type {
  ClaimFilter,
  CommitOp,
  CommitResult,
  EffectRecord,
  EmitRecord,
  LeasedNode,
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
        await tx.client.query(migration.sql);
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
           INSERT INTO ${t.runs} (id, task, task_version, state, input, context, frontier_order, node_budget, node_count, root_id, n_pending, created_at, updated_at, pass_dead)
           SELECT $1, $2, $3, 'running', $4, $5, $6, $7, 1, id.root_id, 1, $8, $8, $13 FROM id
           ON CONFLICT (id) DO NOTHING RETURNING root_id)
         INSERT INTO ${t.nodes} (id, run_id, parent_id, ord, key, keyed, depth, priority, order_key, version, state, input, context, traceparent, created_at, updated_at)
         SELECT run.root_id, $1, NULL, 0, $9, $12, 0, $10, CASE WHEN $6 = 'dfs' THEN -run.root_id ELSE run.root_id END, $3, 'pending', $4, $5, $11, $8, $8 FROM run
         RETURNING id`,
        [run.id, run.task, run.taskVersion, textOf(run.input), textOfOptional(run.context), run.order, run.nodeBudget, now, run.rootKey, run.rootPriority, run.traceparent, run.rootKeyed, run.passDead],
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

  async listRuns(limit = 100): Promise<RunRecord[]> {
    return (await this.#query(`SELECT * FROM ${this.#t.runs} ORDER BY created_at DESC LIMIT $1`, [limit])).map(runFromRow);
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
      await tx.query(`UPDATE ${this.#t.runs} SET state = $2, pause_reason = $3, updated_at = $4 WHERE id = $1`, [runId, state, options.reason ?? null, Date.now()]);
      if (state === 'running') await this.#notify(tx, [runId]);
      return true;
    });
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
    const [run] = await tx.query(`SELECT r.*, (SELECT s.state FROM ${t.nodes} s WHERE s.id = r.root_id) AS root_state FROM ${t.runs} r WHERE r.id = $1`, [runId]);
    if (!run) throw new NotFoundError(`No run ${runId} in ${this.description}.`);
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
      `UPDATE ${t.runs} r SET code_version = $2, code_hash = $3, pass_dead = COALESCE($4, r.pass_dead)
       FROM (SELECT id, code_version, code_hash FROM ${t.runs} WHERE id = $1 FOR UPDATE) old
       WHERE r.id = old.id RETURNING old.code_version, old.code_hash`,
      [runId, code.version, code.hash, code.passDead ?? null],
    );
    const [row] = rows;
    if (!row) throw new NotFoundError(`No run ${runId} in ${this.description}; \`rlm status\` lists the runs.`);
    return row.code_version === null || row.code_hash === null ? null : { version: row.code_version as number, hash: row.code_hash as string };
  }

  async registerWorker(info: WorkerInfo, leaseMs: number): Promise<void> {
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

  async listWorkers(): Promise<WorkerRecord[]> {
    return (await this.#query(`SELECT * FROM ${this.#t.workers} ORDER BY started_at DESC`)).map(workerFromRow);
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
        `UPDATE ${t.workers} SET state = 'dead' WHERE state = 'alive' AND (id = ANY($1::text[]) OR ($2::boolean AND lease_until < ${DB_NOW})) RETURNING id`,
        [options.deadIds ?? [], options.expiredBefore !== undefined],
      );
      const blame = options.blame ?? [];
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

  async releaseWorker(workerId: string, nodes?: readonly { id: number; epoch: number }[]): Promise<void> {
    const t = this.#t;
    await this.#write(async (tx) => {
      await tx.begin();
      if (failpoints.active) failpoints.hit('stop.release');
      if (!nodes) await tx.query(`UPDATE ${t.workers} SET state = 'stopped' WHERE id = $1 AND state = 'alive'`, [workerId]);
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
        const { result, notify } = await new PgCommit({ tx, tables: t, workerId, ops }).run();
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
    const [row] = await this.#query(`SELECT name, value, node_id, at FROM ${this.#t.effects} WHERE run_id = $1 AND node_key = $2 AND name = $3`, [runId, nodeKey, name]);
    return row ? { name: row.name as string, value: payloadOf(row.value) ?? 'null', nodeId: row.node_id as number, at: row.at as number } : undefined;
  }

  async listEffects(nodeId: number): Promise<EffectRecord[]> {
    return (await this.#query(`SELECT name, value, node_id, at FROM ${this.#t.effects} WHERE node_id = $1 ORDER BY at, name`, [nodeId])).map((row) => ({
      name: row.name as string,
      value: payloadOf(row.value) ?? 'null',
      nodeId: row.node_id as number,
      at: row.at as number,
    }));
  }

  async childResults(nodeId: string | number): Promise<Array<{ key: string; state: NodeState; result: Payload | null; error: string | null }>> {
    const t = this.#t;
    const rows = await this.#query(
      `SELECT key, state, result, errors FROM (
         SELECT ord, id, key, state, result, errors FROM ${t.nodes} WHERE parent_id = $1::bigint
         UNION ALL
         SELECT e.ord, n.id, n.key, n.state, n.result, n.errors FROM ${t.edges} e JOIN ${t.nodes} n ON n.id = e.child_id WHERE e.parent_id = $1::bigint
       ) c ORDER BY ord, id`,
      [nodeId],
    );
    return rows.map((row) => {
      const errors = errorsOf(row.errors);
      return {
        key: row.key as string,
        state: row.state as NodeState,
        result: payloadOf(row.result),
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
    const rows = await this.#query(`SELECT seq, node_id, record FROM ${this.#t.emits} WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, [runId, afterSeq, limit]);
    return rows.map((row) => ({ seq: row.seq as number, nodeId: row.node_id as number, record: payloadOf(row.record) ?? 'null' }));
  }

  async subtreeCounts(nodeId: number): Promise<StateCounts> {
    const t = this.#t;
    const rows = await this.#query(
      `WITH RECURSIVE sub(id) AS (SELECT $1::bigint UNION SELECT n.id FROM ${t.nodes} n JOIN sub ON n.parent_id = sub.id)
       SELECT n.state AS state, count(*) AS n FROM sub JOIN ${t.nodes} n ON n.id = sub.id GROUP BY n.state`,
      [nodeId],
    );
    const counts = emptyCounts();
    for (const row of rows) counts[row.state as NodeState] = row.n as number;
    return counts;
  }

  async depthHistogram(runId: string): Promise<Array<{ depth: number; count: number }>> {
    const rows = await this.#query(`SELECT depth, count(*) AS count FROM ${this.#t.nodes} WHERE run_id = $1 GROUP BY depth ORDER BY depth`, [runId]);
    return rows.map((row) => ({ depth: row.depth as number, count: row.count as number }));
  }

  /** @internal Recounts a run's node states from the rows (tests compare it with the stored counters). */
  async recount(runId: string): Promise<StateCounts> {
    const counts = emptyCounts();
    for (const row of await this.#query(`SELECT state, count(*) AS n FROM ${this.#t.nodes} WHERE run_id = $1 GROUP BY state`, [runId])) {
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
             errors = COALESCE(n.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
               'attempt', 0, 'message', 'Cancelled with its subtree (\`rlm cancel\`).', 'code', 'CANCELLED', 'stack', NULL, 'at', $3::bigint, 'worker', 'cli'))
           FROM doomed d WHERE n.id = d.id RETURNING n.id, d.state AS was
         )
         SELECT id, was FROM cancelled`,
        [runId, nodeId, now],
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

  #held(nodeIds: readonly number[] | 'all', param: number): { sql: string; params: number[][] } {
    return nodeIds === 'all' ? { sql: 'NOT dropped', params: [] } : { sql: `id = ANY($${param}::bigint[])`, params: [[...nodeIds]] };
  }

  async redrive(runId: string, nodeIds: readonly number[] | 'all'): Promise<number> {
    const t = this.#t;
    return this.#write(async (tx) => {
      await this.#lockRun(tx, runId);
      const held = this.#held(nodeIds, 3);
      const now = Date.now();
      const rows = await tx.query(
        this.#movedSql(
          `UPDATE ${t.nodes} SET state = 'pending', attempts = 0, suspect = false, available_at = 0, dropped = false, owner = NULL, updated_at = $2
           WHERE run_id = $1 AND state = 'dead' AND ${held.sql}`,
          'dead',
          'pending',
          '$2',
        ),
        [runId, now, ...held.params],
      );
      const n = rows.reduce((sum, row) => sum + (row.n as number), 0);
      if (n > 0) {
        await this.#settle(tx, runId, true);
        await this.#notify(tx, [runId]);
      }
      return n;
    });
  }

  async dropDead(runId: string, nodeIds: readonly number[] | 'all'): Promise<number> {
    const t = this.#t;
    return this.#write(async (tx) => {
      await this.#lockRun(tx, runId);
      const held = this.#held(nodeIds, 2);
      const rows = await tx.query(`UPDATE ${t.nodes} SET dropped = true WHERE run_id = $1 AND state = 'dead' AND NOT dropped AND ${held.sql} RETURNING 1`, [
        runId,
        ...held.params,
      ]);
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
          ? `state = 'pending', fanout_ok = CASE WHEN park_reason LIKE 'fan-out%' THEN true ELSE fanout_ok END, park_reason = NULL`
          : `state = 'dead', errors = COALESCE(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
               'attempt', 0, 'message', 'Rejected by a person (\`rlm reject\`).', 'code', 'REJECTED', 'stack', NULL, 'at', $2::bigint, 'worker', 'cli'))`;
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
        [runId, now, ...held.params],
      );
      const n = rows.reduce((sum, row) => sum + (row.n as number), 0);
      if (rejected.length > 0) await this.#releaseParents(tx, runId, rejected, now);
      if (n > 0) {
        await tx.query(`UPDATE ${t.runs} SET state = 'running', pause_reason = NULL WHERE id = $1 AND state = 'paused' AND n_parked = 0`, [runId]);
        const state = await this.#settle(tx, runId, true);
        if (decision === 'approve' || state === 'running') await this.#notify(tx, [runId]);
      }
      return n;
    });
  }
}
