import { crc32 } from 'node:zlib';
import Database from 'better-sqlite3';

/**
 * A stored text value without the checksum rlm seals it with (8 hex digits of the CRC-32 of the rest; see
 * src/store/checksum.ts), checked as an auditor would; a value that fails its checksum comes back marked.
 */
export function unsealed(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const body = value.slice(8);
  return value.slice(0, 8) === crc32(body).toString(16).padStart(8, '0') ? body : `(checksum mismatch) ${value}`;
}

/** Reads a SQLite store directly, as an auditor would: every node of a run and the file's integrity. */
export function auditSqlite(path: string, runId: string) {
  const db = new Database(path, { readonly: true });
  try {
    const integrity = (db.prepare('PRAGMA integrity_check').all() as { integrity_check: string }[]).map((r) => r.integrity_check);
    const states = Object.fromEntries(
      (db.prepare('SELECT state, count(*) AS n FROM rlm_nodes WHERE run_id = ? GROUP BY state').all(runId) as { state: string; n: number }[]).map((r) => [r.state, r.n]),
    );
    const duplicates = (
      db.prepare('SELECT count(*) AS n FROM (SELECT parent_id, ord FROM rlm_nodes WHERE run_id = ? AND parent_id IS NOT NULL GROUP BY parent_id, ord HAVING count(*) > 1)').get(runId) as {
        n: number;
      }
    ).n;
    const counters = db.prepare('SELECT n_pending, n_running, n_waiting, n_done, n_dead, n_parked, state, result FROM rlm_runs WHERE id = ?').get(runId) as Record<string, unknown>;
    counters.result = unsealed(counters.result);
    return { integrity, states, duplicates, counters };
  } finally {
    db.close();
  }
}
