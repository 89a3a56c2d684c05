import { ConfigError } from '../engine/errors.js';
import type { Store } from './store.js';

/** Hides the password of a connection string, for logs, errors and status output. */
export function redactUrl(url: string): string {
  return url.replace(/^(\w+:\/\/[^:/@]*:)[^@]*@/, '$1***@').replace(/([?&]password=)[^&]*/i, '$1***');
}

/**
 * Opens the store a URL names: `sqlite:<path>` (or a bare path ending in .db) or `postgres://…`.
 * Drivers load on demand, so a SQLite user never loads `pg` and the other way round.
 */
export async function openStore(url: string, options: { mustExist?: boolean } = {}): Promise<Store> {
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const { PostgresStore } = await import('./postgres/postgres-store.js');
    return new PostgresStore({ connectionString: url });
  }
  if (url.startsWith('sqlite:') || url.endsWith('.db') || url.endsWith('.sqlite')) {
    const path = url.startsWith('sqlite://') ? url.slice('sqlite://'.length) : url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url;
    if (path === '') throw new ConfigError('The store URL `sqlite:` names no file; use sqlite:<path>, e.g. sqlite:.rlm/rlm.db.');
    const { SqliteStore } = await import('./sqlite/sqlite-store.js');
    return new SqliteStore({ path, mustExist: options.mustExist, synchronous: process.env.RLM_SQLITE_SYNCHRONOUS === 'NORMAL' ? 'NORMAL' : 'FULL' });
  }
  throw new ConfigError(`Unknown store URL \`${redactUrl(url)}\`: use sqlite:<path> or postgres://user@host/db.`);
}
