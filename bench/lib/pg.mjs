/** PostgreSQL helpers for the bench: a fresh database per row, dropped afterwards. */
import pg from 'pg';

/** The admin connection (trust auth, database `test`): env RLM_BENCH_PG. */
export const ADMIN_URL = process.env.RLM_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

/** The URL of database `name` on the admin connection's server. */
export function databaseUrl(name) {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function admin(sql) {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Creates database `name` afresh (dropping a leftover of an interrupted bench) and returns its URL. */
export async function createDatabase(name) {
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin(`CREATE DATABASE ${name}`);
  return databaseUrl(name);
}

export async function dropDatabase(name) {
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/** Server version and the settings that decide how durable (and how fast) a commit is. */
export async function describeServer() {
  const { rows } = await admin(
    `SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS synchronous_commit, current_setting('fsync') AS fsync`,
  );
  return rows[0];
}

/** Drops and recreates `schema` in the database at `url`, so a peer starts from nothing. */
export async function resetSchema(url, schema, { recreate = false } = {}) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    if (recreate) await client.query(`CREATE SCHEMA ${schema}`);
  } finally {
    await client.end();
  }
}
