/**
 * The torture suite: a plan of numbered episodes drawn from one base seed, run two at a time (PostgreSQL and
 * other exclusive episodes alone), each with its own seed, directory and budget. A failing episode keeps its
 * files and prints the one line that replays it. The CI tier runs a fixed plan; the soak tier draws episodes
 * until its time is up. Both write the same report.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { episodeDir, type EpisodeEnv } from './episode.js';
import { deriveSeed, hexSeed } from './random.js';
import { emptyReport, type Report } from './report.js';

export interface SuiteContext {
  report: Report;
  baseSeed: number;
  tier: 'ci' | 'soak';
  /** PostgreSQL server for the shared-store tier, when its store works. */
  pgUrl: string | null;
  /** Where episode directories go. */
  root: string;
  log: (line: string) => void;
  /** A resource shared by episodes (a template database, a private cluster), made once and cleaned up at the end. */
  shared<T>(name: string, create: () => Promise<T>, destroy?: (value: T) => Promise<void>): Promise<T>;
}

export interface PlanItem {
  kind: string;
  /** A fixed seed (a corpus entry) instead of one derived from the base seed and the episode number. */
  seed?: number;
  /** Runs alone (PostgreSQL episodes, timing-sensitive ones). */
  exclusive?: boolean;
  /** Left out of this run (filtered by kind), its number kept. */
  skip?: boolean;
  budgetMs: number;
  run(env: EpisodeEnv, ctx: SuiteContext): Promise<string[]>;
}

export interface SuiteOptions {
  baseSeed: number;
  tier: 'ci' | 'soak';
  /** The plan: a list (CI) or a function of the episode number (soak, endless). */
  plan: (ctx: SuiteContext) => Promise<PlanItem[] | ((index: number) => PlanItem)>;
  /** Only this episode (a replay). */
  episode?: number;
  /** Soak: stop starting episodes after this long. */
  minutes?: number;
  /** Episodes at once (2 on this machine's 2 cores). */
  parallel?: number;
  pgUrl?: string | null;
  root?: string;
  log?: (line: string) => void;
  /** Builds the replay command of an episode. */
  replay?: (index: number) => string;
}

export async function runSuite(options: SuiteOptions): Promise<Report> {
  const started = performance.now();
  const report = emptyReport(options.baseSeed, options.tier);
  // Episode stores live on tmpfs when there is one: kills do not depend on the disk, and power loss is emulated
  // by cutting the WAL (D1), so fsync costs nothing the suite needs.
  const root = options.root ?? join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), `rlm-torture-${process.pid}`);
  mkdirSync(root, { recursive: true });
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  report.notes.push(`episode stores under ${root}${root.startsWith('/dev/shm') ? ' (tmpfs: kills do not depend on the disk; power loss is emulated by cutting the WAL)' : ''}`);
  const resources = new Map<string, Promise<unknown>>();
  const cleanups: (() => Promise<void>)[] = [];
  const ctx: SuiteContext = {
    report,
    baseSeed: options.baseSeed,
    tier: options.tier,
    pgUrl: options.pgUrl ?? null,
    root,
    log,
    shared<T>(name: string, create: () => Promise<T>, destroy?: (value: T) => Promise<void>): Promise<T> {
      let made = resources.get(name) as Promise<T> | undefined;
      if (!made) {
        made = create();
        resources.set(name, made);
        if (destroy) cleanups.push(async () => destroy(await made as T));
      }
      return made;
    },
  };
  try {
    return await runPlan(options, ctx, await options.plan(ctx), started);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => log(`cleanup failed: ${(error as Error)?.message}`));
  }
}

async function runPlan(options: SuiteOptions, ctx: SuiteContext, plan: PlanItem[] | ((index: number) => PlanItem), started: number): Promise<Report> {
  const { report, root, log } = ctx;
  const itemAt = (index: number): PlanItem | undefined => (Array.isArray(plan) ? plan[index] : plan(index));
  const count = Array.isArray(plan) ? plan.length : Number.POSITIVE_INFINITY;
  const deadline = options.minutes ? Date.now() + options.minutes * 60_000 : Number.POSITIVE_INFINITY;
  const replay = options.replay ?? ((index: number) => `RLM_TORTURE_SEED=${hexSeed(options.baseSeed)} npm run torture -- --episode ${index}`);
  const indexes = options.episode !== undefined ? [options.episode] : null;

  const runOne = async (index: number, item: PlanItem): Promise<void> => {
    const seed = item.seed ?? deriveSeed(options.baseSeed, index);
    const dir = episodeDir(root, index, item.kind);
    const env: EpisodeEnv = { index, kind: item.kind, seed, dir, report, replay: replay(index), budgetMs: item.budgetMs };
    const t0 = performance.now();
    let problems: string[];
    try {
      problems = await item.run(env, ctx);
    } catch (error) {
      problems = [`episode crashed: ${(error as Error)?.stack ?? String(error)}`];
    }
    report.episodes.total++;
    report.episodes.byKind[item.kind] = (report.episodes.byKind[item.kind] ?? 0) + 1;
    if (item.kind.includes('pg')) report.episodes.postgres++;
    else report.episodes.sqlite++;
    const ms = Math.round(performance.now() - t0);
    if (problems.length === 0) {
      writeFileSync(join(dir, 'faults.log'), '', { flag: 'a' });
      // RLM_TORTURE_KEEP=1 keeps every episode's files; RLM_TORTURE_KEEP=<ms> those that took longer.
      const keep = process.env.RLM_TORTURE_KEEP;
      if (!keep || (keep !== '1' && ms < Number(keep))) rmSync(dir, { recursive: true, force: true });
      log(`ok   #${index} ${item.kind} (${ms} ms)`);
      return;
    }
    report.seeds.failing.push(hexSeed(seed));
    report.failures.push({ episode: index, kind: item.kind, seed: hexSeed(seed), replay: replay(index), kept: dir, problems: problems.slice(0, 30) });
    log(`FAIL #${index} ${item.kind} (${ms} ms): ${problems.length} problem(s); files kept in ${dir}`);
    for (const p of problems.slice(0, 12)) log(`       ${p.split('\n')[0]}`);
    log(`     replay: ${replay(index)}`);
  };

  const parallel = Math.max(1, options.parallel ?? 2);
  const running = new Set<Promise<void>>();
  const launch = (index: number, item: PlanItem) => {
    const promise = runOne(index, item).finally(() => running.delete(promise));
    running.add(promise);
    return promise;
  };
  for (let n = 0; indexes ? n < indexes.length : n < count; n++) {
    const index = indexes ? (indexes[n] as number) : n;
    if (Date.now() > deadline) break;
    const item = itemAt(index);
    if (!item) {
      log(`no episode ${index} in this plan`);
      break;
    }
    if (item.skip) continue;
    if (item.exclusive) {
      await Promise.all(running);
      await launch(index, item);
      continue;
    }
    while (running.size >= parallel) await Promise.race(running);
    launch(index, item);
  }
  await Promise.all(running);
  report.wallSeconds = (performance.now() - started) / 1000;
  if (report.failures.length === 0 && options.root === undefined) rmSync(root, { recursive: true, force: true });
  return report;
}
