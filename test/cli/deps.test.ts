import { copyFileSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runCli } from '../helpers/cli.js';
import { auditSqlite } from '../helpers/store-check.js';
import { tempDir } from '../helpers/temp.js';

interface Entry {
  name?: string;
  version?: string;
  link?: boolean;
  resolved?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

interface PackageRecord {
  package: string;
  closure: number;
  bytes: number | null;
  cycle: string[] | null;
}

/** Sizes of the files under `dir`, its top-level node_modules left out; null when `dir` is not there. */
function sizeOf(dir: string): number | null {
  try {
    if (!lstatSync(dir).isDirectory()) return null;
  } catch {
    return null;
  }
  let total = 0;
  const stack = readdirSync(dir)
    .filter((name) => name !== 'node_modules')
    .map((name) => join(dir, name));
  while (stack.length > 0) {
    const path = stack.pop()!;
    const info = lstatSync(path);
    if (info.isDirectory()) stack.push(...readdirSync(path).map((name) => join(path, name)));
    else total += info.size;
  }
  return total;
}

/**
 * The reference, no rlm involved: npm's resolution written out again, one breadth-first search per package for
 * its closure, and cycles as the packages that reach each other.
 */
function reference(lockfile: string): PackageRecord[] {
  const lock = JSON.parse(readFileSync(lockfile, 'utf8')) as { name?: string; version?: string; packages: Record<string, Entry> };
  const entries = lock.packages;
  const idAt = (path: string): string => {
    const entry = entries[path]!;
    const name = entry.name ?? (path === '' ? lock.name! : path.split('node_modules/').at(-1)!);
    const version = entry.version ?? (path === '' ? lock.version : undefined);
    return version === undefined ? name : `${name}@${version}`;
  };
  const find = (from: string, name: string): string | undefined => {
    const parts = from === '' ? [] : from.split('/');
    for (let n = parts.length; n >= 0; n--) {
      const dir = parts.slice(0, n);
      if (dir.at(-1) === 'node_modules') continue;
      const path = [...dir, 'node_modules', name].join('/');
      if (path in entries) return entries[path]!.link ? entries[path]!.resolved : path;
    }
    return undefined;
  };
  const edges = new Map<string, Set<string>>();
  const dirOf = new Map<string, string>();
  for (const [path, entry] of Object.entries(entries)) {
    if (entry.link) continue;
    const id = idAt(path);
    if (!dirOf.has(id)) dirOf.set(id, path);
    const out = edges.get(id) ?? new Set<string>();
    edges.set(id, out);
    const declared = { ...entry.dependencies, ...entry.optionalDependencies, ...entry.peerDependencies, ...(path.startsWith('node_modules/') ? {} : entry.devDependencies) };
    for (const name of Object.keys(declared)) {
      const found = find(path, name);
      if (found !== undefined) out.add(idAt(found));
    }
  }
  const reach = new Map<string, Set<string>>();
  for (const id of edges.keys()) {
    const seen = new Set<string>();
    const queue = [...edges.get(id)!];
    while (queue.length > 0) {
      const next = queue.shift()!;
      if (seen.has(next)) continue;
      seen.add(next);
      queue.push(...edges.get(next)!);
    }
    reach.set(id, seen);
  }
  const root = dirname(lockfile);
  const own = new Map([...dirOf].map(([id, path]) => [id, path.startsWith('node_modules/') ? sizeOf(join(root, path)) : 0]));
  return [...edges.keys()].sort().map((id) => {
    const reached = reach.get(id)!;
    const cycle = [...reached].filter((other) => reach.get(other)!.has(id)).sort();
    let bytes = own.get(id) ?? 0;
    for (const other of reached) if (other !== id) bytes += own.get(other) ?? 0;
    return { package: id, closure: reached.size - (reached.has(id) ? 1 : 0), bytes: own.get(id) === null ? null : bytes, cycle: cycle.length > 0 ? cycle : null };
  });
}

async function records(runId: string, store: string): Promise<PackageRecord[]> {
  const out = await runCli(['results', runId, '--store', store]);
  expect(out.code, out.stderr).toBe(0);
  const lines = out.stdout.split('\n').filter((line) => line !== '');
  return lines.map((line) => JSON.parse(line) as PackageRecord).sort((a, b) => (a.package < b.package ? -1 : a.package > b.package ? 1 : 0));
}

/** Writes a package's files: `index.js` of `size` bytes, and `lib/util.js` of 30 when `lib` is set. */
function install(dir: string, size: number, lib = false): void {
  mkdirSync(join(dir, 'lib'), { recursive: true });
  writeFileSync(join(dir, 'index.js'), 'x'.repeat(size));
  if (lib) writeFileSync(join(dir, 'lib', 'util.js'), 'y'.repeat(30));
}

describe('examples/deps.ts: the dependency closure of a lockfile', () => {
  it('follows nested copies before hoisted ones, gives a cycle one closure, and sums installed bytes', async () => {
    const tmp = tempDir();
    try {
      const lockfile = join(tmp.dir, 'app', 'package-lock.json');
      mkdirSync(dirname(lockfile));
      copyFileSync(join(ROOT, 'test/fixtures/deps/package-lock.json'), lockfile);
      const modules = join(tmp.dir, 'app', 'node_modules');
      install(join(modules, 'a'), 100, true);
      install(join(modules, 'a', 'node_modules', 'b'), 200);
      install(join(modules, 'b'), 250);
      install(join(modules, 'c'), 300);
      install(join(modules, 'e'), 400);
      // f is listed in the lockfile but not on disk.
      const run = await runCli(['run', 'examples/deps.ts', '--input', JSON.stringify({ lockfile }), '--run', 'fixture', '--store', tmp.url]);
      expect(run.code, run.stderr).toBe(0);
      const got = await records('fixture', tmp.url);
      expect(got).toEqual(reference(lockfile));
      const byName = new Map(got.map((record) => [record.package, record]));
      // a's own b is 2.0.0 (nested), which shadows the hoisted 1.0.0: a reaches b@2, c, e, f; a's bytes leave out
      // its node_modules and count a (130), b@2 (200), c (300) and e (400), f being absent.
      expect(byName.get('a@1.0.0')).toEqual({ package: 'a@1.0.0', closure: 4, bytes: 1030, cycle: null });
      const cycle = ['c@1.0.0', 'e@1.0.0', 'f@1.0.0'];
      expect(byName.get('c@1.0.0')).toEqual({ package: 'c@1.0.0', closure: 2, bytes: 700, cycle });
      expect(byName.get('f@1.0.0')).toEqual({ package: 'f@1.0.0', closure: 2, bytes: null, cycle });
      expect(byName.get('s@1.0.0')?.cycle).toEqual(['s@1.0.0']);
      // g@1.0.0 is installed twice and its copies resolve h differently: the node has both.
      expect(byName.get('g@1.0.0')?.closure).toBe(2);
      expect(byName.get('fixture-app@1.0.0')?.closure).toBe(13);
      const summary = JSON.parse(run.stdout) as { packages: number; components: number; cycles: string[][]; skipped: Record<string, number> };
      expect(summary.packages).toBe(14);
      expect(summary.components).toBe(12);
      expect(summary.cycles).toEqual([cycle, ['s@1.0.0']]);
      expect(summary.skipped).toEqual({ dependencies: 0, optionalDependencies: 1, peerDependencies: 1, devDependencies: 0 });

      // One package: only its closure runs.
      const one = await runCli(['run', 'examples/deps.ts', '--input', JSON.stringify({ lockfile, package: 'a' }), '--run', 'only-a', '--store', tmp.url]);
      expect(one.code, one.stderr).toBe(0);
      expect((await records('only-a', tmp.url)).map((record) => record.package)).toEqual(['a@1.0.0', 'b@2.0.0', ...cycle]);
      // Only e's missing peer (react) is in a's closure; b@1's missing optional fsevents is not.
      expect((JSON.parse(one.stdout) as { skipped: Record<string, number> }).skipped).toEqual({ dependencies: 0, optionalDependencies: 0, peerDependencies: 1, devDependencies: 0 });
    } finally {
      tmp.cleanup();
    }
  }, 60_000);

  it("closes this repository's lockfile after a kill -9 mid-run exactly as an uninterrupted run does", async () => {
    const tmp = tempDir();
    const lockfile = join(ROOT, 'package-lock.json');
    const clean = `sqlite:${join(tmp.dir, 'clean.db')}`;
    const args = (store: string) => ['run', 'examples/deps.ts', '--input', JSON.stringify({ lockfile }), '--run', 'deps', '--store', store, '--commit-every', '10'];
    try {
      const uninterrupted = await runCli(args(clean));
      expect(uninterrupted.code, uninterrupted.stderr).toBe(0);
      const expected = await records('deps', clean);

      const killed = await runCli(args(tmp.url), { RLM_FAILPOINTS: 'commit.beforeCommit=kill@3' });
      expect(killed.signal).toBe('SIGKILL');
      expect((await records('deps', tmp.url)).length).toBeLessThan(expected.length);
      const resumed = await runCli(args(tmp.url));
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(JSON.parse(resumed.stdout)).toEqual(JSON.parse(uninterrupted.stdout));
      const got = await records('deps', tmp.url);
      expect(got).toEqual(expected);
      expect(new Set(got.map((record) => record.package)).size).toBe(got.length);
      expect(got).toEqual(reference(lockfile));
      expect(got.some((record) => record.cycle !== null)).toBe(true);
      const summary = JSON.parse(resumed.stdout) as { packages: number; largest: Omit<PackageRecord, 'cycle'>[] };
      expect(summary.packages).toBe(got.length);
      const top = [...got].sort((a, b) => b.closure - a.closure || (a.package < b.package ? -1 : 1)).slice(0, 10);
      expect(summary.largest).toEqual(top.map(({ package: name, closure, bytes }) => ({ package: name, closure, bytes })));

      const audit = auditSqlite(tmp.db, 'deps');
      expect(audit.integrity).toEqual(['ok']);
      expect(audit.duplicates).toBe(0);
      expect(Object.keys(audit.states)).toEqual(['done']);
    } finally {
      tmp.cleanup();
    }
  }, 60_000);
});
