/**
 * The "external system" that effects call: a SQLite file of its own, apart from rlm's store, with
 * UNIQUE(idem_key). It tells *calls* (which may exceed one after a crash between the call and the journal write)
 * from *applications* (which must be exactly one per effect), and it answers a repeated key with the value it
 * stored the first time, as an idempotent API does. The worker side (the upsert) is in task-lib.mjs.
 */
import Database from 'better-sqlite3';

export interface SinkRow {
  idemKey: string;
  node: string;
  name: string;
  value: string;
  calls: number;
}

export function createSink(path: string): void {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.exec(`
      CREATE TABLE IF NOT EXISTS sink (
        idem_key TEXT NOT NULL UNIQUE,
        node TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        calls INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY);
    `);
  } finally {
    db.close();
  }
}

export function readSink(path: string): SinkRow[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT idem_key, node, name, value, calls FROM sink').all() as Record<string, unknown>[]).map((row) => ({
      idemKey: row.idem_key as string,
      node: row.node as string,
      name: row.name as string,
      value: row.value as string,
      calls: row.calls as number,
    }));
  } finally {
    db.close();
  }
}

/** Calls and applications in total; re-invocations are calls beyond the first, made after a crash in the window. */
export function sinkTotals(rows: readonly SinkRow[]): { calls: number; applications: number; reinvocations: number } {
  const calls = rows.reduce((sum, row) => sum + row.calls, 0);
  return { calls, applications: rows.length, reinvocations: calls - rows.length };
}
