/**
 * `rlm doctor` on a SQLite store: SQLite's own check of the file, then rlm's: every constraint, every stored
 * value against its checksum, every run's counters and every waiting node's unfinished-children counter against
 * a recount. Reads the whole file (O(store)); it writes nothing.
 */
import { counterProblems, type DoctorReport } from '../audit.js';
import { ChecksumError, open, openErrors } from '../checksum.js';
import { CONSTRAINTS } from '../constraints.js';
import { countsFromRow, type Row } from '../rows.js';
import type { SqliteDatabase } from './sqlite-store.js';

/** At most this many lines per kind of problem: a badly damaged file would print forever. */
const LIMIT = 20;

const PAYLOADS: { table: string; key: string; columns: string[]; errors?: boolean }[] = [
  { table: 'rlm_runs', key: 'id', columns: ['input', 'context', 'result'] },
  { table: 'rlm_nodes', key: 'id, run_id, key', columns: ['input', 'context', 'result'], errors: true },
  { table: 'rlm_emits', key: 'seq, run_id, node_id', columns: ['record'] },
  { table: 'rlm_effects', key: 'run_id, node_id, name', columns: ['value'] },
];

/** How a row of each table is named in a report (some tables have no rowid). */
const KEYS: Record<string, string> = {
  rlm_runs: "'run ' || id",
  rlm_nodes: "'node ' || id",
  rlm_edges: "'edge ' || parent_id || '->' || child_id",
  rlm_emits: "'record ' || seq",
  rlm_effects: "'effect ' || run_id || '/' || node_key || '/' || name",
  rlm_workers: "'worker ' || id",
  rlm_meta: 'key',
};

export function doctorSqlite(db: SqliteDatabase): DoctorReport {
  const problems: string[] = [];
  const checked: Record<string, number> = {};
  // A file damaged enough that a check cannot even run says so, and the other checks go on.
  const section = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      problems.push(`STORE_CORRUPT could not check ${what}: ${(error as Error).message}${typeof code === 'string' ? ` (${code})` : ''}`);
    }
  };
  section('the file', () => {
    const integrity = (db.prepare(`PRAGMA integrity_check(${LIMIT})`).all() as Row[]).map((row) => String(Object.values(row)[0]));
    checked.integrity = 1;
    if (!(integrity.length === 1 && integrity[0] === 'ok')) problems.push(...integrity.map((line) => `STORE_CORRUPT SQLite integrity check: ${line}`));
  });
  section('the constraints', () => constraintProblems(db, checked, problems));
  section('the stored values', () => valueProblems(db, checked, problems));
  section('the counters', () => counterLines(db, checked, problems));
  return { checked, problems };
}

function constraintProblems(db: SqliteDatabase, checked: Record<string, number>, problems: string[]): void {
  for (const c of CONSTRAINTS) {
    const key = KEYS[c.table];
    const rows = db.prepare(`SELECT ${key} AS k FROM ${c.table} WHERE NOT (${c.sqlite}) LIMIT 3`).all() as Row[];
    checked.constraints = (checked.constraints ?? 0) + 1;
    if (rows.length > 0) problems.push(`STORE_CORRUPT ${c.table}: row(s) break ${c.name} (${c.sqlite}), e.g. ${rows.map((r) => String(r.k)).join(', ')}`);
  }
}

function valueProblems(db: SqliteDatabase, checked: Record<string, number>, problems: string[]): void {
  let bad = 0;
  checked.values = checkValues(db, null, (error) => {
    if (++bad <= LIMIT) problems.push(`STORE_CORRUPT ${error.message}`);
  });
  if (bad > LIMIT) problems.push(`STORE_CORRUPT … and ${bad - LIMIT} more damaged values`);
}

/**
 * A run's check once per resume, in one read transaction of the caller's: every value of the run against its
 * checksum (the first damaged one is thrown, naming its place), SQLite's check of the whole file (a damaged
 * index would hide nodes from the frontier or keys from dedupe; it also checks the CHECK constraints) and the
 * run's counters against a recount of its rows.
 */
export function runProblems(db: SqliteDatabase, runId: string): string[] {
  checkValues(db, runId, (error) => {
    throw error;
  });
  const out = (db.prepare('PRAGMA integrity_check(10)').all() as Row[]).map((row) => String(Object.values(row)[0]));
  const found = out.length === 1 && out[0] === 'ok' ? [] : out.map((line) => `SQLite integrity check: ${line}`);
  const run = db.prepare('SELECT * FROM rlm_runs WHERE id = ?').get(runId) as Row | undefined;
  if (!run) return found;
  const recount = new Map<string, number>();
  for (const row of db.prepare('SELECT state, count(*) AS n FROM rlm_nodes WHERE run_id = ? AND dropped = 0 GROUP BY state').all(runId) as Row[]) {
    recount.set(String(row.state), row.n as number);
  }
  return found.concat(counterProblems(runId, countsFromRow(run), recount));
}

/**
 * Checks every stored value (of one run, or of the store) against its checksum; calls `onDamage` for each that
 * fails. Returns how many values it checked.
 */
function checkValues(db: SqliteDatabase, runId: string | null, onDamage: (error: ChecksumError) => void): number {
  let n = 0;
  for (const spec of PAYLOADS) {
    const columns = [...spec.columns, ...(spec.errors ? ['errors'] : [])];
    const where = runId === null ? '' : spec.table === 'rlm_runs' ? 'WHERE id = ?' : 'WHERE run_id = ?';
    const stmt = db.prepare(`SELECT ${spec.key}, ${columns.join(', ')} FROM ${spec.table} ${where}`);
    for (const row of (runId === null ? stmt.iterate() : stmt.iterate(runId)) as IterableIterator<Row>) {
      for (const column of columns) {
        if (row[column] === null) continue;
        n++;
        try {
          if (column === 'errors') openErrors(row[column], { table: spec.table, column, row });
          else open(row[column], { table: spec.table, column, row });
        } catch (error) {
          if (!(error instanceof ChecksumError)) throw error;
          onDamage(error);
        }
      }
    }
  }
  return n;
}

function counterLines(db: SqliteDatabase, checked: Record<string, number>, problems: string[]): void {
  const recounts = new Map<string, Map<string, number>>();
  for (const row of db.prepare('SELECT run_id, state, count(*) AS n FROM rlm_nodes WHERE dropped = 0 GROUP BY run_id, state').all() as Row[]) {
    const runId = String(row.run_id);
    const counts = recounts.get(runId) ?? new Map<string, number>();
    counts.set(String(row.state), row.n as number);
    recounts.set(runId, counts);
  }
  for (const run of db.prepare('SELECT * FROM rlm_runs').all() as Row[]) {
    checked.runs = (checked.runs ?? 0) + 1;
    const runId = String(run.id);
    for (const line of counterProblems(runId, countsFromRow(run), recounts.get(runId) ?? new Map())) problems.push(`STORE_CORRUPT ${line}`);
    recounts.delete(runId);
  }
  for (const [runId, counts] of recounts) {
    problems.push(`STORE_CORRUPT ${[...counts.values()].reduce((a, b) => a + b, 0)} node(s) name run ${JSON.stringify(runId)}, which the store does not hold`);
  }

  const waiting = db
    .prepare(
      `SELECT p.id, p.run_id, p.key, p.pending_children AS counter,
         (SELECT count(*) FROM rlm_nodes c WHERE c.parent_id = p.id AND NOT (c.state = 'done' OR (c.state = 'dead' AND r.pass_dead = 1)))
         + (SELECT count(*) FROM rlm_edges e JOIN rlm_nodes c ON c.id = e.child_id WHERE e.parent_id = p.id AND NOT (c.state = 'done' OR (c.state = 'dead' AND r.pass_dead = 1))) AS recount
       FROM rlm_nodes p JOIN rlm_runs r ON r.id = p.run_id WHERE p.state = 'waiting'`,
    )
    .all() as Row[];
  checked.waiting = waiting.length;
  let off = 0;
  for (const row of waiting) {
    if (row.counter === row.recount) continue;
    if (++off <= LIMIT) {
      problems.push(
        `STORE_CORRUPT run ${JSON.stringify(String(row.run_id))}, node ${String(row.id)} (key ${JSON.stringify(String(row.key))}): waits for ${String(row.counter)} unfinished children, its rows say ${String(row.recount)}`,
      );
    }
  }
  if (off > LIMIT) problems.push(`STORE_CORRUPT … and ${off - LIMIT} more waiting nodes whose counters are off`);

  const meta = db.prepare("SELECT value, (SELECT coalesce(max(id), 0) FROM rlm_nodes) AS top FROM rlm_meta WHERE key = 'next_node_id'").get() as Row | undefined;
  if (!meta || typeof meta.value !== 'number' || meta.value <= (meta.top as number)) {
    problems.push(`STORE_CORRUPT rlm_meta: next_node_id is ${String(meta?.value)}, but node ids go up to ${String(meta?.top)}: new nodes would reuse ids`);
  }
}
