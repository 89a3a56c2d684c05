/**
 * A Merkle hash of a directory tree: files are hashed in leaf steps, directories combine their children's
 * hashes (sorted by name). Survives kills: a resumed run never hashes a finished subtree again.
 *
 *   npx rlm run examples/dir-hash.ts --input '{"path":"./src"}'
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { defineTask } from 'rlm';

interface Entry {
  path: string;
}

interface Hashed {
  name: string;
  type: 'file' | 'dir' | 'link';
  hash: string;
}

export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function hashDir(entries: readonly Hashed[]): string {
  const hash = createHash('sha256');
  for (const entry of entries) hash.update(`${entry.type} ${entry.name} ${entry.hash}\n`);
  return hash.digest('hex');
}

export default defineTask<Entry, Hashed>({
  name: 'dir-hash',
  key: ({ path }) => resolve(path),
  limits: { maxAttempts: 3, timeoutMs: 60_000 },
  async run({ path }) {
    const name = basename(path);
    const info = await lstat(path);
    if (info.isSymbolicLink()) return { result: { name, type: 'link', hash: createHash('sha256').update(await readlink(path)).digest('hex') } };
    if (info.isFile()) return { result: { name, type: 'file', hash: await hashFile(path) } };
    const names = (await readdir(path)).sort();
    if (names.length === 0) return { result: { name, type: 'dir', hash: hashDir([]) } };
    return { children: names.map((child) => ({ input: { path: join(path, child) } })) };
  },
  combine({ path }, children) {
    return { name: basename(path), type: 'dir', hash: hashDir(children as Hashed[]) };
  },
});
