import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh folder for one test's store files, removed afterwards. */
export function tempDir(prefix = 'rlm-test-'): { dir: string; db: string; url: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const db = join(dir, 'rlm.db');
  return { dir, db, url: `sqlite:${db}`, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
