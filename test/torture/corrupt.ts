/**
 * Corrupt and foreign store files (TORTURE.md §8.2 C1–C8, and a mutational fuzzer as in SQLite's malformed-
 * database tests). rlm must refuse a damaged file with a clear one-line error and a non-zero exit — never crash,
 * never overwrite or repair it silently — or run it correctly. A run that ends on a damaged file is judged by what
 * rlm itself then sees: damage left in a value the run never read (an emitted record, say) is refused by every
 * read and named by `rlm doctor`, so it counts as detected; only damage rlm cannot see counts as "silently wrong".
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { auditSqlite, check } from './checker.js';
import { Episode, type EpisodeEnv, sqliteBackend, tail } from './episode.js';
import { ROOT } from './harness.js';
import { Rng } from './random.js';
import { generateWorkload } from './workload.js';

const run = promisify(execFile);
const CHILD = join(import.meta.dirname, 'corrupt-child.mjs');

function hash(path: string): string {
  return existsSync(path) ? createHash('sha1').update(readFileSync(path)).digest('hex') : 'absent';
}

/** A store mid-run: a worker killed after a few commits, its WAL checkpointed into the file. */
async function baseStore(env: EpisodeEnv, rng: Rng): Promise<Episode> {
  const spec = generateWorkload(rng.fork('spec'), { shape: 'tree', size: 120, combine: true, effects: false, keyed: rng.chance(0.5), pads: true });
  const episode = new Episode(env, sqliteBackend(env.dir), spec, ['--commit-every', '8', '--commit-ms', '5', '--concurrency', '2']);
  const proc = episode.spawn({ rules: { 'commit.afterCommit': `kill@${rng.int(3, 6)}` } });
  await episode.settle([proc]);
  const db = new Database(episode.backend.dbPath as string);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  rmSync(`${episode.backend.dbPath}-wal`, { force: true });
  rmSync(`${episode.backend.dbPath}-shm`, { force: true });
  return episode;
}

interface CaseOutcome {
  name: string;
  verdict: 'refused' | 'ran correctly' | 'detected after the run' | 'silently wrong' | 'crashed';
  detail: string;
}

/** A one-line `rlm: …` message, no stack trace, a non-zero exit. */
function clearRefusal(exit: { code: number | null; signal: string | null; stderr: string }): boolean {
  const lines = exit.stderr.trim().split('\n').filter((l) => l.startsWith('rlm:') || l.includes('    at '));
  return exit.signal === null && exit.code !== 0 && exit.code !== null && lines.length >= 1 && !exit.stderr.includes('unexpected error') && !exit.stderr.includes('    at ');
}

async function cli(args: string[], options: { user?: string } = {}): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const command = options.user ? 'runuser' : process.execPath;
  const argv = options.user ? ['-u', options.user, '--', process.execPath, join(ROOT, 'bin/rlm.mjs'), ...args] : [join(ROOT, 'bin/rlm.mjs'), ...args];
  try {
    const { stdout, stderr } = await run(command, argv, { cwd: ROOT, env: { ...process.env, RLM_LOG_LEVEL: 'error', RLM_FAILPOINTS: '' }, timeout: 30_000 });
    return { code: 0, signal: null, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number | string; signal?: string | null; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : null, signal: e.signal ?? null, stdout: e.stdout ?? '', stderr: e.stderr ?? String(error) };
  }
}

/** Runs `rlm doctor` and a resume on a damaged file and says what rlm did. */
async function judge(episode: Episode, name: string, path: string, options: { user?: string; mustNotWrite?: boolean } = {}): Promise<CaseOutcome> {
  const store = `sqlite:${path}`;
  const before = hash(path);
  const doctor = await cli(['doctor', '--store', store], options);
  const resume = await cli(['run', episode.modulePath, '--run', episode.runId, '--store', store, ...episode.flags], options);
  const crashed = [doctor, resume].find((x) => x.signal !== null || x.stderr.includes('unexpected error') || x.stderr.includes('    at '));
  if (crashed) return { name, verdict: 'crashed', detail: tail(crashed.stderr) };
  if (resume.code !== 0 && resume.code !== 3) {
    if (!clearRefusal(resume)) return { name, verdict: 'crashed', detail: `unclear refusal: ${tail(resume.stderr)}` };
    const changed = hash(path) !== before;
    // A file rlm did not write, or knows it must not touch, stays byte for byte as it was.
    if (changed && options.mustNotWrite) return { name, verdict: 'crashed', detail: `rlm wrote to a file it refused: ${tail(resume.stderr)}` };
    if (doctor.code === 0 && !doctor.stdout.includes('integrity ok')) return { name, verdict: 'crashed', detail: `doctor said ${tail(doctor.stdout)}` };
    return { name, verdict: 'refused', detail: `${changed ? '(after writing to it before the damage was met) ' : ''}${tail(resume.stderr, 1)}` };
  }
  let problems: string[];
  try {
    problems = check(auditSqlite(path, episode.runId), episode.expected, episode.checkOptions()).problems;
  } catch (error) {
    problems = [`audit failed: ${(error as Error).message}`];
  }
  if (problems.length === 0) return { name, verdict: 'ran correctly', detail: '' };
  const after = await cli(['doctor', '--store', store], options);
  if (after.code !== 0 && after.stdout.includes('STORE_CORRUPT')) {
    return { name, verdict: 'detected after the run', detail: `exit ${resume.code}; ${problems.slice(0, 1).join('; ')}; rlm doctor: ${tail(after.stdout, 2)}` };
  }
  return { name, verdict: 'silently wrong', detail: `exit ${resume.code}; ${problems.slice(0, 2).join('; ')}` };
}

function flipBytes(path: string, rng: Rng, count: number, pageSize = 4096, page?: number): string {
  const data = readFileSync(path);
  const pages = Math.max(1, Math.floor(data.length / pageSize));
  const at: number[] = [];
  for (let i = 0; i < count; i++) {
    const p = page ?? rng.int(0, pages - 1);
    const offset = Math.min(data.length - 1, p * pageSize + rng.int(0, pageSize - 1));
    data[offset] = (data[offset] as number) ^ rng.int(1, 255);
    at.push(offset);
  }
  writeFileSync(path, data);
  return at.join(',');
}

/** The fixed cases C1–C8 through the CLI. Returns problems (a crash or a silent repair is one). */
export async function corruptFixed(env: EpisodeEnv): Promise<string[]> {
  const rng = new Rng(env.seed);
  const episode = await baseStore(env, rng);
  const r = env.report;
  const base = episode.backend.dbPath as string;
  const outcomes: CaseOutcome[] = [];
  // Cases are judged three at a time: each runs two `rlm` processes.
  const pending: Promise<void>[] = [];
  const judged = (promise: Promise<CaseOutcome>) => {
    pending.push(promise.then((o) => void outcomes.push(o)));
    return pending.length % 3 === 0 ? Promise.all(pending.splice(0)).then(() => undefined) : Promise.resolve();
  };
  const copy = (name: string): string => {
    const dir = join(env.dir, name);
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'rlm.db');
    copyFileSync(base, path);
    return path;
  };
  const size = statSync(base).size;
  try {
    // C1: truncated, at a page boundary and mid-page.
    for (const [name, to] of [
      ['C1 truncated at a page boundary', Math.max(4096, Math.floor((size * rng.next()) / 4096) * 4096)],
      ['C1 truncated mid-page', rng.int(100, size - 1)],
    ] as const) {
      const path = copy(name.replace(/\W+/g, '-'));
      truncateSync(path, to);
      await judged(judge(episode, name, path));
    }
    // C2: bit flips in the header page, the schema and the b-tree pages.
    for (const [name, page] of [
      ['C2 flips in page 1 (header and schema)', 0],
      ['C2 flips in a random page', undefined],
      ['C2 flips in the last page', Math.floor(size / 4096) - 1],
    ] as const) {
      const path = copy(name.replace(/\W+/g, '-'));
      flipBytes(path, rng, rng.int(1, 8), 4096, page);
      await judged(judge(episode, name, path));
    }
    // C3: a zero-byte file; C4: a text file.
    {
      const path = copy('C3');
      truncateSync(path, 0);
      await judged(judge(episode, 'C3 zero-byte file', path));
    }
    {
      const path = copy('C4');
      writeFileSync(path, 'This is not a database.\nJust some notes someone saved as rlm.db.\n');
      await judged(judge(episode, 'C4 a text file', path, { mustNotWrite: true }));
    }
    // C5: the -wal of a killed run deleted (the "hot journal" case). SQLite cannot tell; the commit sequence can.
    {
      const dir = join(env.dir, 'C5');
      mkdirSync(dir);
      const path = join(dir, 'rlm.db');
      copyFileSync(base, path);
      const proc = episode.command(['run', episode.modulePath, '--run', episode.runId, ...episode.flags], {
        store: `sqlite:${path}`,
        rules: { 'commit.afterCommit': 'kill@4' },
        beacons: ['commit.afterCommit'],
      });
      await episode.settle([proc]);
      const acked = proc.hitsOf('commit.afterCommit');
      const seqBefore = new Database(base, { readonly: true });
      const start = (seqBefore.prepare("SELECT value FROM rlm_meta WHERE key = 'commit_seq'").get() as { value: number }).value;
      seqBefore.close();
      rmSync(`${path}-wal`, { force: true });
      rmSync(`${path}-shm`, { force: true });
      r.storage.walDeletions++;
      const db = new Database(path, { readonly: true });
      const after = (db.prepare("SELECT value FROM rlm_meta WHERE key = 'commit_seq'").get() as { value: number }).value;
      db.close();
      const detected = after < start + acked;
      const outcome = await judge(episode, 'C5 -wal deleted after a kill', path);
      outcome.detail = `${outcome.detail} (commit_seq ${after} < ${start}+${acked} acknowledged: ${detected ? 'the loss is detectable' : 'nothing lost'})`;
      outcomes.push(outcome);
    }
    // C6: a -wal from another database (same page size) next to this one.
    {
      const path = copy('C6');
      const other = join(env.dir, 'other');
      mkdirSync(other);
      const otherDb = new Database(join(other, 'x.db'));
      otherDb.pragma('journal_mode = WAL');
      otherDb.exec('CREATE TABLE t (x TEXT); INSERT INTO t VALUES (randomblob(3000)), (randomblob(3000))');
      copyFileSync(join(other, 'x.db-wal'), `${path}-wal`);
      otherDb.close();
      await judged(judge(episode, 'C6 a -wal from another database', path));
    }
    // C7: a read-only file in a read-only folder, opened by a user who may not write.
    {
      const path = copy('C7');
      chmodSync(path, 0o444);
      chmodSync(join(env.dir, 'C7'), 0o555);
      chmodSync(env.dir, 0o755);
      const outcome = await judge(episode, 'C7 a read-only file and folder', path, { user: 'nobody' });
      chmodSync(join(env.dir, 'C7'), 0o755);
      outcomes.push(outcome);
    }
    // C8: written by a newer rlm; and a foreign SQLite database that is not rlm's.
    {
      const path = copy('C8');
      const db = new Database(path);
      db.prepare('INSERT INTO rlm_migrations (version, applied_at) VALUES (999, 0)').run();
      db.close();
      await judged(judge(episode, 'C8 a schema newer than this rlm', path, { mustNotWrite: true }));
    }
    {
      const dir = join(env.dir, 'foreign');
      mkdirSync(dir);
      const path = join(dir, 'rlm.db');
      const db = new Database(path);
      db.exec("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES ('a'), ('b')");
      db.close();
      await judged(judge(episode, 'C8 a foreign SQLite database', path, { mustNotWrite: true }));
    }
    await Promise.all(pending);
    const problems: string[] = [];
    for (const o of outcomes) {
      r.storage.corruptFixed++;
      r.badInputs.storeFiles++;
      r.badInputs.total++;
      if (o.verdict === 'refused') r.storage.corruptRefused++;
      else if (o.verdict === 'detected after the run') r.storage.corruptDetectedAfter++;
      else if (o.verdict === 'ran correctly') r.storage.corruptRanCorrectly++;
      else if (o.verdict === 'silently wrong') r.storage.corruptSilentlyWrong++;
      episode.log.note(`${o.name}: ${o.verdict} ${o.detail}`);
      if (o.verdict === 'crashed') problems.push(`${o.name}: ${o.detail}`);
      // No damaged file may run to a wrong answer that rlm cannot see. A deleted -wal (C5) loses the last commits,
      // which no file check can see; the commit sequence shows it (I12).
      if (o.verdict === 'silently wrong' && !o.name.startsWith('C5')) problems.push(`${o.name}: ${o.detail}`);
    }
    r.notes.push(...outcomes.map((o) => `corrupt store ${o.name}: ${o.verdict}${o.detail ? ` — ${o.detail}` : ''}`));
    return problems;
  } finally {
    await episode.close(false);
  }
}

/**
 * Mutational fuzzing of the store file: flip 1–8 bytes in random pages, then open, check and resume in one child.
 * `only` replays one case of the sequence (a corpus entry): the cases before it are drawn but not run.
 */
export async function corruptFuzz(env: EpisodeEnv, cases: number, only?: number): Promise<string[]> {
  const rng = new Rng(env.seed);
  const episode = await baseStore(env, rng);
  const r = env.report;
  const base = episode.backend.dbPath as string;
  const files: string[] = [];
  try {
    for (let i = 0; i < (only === undefined ? cases : only + 1); i++) {
      const dir = join(env.dir, `f${i}`);
      mkdirSync(dir);
      const path = join(dir, 'rlm.db');
      copyFileSync(base, path);
      flipBytes(path, rng, rng.int(1, 8));
      if (only === undefined || i === only) files.push(path);
      else rmSync(dir, { recursive: true });
    }
    const list = join(env.dir, 'cases.json');
    writeFileSync(list, JSON.stringify({ module: episode.modulePath, runId: episode.runId, timeoutMs: 2_500, files }));
    const child = episode.command([list], { script: CHILD, label: 'fuzz' });
    await episode.settle([child]);
    const problems: string[] = [];
    if (child.exit?.code !== 0) problems.push(`the fuzz process ended ${child.exit?.signal ?? child.exit?.code}: ${tail(child.exit?.stderr ?? '')}`);
    const counts = { refused: 0, correct: 0, detected: 0, wrong: 0 };
    for (const line of child.stdout.trim().split('\n')) {
      if (!line.startsWith('{')) continue;
      const out = JSON.parse(line) as { file: string; ok: boolean; stage: string; state?: string; error?: { code: string | null; message: string }; doctor?: string[] };
      r.storage.corruptFuzzed++;
      r.badInputs.storeFiles++;
      r.badInputs.total++;
      if (!out.ok) {
        // Refused: with an RlmError code, never an anonymous driver error.
        if (!out.error?.code || !/^(STORE_CORRUPT|STORE_TOO_NEW|STORE_IO|STORE_UNAVAILABLE|CONFIG|NOT_FOUND)$/.test(out.error.code)) {
          problems.push(`fuzz ${out.file}: refused without an rlm code at ${out.stage}: ${out.error?.code} ${out.error?.message}`);
        }
        counts.refused++;
        r.storage.corruptRefused++;
        continue;
      }
      let wrong: string[] = out.state === 'hung' ? ['the resumed run never ended'] : [];
      try {
        wrong = wrong.concat(check(auditSqlite(out.file, episode.runId), episode.expected, episode.checkOptions()).problems);
      } catch (error) {
        wrong = [`unreadable after the run: ${(error as Error).message}`];
      }
      if (wrong.length === 0) {
        counts.correct++;
        r.storage.corruptRanCorrectly++;
      } else if ((out.doctor ?? []).some((p) => p.includes('STORE_CORRUPT'))) {
        // The run ended, and left damage in values it never read: every read of them refuses, doctor names them.
        counts.detected++;
        r.storage.corruptDetectedAfter++;
        episode.log.note(`fuzz ${out.file}: ran, damage left detected: ${wrong.slice(0, 1).join('; ')}; doctor: ${(out.doctor ?? [])[0]}`);
      } else {
        counts.wrong++;
        r.storage.corruptSilentlyWrong++;
        episode.log.note(`fuzz ${out.file}: ran, but ${wrong.slice(0, 2).join('; ')}`);
      }
    }
    r.notes.push(
      `store-file fuzz: ${files.length} files with 1–8 flipped bytes: ${counts.refused} refused with a code, ${counts.correct} ran correctly, ` +
        `${counts.detected} ran and left damage in values the run never read (refused on read, named by rlm doctor), ${counts.wrong} silently wrong`,
    );
    if (counts.wrong > 0) problems.push(`store-file fuzz: ${counts.wrong} damaged files ran to a wrong state that rlm cannot see`);
    return problems;
  } finally {
    await episode.close(false);
  }
}
