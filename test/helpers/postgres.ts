import pg from 'pg';
import { describe } from 'vitest';

export const PG_URL = process.env.RLM_TEST_DATABASE_URL;

/**
 * describe() for tests that need PostgreSQL: in CI a missing RLM_TEST_DATABASE_URL fails loudly; elsewhere
 * the suite is skipped with one line saying so.
 */
export function describePostgres(name: string, body: (url: string) => void): void {
  if (!PG_URL) {
    if (process.env.CI) {
      throw new Error(`${name}: RLM_TEST_DATABASE_URL is not set; PostgreSQL is required in CI (.ci/run sets it).`);
    }
    console.warn(`${name}: skipped, RLM_TEST_DATABASE_URL is not set (PostgreSQL tests run in CI).`);
    describe.skipIf(true)(name, () => undefined);
    return;
  }
  describe(name, () => body(PG_URL));
}

/** Runs SQL against the test database with a short-lived client. */
export async function pgQuery<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}
