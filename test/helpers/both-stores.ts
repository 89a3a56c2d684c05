import { describe, it } from 'vitest';
import { describePostgres, pgQuery } from './postgres.js';
import { tempDir } from './temp.js';

/**
 * One test on both stores: a fresh SQLite file, and a fresh PostgreSQL schema (required in CI, see
 * describePostgres). `body` gets the store URL; the file or schema is removed afterwards.
 */
export function onBothStores(subject: string, test: string, body: (storeUrl: string) => Promise<void>, timeout?: number): void {
  describe(`${subject} on SQLite`, () => {
    it(
      test,
      async () => {
        const tmp = tempDir();
        try {
          await body(tmp.url);
        } finally {
          tmp.cleanup();
        }
      },
      timeout,
    );
  });
  describePostgres(`${subject} on PostgreSQL`, (url) => {
    it(
      test,
      async () => {
        const schema = `rlm_${subject.replace(/\W+/g, '_')}_${process.pid}`;
        await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        try {
          await body(`${url}${url.includes('?') ? '&' : '?'}schema=${schema}`);
        } finally {
          await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        }
      },
      timeout,
    );
  });
}
