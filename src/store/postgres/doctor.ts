/**
 * `rlm doctor` on a PostgreSQL schema: rlm's tables, indexes (present and valid) and constraints (present and
 * validated), then every constraint's rows, every stored value against its checksum, every run's counters and
 * every waiting node's unfinished-children counter against a recount, and leases held by workers that are gone.
 * Reads the whole schema (O(store), in batches); it writes nothing.
 */
import { counterProblems, type DoctorReport } from '../audit.js';
import { ChecksumError, openErrors } from '../checksum.js';
import { CONSTRAINTS } from '../constraints.js';
import { countsFromRow, type Row } from '../rows.js';
import { payloadOf } from './rows.js';
import { MIGRATIONS, type Tables } from './schema.js';

type Query = (text: string, values?: readonly unknown[]) => Promise<Row[]>;

const LIMIT = 20;
const BATCH = 5_000;
const DB_NOW = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

const PAYLOADS: { table: keyof Tables; name: string; key: string[]; types: string[]; extra: string[]; columns: string[]; errors?: boolean }[] = [
  { table: 'runs', name: 'rlm_runs', key: ['id'], types: ['text'], extra: [], columns: ['input', 'context', 'result'] },
  { table: 'nodes', name: 'rlm_nodes', key: ['id'], types: ['bigint'], extra: ['run_id', 'key'], columns: ['input', 'context', 'result'], errors: true },
  { table: 'emits', name: 'rlm_emits', key: ['seq'], types: ['bigint'], extra: ['run_id', 'node_id'], columns: ['record'] },
  { table: 'effects', name: 'rlm_effects', key: ['run_id', 'node_key', 'name'], types: ['text', 'text', 'text'], extra: ['node_id'], columns: ['value'] },
];

/**
 * Checks every stored value (of one run, or of the schema) against its checksum, a batch of rows at a time in
 * key order; calls `onDamage` for each that fails. Returns how many values it checked.
 */
export async function checkValuesPostgres(query: Query, t: Tables, runId: string | null, onDamage: (error: ChecksumError) => void): Promise<number> {
  let n = 0;
  for (const spec of PAYLOADS) {
    const read = [...spec.key, ...spec.extra, ...spec.columns, ...(spec.errors ? ['errors'] : [])];
    const runColumn = spec.table === 'runs' ? 'id' : 'run_id';
    let after: unknown[] | null = null;
    for (;;) {
      const params: unknown[] = runId === null ? [] : [runId];
      const conditions = runId === null ? [] : [`${runColumn} = $1`];
      if (after !== null) {
        conditions.push(`(${spec.key.join(', ')}) > (${spec.key.map((_, i) => `$${params.length + i + 1}::${spec.types[i]}`).join(', ')})`);
        params.push(...after);
      }
      const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
      const rows = await query(`SELECT ${read.join(', ')} FROM ${t[spec.table]} ${where} ORDER BY ${spec.key.join(', ')} LIMIT ${BATCH}`, params);
      for (const row of rows) {
        for (const column of [...spec.columns, ...(spec.errors ? ['errors'] : [])]) {
          if (row[column] === null) continue;
          n++;
          try {
            if (column === 'errors') openErrors(row[column], { table: spec.name, column, row });
            else payloadOf(row[column], { table: spec.name, column, row });
          } catch (error) {
            if (!(error instanceof ChecksumError)) throw error;
            onDamage(error);
          }
        }
      }
      if (rows.length < BATCH) break;
      const last = rows[rows.length - 1] as Row;
      after = spec.key.map((k) => last[k]);
    }
  }
  return n;
}

/** The tables and indexes rlm's migrations create, read from their SQL. */
function expectedObjects(): { tables: string[]; indexes: string[] } {
  const sql = MIGRATIONS.map((m) => m.sql).join('\n');
  return {
    tables: ['rlm_migrations', ...[...sql.matchAll(/CREATE TABLE (rlm_\w+)/g)].map((m) => m[1] as string)],
    indexes: [...sql.matchAll(/CREATE (?:UNIQUE )?INDEX (rlm_\w+)/g)].map((m) => m[1] as string),
  };
}

export async function doctorPostgres(query: Query, t: Tables, schema: string): Promise<DoctorReport> {
  const problems: string[] = [];
  const notes: string[] = [];
  const checked: Record<string, number> = {};
  const expected = expectedObjects();

  const tables = new Set((await query('SELECT tablename FROM pg_tables WHERE schemaname = $1', [schema])).map((r) => String(r.tablename)));
  checked.tables = expected.tables.length;
  const missingTables = expected.tables.filter((name) => !tables.has(name));
  for (const name of missingTables) problems.push(`STORE_CORRUPT table ${schema}.${name} is missing`);
  if (missingTables.length > 0) return { checked, problems, notes };

  const indexes = new Map(
    (
      await query(
        `SELECT c.relname, i.indisvalid, i.indisready FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1`,
        [schema],
      )
    ).map((r) => [String(r.relname), r.indisvalid === true && r.indisready === true]),
  );
  checked.indexes = expected.indexes.length;
  for (const name of expected.indexes) {
    if (!indexes.has(name)) problems.push(`STORE_CORRUPT index ${schema}.${name} is missing: claims and lookups it serves scan whole tables, dedupe may not hold`);
    else if (!indexes.get(name)) problems.push(`STORE_CORRUPT index ${schema}.${name} is invalid (a failed build?): REINDEX INDEX ${schema}.${name}`);
  }

  const constraints = new Map(
    (
      await query(`SELECT c.conname, c.convalidated FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1 AND c.contype = 'c'`, [schema])
    ).map((r) => [String(r.conname), r.convalidated === true]),
  );
  for (const c of CONSTRAINTS) {
    if (!c.postgres) continue;
    checked.constraints = (checked.constraints ?? 0) + 1;
    if (!constraints.has(c.name)) problems.push(`STORE_CORRUPT constraint ${c.name} on ${schema}.${c.table} is missing (CHECK (${c.postgres}))`);
    else if (!constraints.get(c.name)) problems.push(`STORE_CORRUPT constraint ${c.name} on ${schema}.${c.table} is not validated`);
    const table = t[c.table.replace(/^rlm_/, '') as keyof Tables];
    const bad = await query(`SELECT count(*)::int AS n FROM ${table} WHERE NOT (${c.postgres})`);
    if (Number(bad[0]?.n ?? 0) > 0) problems.push(`STORE_CORRUPT ${c.table}: ${String(bad[0]?.n)} row(s) break ${c.name} (${c.postgres})`);
  }

  let damaged = 0;
  checked.values = await checkValuesPostgres(query, t, null, (error) => {
    if (++damaged <= LIMIT) problems.push(`STORE_CORRUPT ${error.message}`);
  });
  if (damaged > LIMIT) problems.push(`STORE_CORRUPT … and ${damaged - LIMIT} more damaged values`);

  // Each run's counters and its recount in one statement, so of one snapshot: workers may be committing meanwhile.
  for (const run of await query(
    `SELECT r.*, (SELECT json_object_agg(s.state, s.n) FROM (SELECT state, count(*) AS n FROM ${t.nodes} WHERE run_id = r.id AND NOT dropped GROUP BY state) s) AS recount FROM ${t.runs} r`,
  )) {
    checked.runs = (checked.runs ?? 0) + 1;
    const recount = new Map(Object.entries((run.recount ?? {}) as Record<string, number>).map(([state, n]) => [state, Number(n)]));
    for (const line of counterProblems(String(run.id), countsFromRow(run), recount)) problems.push(`STORE_CORRUPT ${line}`);
  }
  for (const row of await query(`SELECT n.run_id, count(*)::int AS n FROM ${t.nodes} n WHERE NOT EXISTS (SELECT 1 FROM ${t.runs} r WHERE r.id = n.run_id) GROUP BY n.run_id`)) {
    problems.push(`STORE_CORRUPT ${String(row.n)} node(s) name run ${JSON.stringify(String(row.run_id))}, which the store does not hold`);
  }

  const unfinished = (c: string) => `NOT (${c}.state = 'done' OR (${c}.state = 'dead' AND r.pass_dead))`;
  const waiting = await query(
    `SELECT p.id, p.run_id, p.key, p.pending_children AS counter,
       (SELECT count(*) FROM ${t.nodes} c WHERE c.parent_id = p.id AND ${unfinished('c')})
       + (SELECT count(*) FROM ${t.edges} e JOIN ${t.nodes} c ON c.id = e.child_id WHERE e.parent_id = p.id AND ${unfinished('c')}) AS recount
     FROM ${t.nodes} p JOIN ${t.runs} r ON r.id = p.run_id WHERE p.state = 'waiting'`,
  );
  checked.waiting = waiting.length;
  let off = 0;
  for (const row of waiting) {
    if (Number(row.counter) === Number(row.recount)) continue;
    if (++off <= LIMIT) {
      problems.push(
        `STORE_CORRUPT run ${JSON.stringify(String(row.run_id))}, node ${String(row.id)} (key ${JSON.stringify(String(row.key))}): waits for ${String(row.counter)} unfinished children, its rows say ${String(row.recount)}`,
      );
    }
  }
  if (off > LIMIT) problems.push(`STORE_CORRUPT … and ${off - LIMIT} more waiting nodes whose counters are off`);

  const [meta] = await query(`SELECT value, (SELECT coalesce(max(id), 0) FROM ${t.nodes}) AS top FROM ${t.meta} WHERE key = 'next_node_id'`);
  if (!meta || Number(meta.value) <= Number(meta.top)) {
    problems.push(`STORE_CORRUPT rlm_meta: next_node_id is ${String(meta?.value)}, but node ids go up to ${String(meta?.top)}: new nodes would reuse ids`);
  }

  // Leases: a running node whose owner is not an alive worker is held by nobody (a take-back marks the worker dead
  // and frees its nodes in one transaction). An alive worker past its lease is normal for a moment: the next
  // worker to look takes its nodes back.
  const orphans = await query(
    `SELECT n.run_id, count(*)::int AS n, min(n.id) AS example FROM ${t.nodes} n LEFT JOIN ${t.workers} w ON w.id = n.owner
      WHERE n.state = 'running' AND (w.id IS NULL OR w.state <> 'alive') GROUP BY n.run_id`,
  );
  checked.leases = 1;
  for (const row of orphans) {
    problems.push(
      `STORE_CORRUPT run ${JSON.stringify(String(row.run_id))}: ${String(row.n)} running node(s) (e.g. node ${String(row.example)}) leased to workers that are not alive; nobody will finish or take them back`,
    );
  }
  const expired = await query(`SELECT count(*)::int AS n FROM ${t.workers} WHERE state = 'alive' AND lease_until < ${DB_NOW}`);
  if (Number(expired[0]?.n ?? 0) > 0) notes.push(`${String(expired[0]?.n)} worker(s) past their lease; the next worker to look takes their nodes back`);
  return { checked, problems, notes };
}
