import { ConfigError } from '../engine/errors.js';
import type { Store } from './store.js';

/** Hides the password of a connection string, for logs, errors and status output. */
export function redactUrl(text: string): string {
  // Anywhere in the text: driver errors quote the URL in the middle of a sentence.
  return text.replace(/(\b[a-z][\w+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@').replace(/([?&]password=)[^&\s]*/gi, '$1***');
}

export interface OpenStoreOptions {
  /** Refuse to create a SQLite file: a missing store is an error, not a new one (status, results, inspect). */
  mustExist?: boolean;
  /**
   * SQLite only: run the store on a worker thread of its own (SqliteThreadStore), so its writes and fsyncs
   * overlap the steps. `rlm run` and `rlm worker` do. Ignored for PostgreSQL, whose driver never blocks.
   */
  thread?: boolean;
}

/**
 * Opens the store a URL names: `sqlite:<path>` (or a bare path ending in .db) or `postgres://…[?schema=NAME]`.
 * Drivers load on demand, so a SQLite user never loads `pg` and the other way round.
 */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<Store> {
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    // `?schema=NAME` picks the schema of rlm's tables (one database can hold several deployments).
    let connectionString = url;
    let schema: string | undefined;
    try {
      const parsed = new URL(url);
      schema = parsed.searchParams.get('schema') ?? undefined;
      parsed.searchParams.delete('schema');
      connectionString = parsed.toString();
    } catch {
      throw new ConfigError(`The store URL \`${redactUrl(url)}\` is not a valid postgres:// URL.`);
    }
    const { PostgresStore } = await import('./postgres/postgres-store.js');
    return new PostgresStore({ connectionString, schema });
  }
  if (url.startsWith('sqlite:') || url.endsWith('.db') || url.endsWith('.sqlite')) {
    const path = url.startsWith('sqlite://') ? url.slice('sqlite://'.length) : url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url;
    if (path === '') throw new ConfigError('The store URL `sqlite:` names no file; use sqlite:<path>, e.g. sqlite:.rlm/rlm.db.');
    const config = { path, mustExist: options.mustExist, synchronous: process.env.RLM_SQLITE_SYNCHRONOUS === 'NORMAL' ? ('NORMAL' as const) : ('FULL' as const) };
    if (options.thread) {
      const { SqliteThreadStore } = await import('./sqlite/thread.js');
      return new SqliteThreadStore(config);
    }
    const { SqliteStore } = await import('./sqlite/sqlite-store.js');
    return new SqliteStore(config);
  }
  throw new ConfigError(`Unknown store URL \`${redactUrl(url)}\`: use sqlite:<path> or postgres://user@host/db.`);
}
