import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, StoreUnavailableError } from '../../src/engine/errors.js';
import { MIGRATIONS } from '../../src/store/sqlite/schema.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { SqliteThreadStore } from '../../src/store/sqlite/thread.js';
import { storeConformance } from './conformance.js';

// A fresh store file per test, in one folder removed (db, -wal and -shm together) when the file is done.
const ROOT = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'rlm-sqlite-conformance-'));
let n = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

storeConformance('sqlite', async () => new SqliteStore({ path: join(dir, `store-${++n}.db`) }));
// The same store on its own thread, as `rlm run` uses it: every call crosses to the thread and back.
storeConformance('sqlite thread', async () => new SqliteThreadStore({ path: join(dir, `store-${++n}.db`) }));

describe('sqlite: schema upgrades', () => {
  it('upgrades a store written by schema version 1 in place, keeping its runs', async () => {
    const path = join(dir, 'version-1.db');
    const Database = createRequire(import.meta.url)('better-sqlite3') as new (path: string) => { exec(sql: string): void; close(): void };
    const old = new Database(path);
    old.exec('CREATE TABLE rlm_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    old.exec(`INSERT INTO rlm_migrations (version, applied_at) VALUES (1, 0); ${MIGRATIONS[0]?.sql}`);
    old.exec(`INSERT INTO rlm_runs (id, task, task_version, state, input, frontier_order, root_id, created_at, updated_at)
              VALUES ('old-run', 'tree', 1, 'running', '{}', 'dfs', 1, 0, 0)`);
    old.close();
    const store = new SqliteStore({ path });
    try {
      await store.migrate();
      expect((await store.getRun('old-run'))?.task).toBe('tree');
      expect(await store.recordRunCode('old-run', { version: 1, hash: 'abc' })).toBeNull();
    } finally {
      await store.close();
    }
  });
});

describe('sqlite thread', () => {
  it('hands a failure back as the same rlm error class, and fails every call once closed', async () => {
    // A folder where the file should be: the store refuses it with a ConfigError, thrown on the thread.
    const store = new SqliteThreadStore({ path: dir });
    const error = await store.migrate().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain('is a directory');
    await store.close();
    await expect(store.getRun('x')).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('keeps no process alive once its calls are answered, even unclosed', () => {
    // The built module, as `rlm run` loads it (npm test builds first).
    const script = `import { SqliteThreadStore } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist/store/sqlite/thread.js')).href)};
      const store = new SqliteThreadStore({ path: ${JSON.stringify(join(dir, 'unclosed.db'))} });
      await store.migrate();
      console.log((await store.listRuns()).length);`;
    const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(out.error, 'the process did not exit by itself').toBeUndefined();
    expect(out.status, out.stderr).toBe(0);
    expect(out.stdout.trim()).toBe('0');
  });
});
