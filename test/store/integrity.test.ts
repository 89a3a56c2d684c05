/**
 * Stored data that cannot silently lie, on both stores: one byte changed inside each kind of stored value, and a
 * value outside its constraint in each kind of constrained column (on PostgreSQL through an UPDATE that goes
 * around rlm), is refused as STORE_CORRUPT naming the place by `rlm run`, `rlm results` and `rlm doctor`. A store
 * written by the schema before checksums and constraints is upgraded and reads back the same.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine } from '../../src/engine/engine.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { MIGRATIONS as PG_MIGRATIONS } from '../../src/store/postgres/schema.js';
import { MIGRATIONS as SQLITE_MIGRATIONS } from '../../src/store/sqlite/schema.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import task from '../fixtures/integrity.js';
import { runCli } from '../helpers/cli.js';
import { describePostgres, pgQuery } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

const MODULE = 'test/fixtures/integrity.ts';
const INPUT = '{"path":"r","depth":2}';
/** The records `rlm results` prints for the whole run, sorted. */
const RECORDS = ['r', 'r/0', 'r/0/0', 'r/0/1', 'r/1', 'r/1/0', 'r/1/1'].map((path) => JSON.stringify({ path, size: path.length })).sort();

/** One damage: where it is, and the words the refusals must name. */
interface Damage {
  name: string;
  /** Words each refusal names: the table and column, the run, the node. */
  place: RegExp;
}

/** Changes one character inside a stored text value (after its 8-digit checksum): a byte flipped on disk. */
function flipped(value: string): string {
  const at = value.length - 2;
  const c = value.charCodeAt(at);
  return value.slice(0, at) + String.fromCharCode(c === 0x30 ? 0x31 : c ^ 1) + value.slice(at + 1);
}

async function refusals(store: string, damage: Damage): Promise<void> {
  const [run, results, doctor] = await Promise.all([
    runCli(['run', MODULE, '--run', 'i', '--store', store]),
    runCli(['results', 'i', '--store', store]),
    runCli(['doctor', '--store', store]),
  ]);
  expect(run.code, `${damage.name}: rlm run ${run.stderr}`).toBe(2);
  // The resume note comes first (the run's check goes on beside the run), then the one line that ends it.
  expect(run.stderr, damage.name).toMatch(/^rlm: The store.* is damaged/m);
  expect(run.stderr, damage.name).toMatch(damage.place);
  expect(results.code, `${damage.name}: rlm results ${results.stderr}`).toBe(2);
  expect(results.stderr, damage.name).toMatch(damage.place);
  expect(results.stdout, `${damage.name}: rlm results printed records of a damaged run`).toBe('');
  expect(doctor.code, `${damage.name}: rlm doctor ${doctor.stdout}`).toBe(1);
  expect(doctor.stdout, damage.name).toContain('STORE_CORRUPT');
  expect(doctor.stdout, damage.name).toMatch(damage.place);
}

async function sound(store: string): Promise<void> {
  // The run first: a run that was only created has its records once it has run.
  const run = await runCli(['run', MODULE, '--run', 'i', '--store', store]);
  const [results, doctor] = await Promise.all([runCli(['results', 'i', '--store', store]), runCli(['doctor', '--store', store])]);
  expect(run.code, run.stderr).toBe(0);
  expect(run.stdout.trim()).toBe('7');
  expect(results.stdout.trim().split('\n').sort(), results.stderr).toEqual(RECORDS);
  expect(doctor.code, doctor.stdout).toBe(0);
  expect(doctor.stdout).toContain('integrity ok');
}

/** SQL that damages a SQLite store: a changed value (read, flipped, written back) or a column set outright. */
type SqliteDamage = Damage & { apply(db: Database.Database): void };

function flipSqlite(table: string, column: string, where: string): (db: Database.Database) => void {
  return (db) => {
    const row = db.prepare(`SELECT ${column} AS v FROM ${table} WHERE ${where}`).get() as { v: string } | undefined;
    if (!row) throw new Error(`no ${table}.${column} where ${where}`);
    db.prepare(`UPDATE ${table} SET ${column} = ? WHERE ${where}`).run(flipped(row.v));
  };
}

const SQLITE_DAMAGE: SqliteDamage[] = [
  { name: 'a run input', place: /rlm_runs\.input.*run "i"/, apply: flipSqlite('rlm_runs', 'input', "id = 'i'") },
  { name: 'a run result', place: /rlm_runs\.result.*run "i"/, apply: flipSqlite('rlm_runs', 'result', "id = 'i'") },
  { name: 'a node input', place: /rlm_nodes\.input.*run "i", node \d+, key "root\/0"/, apply: flipSqlite('rlm_nodes', 'input', "key = 'root/0'") },
  { name: 'a node context', place: /rlm_nodes\.context.*key "root\/0"/, apply: flipSqlite('rlm_nodes', 'context', "key = 'root/0'") },
  { name: 'a node result', place: /rlm_nodes\.result.*key "root\/0\/1"/, apply: flipSqlite('rlm_nodes', 'result', "key = 'root/0/1'") },
  { name: 'a node error entry', place: /rlm_nodes\.errors.*key "root\/1"/, apply: flipSqlite('rlm_nodes', 'errors', "key = 'root/1'") },
  { name: 'an emitted record', place: /rlm_emits\.record.*run "i", node \d+, record \d+/, apply: flipSqlite('rlm_emits', 'record', 'seq = 3') },
  { name: 'an effect value', place: /rlm_effects\.value.*run "i", node \d+, effect "size"/, apply: flipSqlite('rlm_effects', 'value', "node_key = 'root/1/0'") },
];

/** Constrained columns: SQLite is told to skip its checks for the damaging write, as a flipped byte on disk would. */
const SQLITE_COLUMNS: { name: string; place: RegExp; sql: string }[] = [
  { name: 'a node state', place: /rlm_nodes/, sql: "UPDATE rlm_nodes SET state = 'dxne' WHERE key = 'root/0/0'" },
  { name: 'a node phase', place: /rlm_nodes/, sql: "UPDATE rlm_nodes SET phase = 'rxn' WHERE key = 'root/0/0'" },
  { name: 'a node attempt count', place: /rlm_nodes/, sql: "UPDATE rlm_nodes SET attempts = -1 WHERE key = 'root/0/0'" },
  { name: 'a node flag', place: /rlm_nodes/, sql: "UPDATE rlm_nodes SET suspect = 3 WHERE key = 'root/0/0'" },
  { name: 'a run state', place: /rlm_runs/, sql: "UPDATE rlm_runs SET state = 'completxd'" },
  { name: 'a run counter below zero', place: /rlm_runs/, sql: 'UPDATE rlm_runs SET n_dead = -1' },
  { name: 'a run counter off by one', place: /run "?i"?.*pending counter says 1, its rows say 0/, sql: 'UPDATE rlm_runs SET n_pending = 1' },
];

describe('SQLite: a damaged value or column is STORE_CORRUPT naming its place, from rlm run, rlm results and rlm doctor', () => {
  const tmp = tempDir();
  const golden = join(tmp.dir, 'golden.db');

  beforeAll(async () => {
    const out = await runCli(['run', MODULE, '--input', INPUT, '--run', 'i', '--store', `sqlite:${golden}`]);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout.trim()).toBe('7');
    // Copies are of the file alone: everything committed goes into it first.
    const db = new Database(golden);
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
  });
  afterAll(() => tmp.cleanup());

  const copy = (name: string): string => {
    const path = join(tmp.dir, `${name.replace(/\W+/g, '-')}.db`);
    copyFileSync(golden, path);
    return path;
  };

  it('the undamaged store runs, gives its records and passes the doctor', async () => {
    await sound(`sqlite:${copy('sound')}`);
  });

  for (const damage of SQLITE_DAMAGE) {
    it(`one byte changed in ${damage.name}`, async () => {
      const path = copy(damage.name);
      const db = new Database(path);
      damage.apply(db);
      db.close();
      await refusals(`sqlite:${path}`, damage);
    });
  }

  for (const column of SQLITE_COLUMNS) {
    it(`${column.name} outside its constraint`, async () => {
      const path = copy(column.name);
      const db = new Database(path);
      // A connection that keeps the schema's rules refuses the write (a counter off by one breaks none).
      if (!column.name.includes('off by one')) expect(() => db.exec(column.sql)).toThrow(/CHECK constraint failed/);
      db.pragma('ignore_check_constraints = ON');
      db.exec(column.sql);
      db.close();
      await refusals(`sqlite:${path}`, { name: column.name, place: column.place });
    });
  }
});

/** A store as the schema before checksums and constraints (version 3) held it: values bare, error entries unsummed. */
function asVersion3(from: string, to: string): void {
  const db = new Database(to);
  db.exec('CREATE TABLE rlm_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
  for (const migration of SQLITE_MIGRATIONS.filter((m) => m.version <= 3)) {
    db.exec(migration.sql);
    db.prepare('INSERT INTO rlm_migrations (version, applied_at) VALUES (?, 0)').run(migration.version);
  }
  db.prepare('ATTACH DATABASE ? AS cur').run(from);
  // Later migrations add run columns: copy those version 3 had.
  const runColumns = (db.prepare("SELECT name FROM pragma_table_info('rlm_runs')").all() as { name: string }[]).map((c) => c.name).join(', ');
  db.exec(`
    DELETE FROM rlm_meta;
    INSERT INTO rlm_meta SELECT * FROM cur.rlm_meta;
    INSERT INTO rlm_runs (${runColumns}) SELECT ${runColumns} FROM cur.rlm_runs;
    INSERT INTO rlm_nodes SELECT * FROM cur.rlm_nodes;
    INSERT INTO rlm_edges SELECT * FROM cur.rlm_edges;
    INSERT INTO rlm_emits SELECT * FROM cur.rlm_emits;
    INSERT INTO rlm_effects SELECT * FROM cur.rlm_effects;
    UPDATE rlm_runs SET input = substr(input, 9), context = substr(context, 9), result = substr(result, 9);
    UPDATE rlm_nodes SET input = substr(input, 9), context = substr(context, 9), result = substr(result, 9);
    UPDATE rlm_nodes SET errors = (SELECT json_group_array(json_remove(value, '$.sum')) FROM json_each(rlm_nodes.errors)) WHERE errors IS NOT NULL;
    UPDATE rlm_emits SET record = substr(record, 9);
    UPDATE rlm_effects SET value = substr(value, 9);
  `);
  db.exec('DETACH DATABASE cur');
  db.close();
}

describe('SQLite: a store written by the schema before checksums is upgraded in place', () => {
  it('seals every value and adds the constraints; the run reads back the same and goes on', async () => {
    const tmp = tempDir();
    try {
      const current = join(tmp.dir, 'current.db');
      const out = await runCli(['run', MODULE, '--input', INPUT, '--run', 'i', '--store', `sqlite:${current}`]);
      expect(out.code, out.stderr).toBe(0);
      const old = join(tmp.dir, 'v3.db');
      asVersion3(current, old);
      const raw = new Database(old, { readonly: true });
      expect((raw.prepare("SELECT result FROM rlm_runs WHERE id = 'i'").get() as { result: string }).result).toBe('7');
      raw.close();
      await sound(`sqlite:${old}`);
      const migrated = new Database(old, { readonly: true });
      expect((migrated.prepare('SELECT max(version) AS v FROM rlm_migrations').get() as { v: number }).v).toBe(SQLITE_MIGRATIONS.at(-1)?.version);
      expect((migrated.prepare("SELECT sql FROM sqlite_master WHERE name = 'rlm_nodes'").get() as { sql: string }).sql).toContain('CONSTRAINT rlm_nodes_state CHECK');
      migrated.close();

      // A run created but not yet run, upgraded, then run: its stored input was sealed by the migration.
      const fresh = join(tmp.dir, 'fresh.db');
      const store = new SqliteStore({ path: fresh });
      const engine = await openEngine({ store });
      await engine.create(task, { path: 'r', depth: 2 }, { runId: 'i' });
      await engine.close();
      await store.close();
      const freshOld = join(tmp.dir, 'fresh-v3.db');
      asVersion3(fresh, freshOld);
      await sound(`sqlite:${freshOld}`);
    } finally {
      tmp.cleanup();
    }
  });
});

describePostgres('PostgreSQL: a damaged value or column is STORE_CORRUPT naming its place, from rlm run, rlm results and rlm doctor', (url) => {
  const schema = `rlm_integrity_${process.pid}`;
  const oldSchema = `${schema}_v3`;
  const store = `${url}?schema=${schema}`;
  const q = (sql: string, params: unknown[] = []) => pgQuery(url, sql, params);
  const t = (table: string) => `"${schema}".${table}`;

  beforeAll(async () => {
    const out = await runCli(['run', MODULE, '--input', INPUT, '--run', 'i', '--store', store]);
    expect(out.code, out.stderr).toBe(0);
  });
  afterAll(async () => {
    await q(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await q(`DROP SCHEMA IF EXISTS "${oldSchema}" CASCADE`);
  });

  it('the undamaged schema runs, gives its records and passes the doctor (tables, indexes, constraints, leases)', async () => {
    await sound(store);
  });

  const values: { name: string; table: string; column: string; where: string; place: RegExp; jsonb?: boolean }[] = [
    { name: 'a run input', table: 'rlm_runs', column: 'input', where: "id = 'i'", place: /rlm_runs\.input.*run "i"/ },
    { name: 'a run result', table: 'rlm_runs', column: 'result', where: "id = 'i'", place: /rlm_runs\.result.*run "i"/ },
    { name: 'a node input', table: 'rlm_nodes', column: 'input', where: "key = 'root/0'", place: /rlm_nodes\.input.*key "root\/0"/ },
    { name: 'a node context', table: 'rlm_nodes', column: 'context', where: "key = 'root/0'", place: /rlm_nodes\.context.*key "root\/0"/ },
    { name: 'a node result', table: 'rlm_nodes', column: 'result', where: "key = 'root/0/1'", place: /rlm_nodes\.result.*key "root\/0\/1"/ },
    { name: 'an emitted record', table: 'rlm_emits', column: 'record', where: 'seq = 3', place: /rlm_emits\.record.*run "i", node \d+, record 3/ },
    { name: 'an effect value', table: 'rlm_effects', column: 'value', where: "node_key = 'root/1/0'", place: /rlm_effects\.value.*effect "size"/ },
  ];
  for (const v of values) {
    it(`one byte changed in ${v.name} by an UPDATE that goes around rlm`, async () => {
      const [row] = (await q(`SELECT ${v.column} AS v FROM ${t(v.table)} WHERE ${v.where}`)) as { v: string }[];
      if (!row) throw new Error(`no ${v.table}.${v.column}`);
      await q(`UPDATE ${t(v.table)} SET ${v.column} = $1 WHERE ${v.where}`, [flipped(row.v)]);
      try {
        await refusals(store, v);
      } finally {
        await q(`UPDATE ${t(v.table)} SET ${v.column} = $1 WHERE ${v.where}`, [row.v]);
      }
    });
  }

  it('one byte changed in a node error entry by an UPDATE that goes around rlm', async () => {
    const [row] = (await q(`SELECT errors FROM ${t('rlm_nodes')} WHERE key = 'root/1'`)) as { errors: { message: string }[] }[];
    const errors = row?.errors ?? [];
    expect(errors).toHaveLength(1);
    const damaged = [{ ...errors[0], message: flipped(errors[0]?.message ?? '') }];
    await q(`UPDATE ${t('rlm_nodes')} SET errors = $1::jsonb WHERE key = 'root/1'`, [JSON.stringify(damaged)]);
    try {
      await refusals(store, { name: 'a node error entry', place: /rlm_nodes\.errors.*key "root\/1"/ });
    } finally {
      await q(`UPDATE ${t('rlm_nodes')} SET errors = $1::jsonb WHERE key = 'root/1'`, [JSON.stringify(errors)]);
    }
  });

  const columns: { name: string; table: string; constraint: string; set: string; where: string; place: RegExp }[] = [
    { name: 'a node state', table: 'rlm_nodes', constraint: 'rlm_nodes_state', set: "state = 'dxne'", where: "key = 'root/0/0'", place: /rlm_nodes|node/ },
    { name: 'a node phase', table: 'rlm_nodes', constraint: 'rlm_nodes_phase', set: "phase = 'rxn'", where: "key = 'root/0/0'", place: /rlm_nodes|node/ },
    { name: 'a node attempt count', table: 'rlm_nodes', constraint: 'rlm_nodes_attempts', set: 'attempts = -1', where: "key = 'root/0/0'", place: /rlm_nodes|node/ },
    { name: 'a run state', table: 'rlm_runs', constraint: 'rlm_runs_state', set: "state = 'completxd'", where: "id = 'i'", place: /rlm_runs|run/ },
    { name: 'a run counter below zero', table: 'rlm_runs', constraint: 'rlm_runs_n_dead', set: 'n_dead = -1', where: "id = 'i'", place: /rlm_runs|dead counter/ },
  ];
  for (const c of columns) {
    it(`${c.name} outside its constraint: the UPDATE is refused; written while the constraint was dropped, it is refused on read`, async () => {
      await expect(q(`UPDATE ${t(c.table)} SET ${c.set} WHERE ${c.where}`)).rejects.toMatchObject({ code: '23514', constraint: c.constraint });
      const [def] = (await q(`SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = $1 AND connamespace = $2::regnamespace`, [
        c.constraint,
        schema,
      ])) as { def: string }[];
      const before = (await q(`SELECT * FROM ${t(c.table)} WHERE ${c.where}`))[0] as Record<string, unknown>;
      await q(`ALTER TABLE ${t(c.table)} DROP CONSTRAINT ${c.constraint}`);
      await q(`UPDATE ${t(c.table)} SET ${c.set} WHERE ${c.where}`);
      try {
        await refusals(store, c);
      } finally {
        const column = c.set.split(' ')[0] as string;
        await q(`UPDATE ${t(c.table)} SET ${column} = $1 WHERE ${c.where}`, [before[column]]);
        await q(`ALTER TABLE ${t(c.table)} ADD CONSTRAINT ${c.constraint} ${def?.def}`);
      }
    });
  }

  it('a run counter off by one, a missing index and an orphan lease', async () => {
    await q(`UPDATE ${t('rlm_runs')} SET n_pending = 1 WHERE id = 'i'`);
    try {
      await refusals(store, { name: 'a run counter off by one', place: /run "?i"?.*pending counter says 1, its rows say 0/ });
    } finally {
      await q(`UPDATE ${t('rlm_runs')} SET n_pending = 0 WHERE id = 'i'`);
    }
    await q(`DROP INDEX "${schema}".rlm_nodes_frontier`);
    await q(`INSERT INTO ${t('rlm_workers')} (id, host, pid, pid_start, task, version, state, lease_until, heartbeat_at, started_at) VALUES ('gone', 'h', 1, '1', 'integrity', 1, 'dead', 0, 0, 0)`);
    await q(`UPDATE ${t('rlm_nodes')} SET state = 'running', owner = 'gone' WHERE key = 'root/0/0'`);
    await q(`UPDATE ${t('rlm_runs')} SET n_done = n_done - 1, n_running = 1 WHERE id = 'i'`);
    const doctor = await runCli(['doctor', '--store', store]);
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toContain(`STORE_CORRUPT index ${schema}.rlm_nodes_frontier is missing`);
    expect(doctor.stdout).toMatch(/run "i": 1 running node\(s\) \(e\.g\. node \d+\) leased to workers that are not alive/);
  });

  it('a schema written before checksums and constraints is upgraded in place and reads back the same', async () => {
    const fresh = `${url}?schema=${schema}_fresh`;
    const out = await runCli(['run', MODULE, '--input', INPUT, '--run', 'i', '--store', fresh]);
    expect(out.code, out.stderr).toBe(0);
    const from = `"${schema}_fresh"`;
    const to = `"${oldSchema}"`;
    await q(`CREATE SCHEMA ${to}`);
    await q(`SET search_path TO ${to}; CREATE TABLE rlm_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);
      ${PG_MIGRATIONS.filter((m) => m.version <= 3)
        .map((m) => `${m.sql}; INSERT INTO rlm_migrations VALUES (${m.version}, 0);`)
        .join('\n')}`);
    // Later migrations add run columns: copy those version 3 had.
    const runColumns = (
      await q(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'rlm_runs' ORDER BY ordinal_position`, [oldSchema])
    )
      .map((c) => (c as { column_name: string }).column_name)
      .join(', ');
    await q(`
      DELETE FROM ${to}.rlm_meta; INSERT INTO ${to}.rlm_meta SELECT * FROM ${from}.rlm_meta;
      INSERT INTO ${to}.rlm_runs (${runColumns}) SELECT ${runColumns} FROM ${from}.rlm_runs;
      INSERT INTO ${to}.rlm_nodes SELECT * FROM ${from}.rlm_nodes;
      INSERT INTO ${to}.rlm_edges SELECT * FROM ${from}.rlm_edges;
      INSERT INTO ${to}.rlm_emits OVERRIDING SYSTEM VALUE SELECT * FROM ${from}.rlm_emits;
      INSERT INTO ${to}.rlm_effects SELECT * FROM ${from}.rlm_effects;
      UPDATE ${to}.rlm_runs SET input = substr(input, 9), context = substr(context, 9), result = substr(result, 9);
      UPDATE ${to}.rlm_nodes SET input = substr(input, 9), context = substr(context, 9), result = substr(result, 9),
        errors = (SELECT jsonb_agg(e - 'sum') FROM jsonb_array_elements(errors) e);
      UPDATE ${to}.rlm_emits SET record = substr(record, 9);
      UPDATE ${to}.rlm_effects SET value = substr(value, 9);`);
    await q(`DROP SCHEMA ${from} CASCADE`);
    const [raw] = (await q(`SELECT result FROM ${to}.rlm_runs`)) as { result: string }[];
    expect(raw?.result).toBe('7');
    await sound(`${url}?schema=${oldSchema}`);
    const [version] = (await q(`SELECT max(version) AS v FROM ${to}.rlm_migrations`)) as { v: number }[];
    expect(version?.v).toBe(PG_MIGRATIONS.at(-1)?.version);
    const pg = new PostgresStore({ connectionString: url, schema: oldSchema });
    try {
      expect((await pg.doctor()).problems).toEqual([]);
    } finally {
      await pg.close();
    }
  });
});
