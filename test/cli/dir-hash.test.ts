import { mkdirSync, writeFileSync } from 'node:fs';
import { readdir, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashDir, hashFile } from '../../examples/dir-hash.js';
import { startCli } from '../helpers/cli.js';
import { seeded } from '../helpers/random.js';
import { auditSqlite } from '../helpers/store-check.js';
import { tempDir } from '../helpers/temp.js';

/** The reference: a plain recursive Merkle hash, no rlm involved. */
async function referenceHash(path: string): Promise<{ hash: string; nodes: number }> {
  const info = await lstat(path);
  if (info.isFile()) return { hash: await hashFile(path), nodes: 1 };
  const names = (await readdir(path)).sort();
  const entries: { name: string; type: 'file' | 'dir' | 'link'; hash: string }[] = [];
  let nodes = 1;
  for (const name of names) {
    const child = await referenceHash(join(path, name));
    const type = (await lstat(join(path, name))).isFile() ? 'file' : 'dir';
    entries.push({ name, type, hash: child.hash });
    nodes += child.nodes;
  }
  return { hash: hashDir(entries), nodes };
}

/** A synthetic tree of directories and files, the same for a given seed. */
function makeTree(root: string, random: () => number, depth: number): void {
  mkdirSync(root, { recursive: true });
  const files = 3 + Math.floor(random() * 6);
  for (let i = 0; i < files; i++) writeFileSync(join(root, `file-${i}.txt`), `content ${Math.floor(random() * 1e9)}\n`.repeat(1 + Math.floor(random() * 50)));
  if (depth === 0) return;
  const dirs = 2 + Math.floor(random() * 3);
  for (let i = 0; i < dirs; i++) makeTree(join(root, `dir-${i}`), random, depth - 1);
}

describe('dir-hash survives kill -9', () => {
  it('a Merkle hash of a directory tree killed at random moments equals the plain recursive hash', async () => {
    const tmp = tempDir();
    const random = seeded(0xd1a5);
    const root = join(tmp.dir, 'tree');
    makeTree(root, random, 4);
    const expected = await referenceHash(root);
    const args = ['run', 'examples/dir-hash.ts', '--input', JSON.stringify({ path: root }), '--run', 'hash', '--store', tmp.url, '--commit-every', '50'];
    let kills = 0;
    try {
      for (let round = 0; round < 10; round++) {
        const { child, done } = startCli(args, { RLM_FAILPOINTS: 'commit.beforeCommit=beacon' });
        const target = 1 + Math.floor(random() * 6);
        child.on('message', (message: { fp?: string; n?: number }) => {
          if (message.fp === 'commit.beforeCommit' && message.n === target) child.kill('SIGKILL');
        });
        const result = await done;
        if (result.signal === 'SIGKILL') kills++;
        else expect(result.code, result.stderr).toBe(0);
      }
      const final = await startCli(args).done;
      expect(final.code, final.stderr).toBe(0);
      expect((JSON.parse(final.stdout) as { hash: string }).hash).toBe(expected.hash);
      expect(kills).toBeGreaterThanOrEqual(5);
      const audit = auditSqlite(tmp.db, 'hash');
      expect(audit.states).toEqual({ done: expected.nodes });
      expect(audit.integrity).toEqual(['ok']);
    } finally {
      tmp.cleanup();
    }
  }, 300_000);
});
