/*
 * Connections to PostgreSQL: the pool, transactions, retries and the unknown commit outcome.
 *
 * - Transient errors (a dropped connection, a server restarting, a serialization failure or deadlock) are
 *   retried with exponential backoff on a fresh connection until `retryForMs` has passed.
 * - A write transaction reads its transaction id with BEGIN. When the connection drops while COMMIT is in
 *   flight, nobody knows whether the commit happened: the session asks the server (`txid_status`), ending the
 *   orphaned backend if it is still running, and only retries the transaction once it is known to have
 *   aborted. A transaction is never applied twice. A connection lost earlier in the transaction is resolved
 *   the same way, so a retry never runs while the orphaned transaction still holds its row locks.
 */
import { ConfigError, StoreCorruptError, StoreUnavailableError } from '../../engine/errors.js';
import { failpoints } from '../../failpoints.js';

export type Row = Record<string, unknown>;

/** The part of pg's query result that PostgresStore uses. */
export interface PgResult {
  rows: Row[];
  rowCount: number | null;
}

/** The part of pg's pooled client that PostgresStore uses. */
export interface PgClient {
  query(text: string, values?: readonly unknown[]): Promise<PgResult | PgResult[]>;
  release(destroy?: Error | boolean): void;
  escapeLiteral(text: string): string;
  readonly processID: number | null;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** The part of pg's Pool that PostgresStore uses. */
export interface PgPool {
  connect(): Promise<PgClient>;
  query(text: string, values?: readonly unknown[]): Promise<PgResult>;
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** The part of pg's Client that the LISTEN connection uses. */
export interface PgListenClient {
  connect(): Promise<unknown>;
  query(text: string): Promise<unknown>;
  end(): Promise<void>;
  on(event: 'notification', listener: (message: { channel: string; payload?: string }) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
}

interface PgModule {
  Pool: new (config: Record<string, unknown>) => PgPool;
  Client: new (config: Record<string, unknown>) => PgListenClient;
  types: { getTypeParser(oid: number, format?: string): (value: string) => unknown };
}

export interface SessionConfig {
  connectionString: string;
  /** Printed instead of the connection string: it has no password. */
  description: string;
  poolSize: number;
  applicationName: string;
  retryForMs: number;
  idleInTransactionTimeoutMs: number;
  connectTimeoutMs: number;
}

const INT8_OID = 20;

/** SQLSTATEs worth a retry: the transaction did not happen and may well succeed on a fresh try. */
const TRANSIENT_STATES = new Set(['40001', '40P01', '53300', '55P03', '57P01', '57P02', '57P03']);
const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED']);
// pg reports a connection that ended under it with an Error that has no code, only these messages.
const PG_CONNECTION_MESSAGES = /Connection terminated|connection error and is not queryable|Client was closed and is not queryable|timeout exceeded when trying to connect/;

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The connection is gone (or the server ended the session): the outcome of an in-flight COMMIT is unknown. */
export function isConnectionLoss(error: unknown): boolean {
  const code = codeOf(error);
  // 25P03: the server ended a session left idle inside a transaction (a frozen worker that woke up).
  if (code !== undefined && (NETWORK_CODES.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '25P03')) return true;
  return error instanceof Error && code === undefined && PG_CONNECTION_MESSAGES.test(error.message);
}

export function isTransient(error: unknown): boolean {
  const code = codeOf(error);
  return isConnectionLoss(error) || (code !== undefined && TRANSIENT_STATES.has(code));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let driver: Promise<PgModule> | undefined;

/** Loads `pg` on first use, so SQLite users never need it. */
function loadDriver(): Promise<PgModule> {
  driver ??= import('pg').then(
    (module) => ((module as { default?: unknown }).default ?? module) as PgModule,
    (error: unknown) => {
      driver = undefined;
      throw new StoreUnavailableError(`The PostgreSQL driver (pg) could not be loaded: ${(error as Error).message}. Install it with \`npm install pg\`.`, {
        cause: error,
      });
    },
  );
  return driver;
}

/** One write transaction: its client, and its transaction id once BEGIN has run. */
export class Transaction {
  readonly client: PgClient;
  xid: string | null = null;
  readonly pid: number | null;

  constructor(client: PgClient) {
    this.client = client;
    this.pid = client.processID;
  }

  /**
   * Starts the transaction and reads its id; `sql` (statements without parameters, values inlined with
   * `literal`) runs in the same round trip. Returns the results of `sql`'s statements.
   */
  async begin(sql = ''): Promise<PgResult[]> {
    const results = (await this.client.query(`BEGIN; SELECT txid_current()::text AS xid;${sql}`)) as PgResult[];
    this.xid = String(results[1]?.rows[0]?.xid);
    return results.slice(2);
  }

  async query(text: string, values?: readonly unknown[]): Promise<Row[]> {
    return ((await this.client.query(text, values)) as PgResult).rows;
  }

  /** A string as an SQL literal, for statements sent without parameters. */
  literal(text: string): string {
    return this.client.escapeLiteral(text);
  }
}

export interface WriteOptions<T> {
  /** Hits the `commit.beforeCommit` and `commit.afterCommit` failpoints (the step commit only). */
  failpoints?: boolean;
  /** After a COMMIT whose outcome was unknown turned out to have happened: what to return instead of the value. */
  recover?: () => Promise<T | undefined>;
}

/** The pool, the retry policy and the unknown-outcome protocol of one PostgresStore. */
export class Session {
  readonly #config: SessionConfig;
  #pool: Promise<PgPool> | undefined;
  #closed = false;

  constructor(config: SessionConfig) {
    this.#config = config;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async driver(): Promise<PgModule> {
    return loadDriver();
  }

  /** Connection settings for a client outside the pool (the LISTEN connection). */
  clientConfig(suffix: string): Record<string, unknown> {
    return {
      connectionString: this.#config.connectionString,
      application_name: `${this.#config.applicationName}${suffix}`,
      connectionTimeoutMillis: this.#config.connectTimeoutMs,
      keepAlive: true,
    };
  }

  #openPool(): Promise<PgPool> {
    this.#pool ??= loadDriver().then((pg) => {
      const pool = new pg.Pool({
        ...this.clientConfig(''),
        max: this.#config.poolSize,
        // BIGINT ids and counters fit a double; without this pg returns them as strings. Scoped to this pool.
        types: { getTypeParser: (oid: number, format?: string) => (oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format)) },
        // A session stuck in a transaction (a frozen worker, a network partition) must not hold its row
        // locks forever. Durability of a commit is the point of the store: synchronous_commit stays on.
        // JIT compiling the large one-statement commits costs far more than it saves.
        onConnect: (client: PgClient) => {
          // A checked-out client whose backend is terminated between queries emits 'error' with no pool
          // listener attached; the query in flight (or the next one) fails and is retried, so the event is
          // only noise, but unheard it would crash the process.
          client.on('error', () => undefined);
          return client.query(
            `SET idle_in_transaction_session_timeout = ${Math.max(0, Math.trunc(this.#config.idleInTransactionTimeoutMs))}; SET synchronous_commit = on; SET jit = off`,
          );
        },
      });
      // An idle client whose connection breaks (a server restart) is dropped from the pool; without a
      // listener, pg's 'error' event would crash the process.
      pool.on('error', () => undefined);
      return pool;
    });
    return this.#pool;
  }

  async #connect(): Promise<PgClient> {
    if (this.#closed) throw new StoreUnavailableError(`The store ${this.#config.description} is closed.`);
    const pool = await this.#openPool();
    return pool.connect();
  }

  /** Maps a driver error to the RlmError a caller can act on; other errors pass through. */
  map(error: unknown): unknown {
    const code = codeOf(error);
    const message = (error as Error)?.message ?? String(error);
    if (isTransient(error)) {
      return new StoreUnavailableError(
        `PostgreSQL at ${this.#config.description} could not be reached for ${Math.round(this.#config.retryForMs / 1000)} s (${code ?? message}). ` +
          'Check that the server is up and reachable, then run the same command again to resume.',
        { cause: error },
      );
    }
    if (code === 'ERR_INVALID_URL') {
      // The driver's error carries the URL, password included: it is not kept as the cause.
      return new ConfigError(`The store URL ${this.#config.description} is not a valid postgres:// URL.`);
    }
    if (code === '23514') {
      // rlm writes only the values its schema allows: a write that breaks a CHECK constraint met a row changed
      // outside rlm (an UPDATE that went around it), or a bug in rlm.
      const constraint = (error as { constraint?: unknown }).constraint;
      return new StoreCorruptError(
        `The store ${this.#config.description} is damaged: a stored row holds a value outside rlm's schema (constraint ${String(constraint ?? 'unknown')}: ${message}). ` +
          'rlm will not go on with it: restore the schema from a backup (`rlm doctor` lists what it finds).',
        { cause: error },
      );
    }
    if (code === '28P01' || code === '28000' || code === '3D000' || code === 'ENOTFOUND' || code === '42501') {
      return new StoreUnavailableError(`Cannot use PostgreSQL at ${this.#config.description}: ${message} (${code}).`, { cause: error });
    }
    return error;
  }

  async #backoff(error: unknown, attempt: number, deadline: number): Promise<void> {
    if (this.#closed || Date.now() >= deadline) throw this.map(error);
    const ceiling = Math.min(2_000, 25 * 2 ** attempt);
    await sleep(Math.min(Math.max(0, deadline - Date.now()), ceiling / 2 + Math.random() * (ceiling / 2)));
  }

  /** One statement outside a transaction (reads, idempotent writes), retried on transient errors. */
  async query(text: string, values?: readonly unknown[]): Promise<Row[]> {
    const deadline = Date.now() + this.#config.retryForMs;
    for (let attempt = 1; ; attempt++) {
      try {
        if (this.#closed) throw new StoreUnavailableError(`The store ${this.#config.description} is closed.`);
        const pool = await this.#openPool();
        return (await pool.query(text, values)).rows;
      } catch (error) {
        if (!isTransient(error)) throw this.map(error);
        await this.#backoff(error, attempt, deadline);
      }
    }
  }

  /**
   * Runs `body` in one transaction and commits it. Transient errors retry the whole transaction; a COMMIT
   * whose outcome is unknown is resolved with the server before anything is retried.
   */
  async write<T>(body: (tx: Transaction) => Promise<T>, options: WriteOptions<T> = {}): Promise<T> {
    const deadline = Date.now() + this.#config.retryForMs;
    for (let attempt = 1; ; attempt++) {
      let client: PgClient;
      try {
        client = await this.#connect();
      } catch (error) {
        if (!isTransient(error)) throw this.map(error);
        await this.#backoff(error, attempt, deadline);
        continue;
      }
      const tx = new Transaction(client);
      let committing = false;
      let value: T | undefined;
      try {
        value = await body(tx);
        if (options.failpoints && failpoints.active) failpoints.hit('commit.beforeCommit');
        committing = true;
        await client.query('COMMIT');
        if (options.failpoints && failpoints.active) failpoints.hit('commit.afterCommit');
        client.release();
        return value;
      } catch (error) {
        await this.#discard(client, error);
        if (tx.xid !== null && isConnectionLoss(error)) {
          // Until the server has ended the old transaction it holds its row locks (and may still commit):
          // a retry must not start before its outcome is known.
          const outcome = await this.#outcome(tx, deadline);
          if (outcome === 'committed' && committing) {
            if (!options.recover) return value as T;
            // The commit's own marker is the proof: after a server crash, txid_status can answer for a transaction
            // id handed out again by recovery. Without its marker the commit did not happen, and is retried.
            const recovered = await options.recover();
            if (recovered !== undefined) return recovered;
          }
        } else if (!isTransient(error)) {
          throw this.map(error);
        }
        await this.#backoff(error, attempt, deadline);
      }
    }
  }

  /** Rolls back on a healthy connection; a broken (or doubtful) one is destroyed, never reused. */
  async #discard(client: PgClient, error: unknown): Promise<void> {
    if (isConnectionLoss(error)) {
      client.release(true);
      return;
    }
    try {
      await client.query('ROLLBACK');
      client.release();
    } catch (rollbackError) {
      client.release(rollbackError instanceof Error ? rollbackError : true);
    }
  }

  /**
   * Whether a transaction whose COMMIT got no answer happened. While it is still in progress (the server has
   * not noticed that its client is gone), its backend is ended, which decides the outcome either way.
   */
  async #outcome(tx: Transaction, deadline: number): Promise<'committed' | 'aborted'> {
    for (let attempt = 1; ; attempt++) {
      const rows = await this.query('SELECT txid_status($1::bigint) AS status', [tx.xid]);
      const status = rows[0]?.status;
      if (status === 'committed' || status === 'aborted') return status;
      if (status !== 'in progress') {
        throw new StoreUnavailableError(`The outcome of transaction ${tx.xid} on ${this.#config.description} cannot be known (status ${String(status)}).`);
      }
      if (tx.pid !== null) await this.query('SELECT pg_terminate_backend($1)', [tx.pid]).catch(() => undefined);
      if (Date.now() >= deadline) {
        throw new StoreUnavailableError(`Transaction ${tx.xid} on ${this.#config.description} is still in progress after its connection was lost.`);
      }
      await sleep(Math.min(500, 10 * 2 ** attempt));
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pool = this.#pool;
    this.#pool = undefined;
    if (pool) await (await pool.catch(() => undefined))?.end();
  }
}

/** A LISTEN connection that wakes idle workers when new work is committed. */
export class Listener {
  readonly #session: Session;
  readonly #channel: string;
  #client: PgListenClient | undefined;
  #connecting: Promise<void> | undefined;
  readonly #waiters = new Set<() => void>();
  /** A notification arrived while nobody waited: the next wait returns at once. */
  #missed = false;
  #closed = false;

  constructor(session: Session, channel: string) {
    this.#session = session;
    this.#channel = channel;
  }

  #wake(): void {
    if (this.#waiters.size === 0) {
      this.#missed = true;
      return;
    }
    for (const waiter of [...this.#waiters]) waiter();
  }

  async #ensure(): Promise<void> {
    if (this.#client || this.#closed) return;
    this.#connecting ??= (async () => {
      const pg = await this.#session.driver();
      const client = new pg.Client(this.#session.clientConfig(':listen'));
      const drop = () => {
        if (this.#client === client) this.#client = undefined;
        client.end().catch(() => undefined);
      };
      client.on('error', drop);
      client.on('end', drop);
      client.on('notification', () => this.#wake());
      try {
        await client.connect();
        await client.query(`LISTEN ${quoteIdent(this.#channel)}`);
      } catch (error) {
        drop();
        throw error;
      }
      if (this.#closed) {
        await client.end().catch(() => undefined);
        return;
      }
      this.#client = client;
      // Notifications sent while this connection was down are lost: look for work once.
      this.#wake();
    })().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  /** Resolves on the next notification or after `timeoutMs`. Without a LISTEN connection it only waits. */
  async wait(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    await this.#ensure().catch(() => undefined);
    if (this.#missed) {
      this.#missed = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      this.#waiters.add(done);
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const waiter of [...this.#waiters]) waiter();
    await this.#connecting?.catch(() => undefined);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }
}

/** An SQL identifier, quoted. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
