import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { storeConformance } from './conformance.js';

// A fresh store file per test, in one folder removed (db, -wal and -shm together) when the file is done.
const dir = mkdtempSync(join(tmpdir(), 'rlm-sqlite-conformance-'));
let n = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

storeConformance('sqlite', async () => new SqliteStore({ path: join(dir, `store-${++n}.db`) }));
