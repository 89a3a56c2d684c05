/**
 * What the tiers run. The CI plan is a fixed list sized for about five minutes on two cores; the soak plan draws
 * an endless mix from the episode number. Episode numbers are stable for a given plan, so a replay line names
 * one episode of it. PostgreSQL episodes join the plan only when the PostgreSQL store works.
 */
import { join } from 'node:path';
import { chaosEpisode, type Round } from './chaos.js';
import { badInputs } from './bad-inputs.js';
import { corruptFixed, corruptFuzz } from './corrupt.js';
import { type IoConfig, ioLoop, ioWorkers } from './io-sweep.js';
import { modelTest } from './model.js';
import corpus from './corpus.json' with { type: 'json' };
import { postgresBackend, sqliteBackend } from './episode.js';
import { pgFaults, PrivateCluster, templateDatabase } from './pg-faults.js';
import { hexSeed, parseSeed, Rng } from './random.js';
import type { EpisodeEnv } from './episode.js';
import type { PlanItem, SuiteContext } from './suite.js';
import { SWEEP_OCCURRENCES, SWEEP_PHASES, sweepEpisode } from './sweep.js';

interface Recipe {
  force?: Round[];
  finish?: Round[];
  rounds?: number;
  rerun?: boolean;
  min?: number;
  max?: number;
  killAll?: boolean;
}

/** Rounds that may end a CI episode: zombies above all (the zombie-commit figure), then the rest. */
const SQLITE_FINISH: Round[] = ['zombieStop', 'zombieStop', 'zombieStop', 'zombieTxn', 'graceful', 'snapshot', 'checkpoint'];
const PG_FINISH: Round[] = ['pgInCommit', 'pgInCommit', 'pgTerminate', 'pgProxy', 'zombieStop', 'zombieStop'];

function chaosSqlite(recipe: Recipe = {}): PlanItem {
  const force = recipe.force ?? [];
  return {
    kind: force.includes('zombieBusy') ? 'zombie-busy' : 'chaos',
    budgetMs: 90_000,
    run: (env) =>
      chaosEpisode(env, {
        backend: sqliteBackend(env.dir),
        force,
        finish: recipe.finish,
        rounds: recipe.rounds,
        rerun: recipe.rerun,
        killAll: recipe.killAll,
        minSize: recipe.min,
        maxSize: recipe.max,
      }),
  };
}

/** The shared server's template database (migrated once), or null when the PostgreSQL store does not work. */
async function sharedPostgres(ctx: SuiteContext): Promise<{ url: string; template: string } | null> {
  const url = ctx.pgUrl;
  if (!url) return null;
  return ctx.shared(
    'pg',
    async () => {
      try {
        const template = await templateDatabase(url, `rlm_torture_tpl_${process.pid}`);
        ctx.report.postgres.available = true;
        return { url, template };
      } catch (error) {
        ctx.report.notes.push(`PostgreSQL store not functional, its tier was skipped: ${(error as Error)?.message}`);
        return null;
      }
    },
    async (made) => {
      if (!made) return;
      const { adminClient } = await import('./episode.js');
      const admin = await adminClient(made.url);
      await admin.query(`DROP DATABASE IF EXISTS "${made.template}" WITH (FORCE)`).catch(() => undefined);
      await admin.end();
    },
  );
}

function chaosPg(recipe: Recipe = {}): PlanItem {
  return {
    kind: 'chaos-pg',
    budgetMs: 120_000,
    run: async (env, ctx) => {
      const pg = await sharedPostgres(ctx);
      if (!pg) return ['PostgreSQL is not available'];
      const backend = await postgresBackend(pg.url, `rlm_torture_${process.pid}_${env.index}`, pg.template);
      return chaosEpisode(env, {
        backend,
        pg: pgFaults(pg.url, null),
        force: recipe.force,
        finish: recipe.finish,
        rounds: recipe.rounds,
        rerun: recipe.rerun,
        killAll: recipe.killAll,
        minSize: recipe.min ?? 30,
        maxSize: recipe.max ?? 350,
      });
    },
  };
}

/** Episodes on the private cluster: server crashes and backend kill -9 (run alone). */
function clusterPg(force: Round[]): PlanItem {
  return {
    kind: 'cluster-pg',
    budgetMs: 150_000,
    run: async (env, ctx) => {
      const cluster = await ctx.shared(
        'cluster',
        () => PrivateCluster.create(),
        (c) => c.destroy(),
      );
      const template = await ctx.shared('cluster-template', () => templateDatabase(cluster.url, 'rlm_torture_tpl'));
      // One episode at a time on the private cluster: its crashes end every session on it.
      const lock = await ctx.shared('cluster-lock', async () => ({ tail: Promise.resolve() }));
      const turn = lock.tail;
      let release = () => undefined as void;
      lock.tail = new Promise<void>((resolve) => (release = resolve));
      await turn;
      try {
        const backend = await postgresBackend(cluster.url, `rlm_torture_${env.index}`, template);
        return await chaosEpisode(env, { backend, pg: pgFaults(cluster.url, cluster), force, minSize: 60, maxSize: 250, rounds: 2, finish: ['random'] });
      } finally {
        release();
      }
    },
  };
}

/** Seeds that once failed, replayed on every run (SQLite's fuzzcheck idea). */
export function corpusItems(): PlanItem[] {
  return (corpus as { kind: string; seed: string; phase?: string; k?: number }[]).map((entry) => {
    const seed = parseSeed(entry.seed, 0);
    if (entry.kind === 'chaos') return { ...chaosSqlite(), kind: 'corpus', seed };
    if (entry.kind === 'sweep') {
      const phase = entry.phase as (typeof SWEEP_PHASES)[number];
      const k = entry.k ?? 1;
      return { kind: `corpus-sweep-${phase}-${k}`, seed, budgetMs: 60_000, run: (env) => sweepEpisode(env, sqliteBackend(env.dir), phase, k) };
    }
    if (entry.kind === 'chaos-pg') return { ...chaosPg(), kind: 'corpus-chaos-pg', seed };
    if (entry.kind === 'cluster-pg') return { ...clusterPg([(entry as { force?: Round }).force ?? 'pgBackendKill']), kind: 'corpus-cluster-pg', seed };
    if (entry.kind === 'bad-inputs') return { kind: 'corpus-bad-inputs', seed, budgetMs: 180_000, run: (env) => badInputs(env, { codecRuns: 600, runFuzz: 150 }) };
    if (entry.kind === 'corrupt-fixed') return { kind: 'corpus-corrupt-fixed', seed, budgetMs: 120_000, run: (env) => corruptFixed(env) };
    if (entry.kind === 'corrupt-fuzz') {
      const only = (entry as { case?: number }).case;
      return { kind: 'corpus-corrupt-fuzz', seed, budgetMs: 120_000, run: (env) => corruptFuzz(env, 100, only) };
    }
    throw new Error(`corpus.json: unknown kind ${entry.kind}`);
  });
}

function sweepItems(): PlanItem[] {
  const items: PlanItem[] = [];
  for (const phase of SWEEP_PHASES) {
    for (let k = 1; k <= SWEEP_OCCURRENCES; k++) {
      items.push({ kind: `sweep-${phase}-${k}`, budgetMs: 60_000, run: (env) => sweepEpisode(env, sqliteBackend(env.dir), phase, k) });
    }
  }
  return items;
}

export interface PlanOptions {
  chaos?: number;
  pg?: number;
  cluster?: number;
  sweep?: boolean;
  fuzz?: number;
  codecRuns?: number;
  runFuzz?: number;
  ioInjections?: number;
  modelRuns?: number;
}

/** The Store API model test (model.ts) as one episode, on SQLite or on a fresh PostgreSQL schema. */
async function modelEpisode(env: EpisodeEnv, backend: 'sqlite' | 'postgres', runs: number, ctx?: SuiteContext): Promise<string[]> {
  const { SqliteStore } = await import('../../src/store/sqlite/sqlite-store.js');
  const { PostgresStore } = await import('../../src/store/postgres/postgres-store.js');
  const schema = `rlm_torture_model_${process.pid}_${env.index}`;
  const pgUrl = ctx?.pgUrl;
  const open =
    backend === 'sqlite'
      ? async () => new SqliteStore({ path: join(env.dir, 'model.db') })
      : async () => new PostgresStore({ connectionString: pgUrl as string, schema, poolSize: 2, applicationName: 'torture-model' });
  try {
    const result = await modelTest({ open, numRuns: runs, seed: env.seed, maxCommands: backend === 'postgres' ? 30 : 40, deadline: Date.now() + env.budgetMs - 10_000 });
    if (backend === 'sqlite') env.report.model.sqliteRuns += result.runs;
    else env.report.model.postgresRuns += result.runs;
    env.report.model.commands += result.commands;
    env.report.model.fencedChecked += result.fenced;
    return [];
  } catch (error) {
    return [`model test on ${backend}: ${(error as Error).message.split('\n').slice(0, 6).join(' ')}`, String((error as Error).cause ?? '').slice(0, 600)];
  } finally {
    if (backend === 'postgres' && pgUrl) {
      const { adminClient } = await import('./episode.js');
      const admin = await adminClient(pgUrl);
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
      await admin.end();
    }
  }
}

export async function ciPlan(ctx: SuiteContext, options: PlanOptions = {}): Promise<PlanItem[]> {
  const pg = await sharedPostgres(ctx);
  const items: PlanItem[] = [];
  // Long single-process sections first, so the many short episodes fill the gaps around them.
  items.push({ kind: 'bad-inputs', budgetMs: 180_000, run: (env) => badInputs(env, { codecRuns: options.codecRuns ?? 600, runFuzz: options.runFuzz ?? 150 }) });
  items.push({ kind: 'corrupt-fuzz', budgetMs: 120_000, run: (env) => corruptFuzz(env, options.fuzz ?? 100) });
  items.push({ kind: 'corrupt-fuzz', budgetMs: 120_000, run: (env) => corruptFuzz(env, options.fuzz ?? 100) });
  if (pg) items.push({ kind: 'model-pg', budgetMs: 150_000, run: (env, c) => modelEpisode(env, 'postgres', options.modelRuns ?? 300, c) });
  items.push({ kind: 'corrupt-fixed', budgetMs: 120_000, run: (env) => corruptFixed(env) });
  // The store-error loop, four children of five configurations each: every store call of a run faulted in turn.
  const configs: IoConfig[] = [];
  for (const phase of ['store.call', 'commit.beforeCommit', 'store.call', 'claim.beforeCommit', 'store.call'] as const) {
    for (const code of ['SQLITE_IOERR', 'SQLITE_IOERR_FSYNC', 'SQLITE_FULL', 'SQLITE_IOERR']) configs.push({ phase, code, onward: configs.length % 3 === 1 });
  }
  for (let i = 0; i < 4; i++) {
    items.push({ kind: 'io-loop', budgetMs: 150_000, run: (env) => ioLoop(env, configs.slice(i * 5, i * 5 + 5), options.ioInjections ?? 150) });
  }
  items.push({ kind: 'io-workers', budgetMs: 120_000, run: (env) => ioWorkers(env) });
  items.push({ kind: 'model-sqlite', budgetMs: 120_000, run: (env) => modelEpisode(env, 'sqlite', options.modelRuns ?? 300) });
  if (pg && PrivateCluster.available()) {
    // The corpus's cluster seed takes the first place (a backend kill -9); two server crash-restarts follow.
    for (const force of [['pgBackendKill'], ['pgRestart'], ['pgRestart']] as Round[][]) items.push(clusterPg(force));
  }
  const chaos = options.chaos ?? 30;
  const pgCount = pg ? (options.pg ?? 18) : 0;
  const sweep = options.sweep === false ? [] : sweepItems();
  // Chaos on both stores interleaved with the sweep, so PostgreSQL's waits overlap SQLite's work.
  const mixed: PlanItem[] = [];
  for (let i = 0; i < Math.max(chaos, pgCount); i++) {
    // Zombies go first, while the run has the most work left: their commits are the ones to fence.
    const pgForce: Round[] = i % 3 === 0 ? ['pgInCommit'] : i % 3 === 1 ? ['zombieStop'] : [];
    const sqliteForce: Round[] = i % 7 === 6 ? ['zombieBusy'] : i % 2 === 0 ? ['zombieStop'] : i % 4 === 1 ? ['zombieTxn'] : ['graceful'];
    if (i < pgCount) mixed.push(chaosPg({ rounds: 5, finish: PG_FINISH, rerun: i % 4 === 0, min: 80, max: 300, force: pgForce, killAll: true }));
    if (i < chaos) mixed.push(chaosSqlite({ rounds: 4, finish: SQLITE_FINISH, rerun: i % 4 === 0, min: 150, max: 600, force: sqliteForce, killAll: true }));
  }
  const step = Math.max(1, Math.floor(sweep.length / Math.max(1, mixed.length)));
  for (let i = 0; i < mixed.length || sweep.length > 0; i++) {
    if (i < mixed.length) items.push(mixed[i] as PlanItem);
    items.push(...sweep.splice(0, step));
  }
  return withCorpus(items, { pg: pg !== null, cluster: pg !== null && PrivateCluster.available(), notes: ctx.report.notes });
}

/**
 * Replays the corpus in the plan: each seed takes the place of the first episode of its kind (a sweep entry,
 * of its phase and occurrence), or is added when the plan has none. Outside CI, the PostgreSQL seeds are left
 * out (and a note says so) when PostgreSQL, or the private cluster, is not there, as the other PostgreSQL tests
 * skip; in CI they stay in the plan and fail loudly.
 */
function withCorpus(items: PlanItem[], have: { pg: boolean; cluster: boolean; notes: string[] }): PlanItem[] {
  const out = [...items];
  const skipped: string[] = [];
  for (const entry of corpusItems()) {
    const missing = entry.kind === 'corpus-cluster-pg' ? !have.cluster : entry.kind === 'corpus-chaos-pg' ? !have.pg : false;
    if (missing && !process.env.CI) {
      skipped.push(`${entry.kind} ${entry.seed === undefined ? '' : hexSeed(entry.seed)}`.trim());
      continue;
    }
    const kind = entry.kind.replace(/^corpus-/, '') || 'chaos';
    const at = out.findIndex((item) => item.seed === undefined && (item.kind === kind || (kind === 'corpus' && item.kind === 'chaos')));
    if (at >= 0) out[at] = { ...entry, kind: `${(out[at] as PlanItem).kind}*` };
    else out.push(entry);
  }
  if (skipped.length > 0) {
    const why = have.pg ? 'the private PostgreSQL cluster needs root and initdb' : 'PostgreSQL is not available (RLM_TEST_DATABASE_URL unset or not working)';
    const note = `skipped ${skipped.length} PostgreSQL corpus seeds (${skipped.join(', ')}): ${why}`;
    have.notes.push(note);
    process.stderr.write(`torture: ${note}\n`);
  }
  return out;
}

export async function soakPlan(ctx: SuiteContext): Promise<(index: number) => PlanItem> {
  const pg = await sharedPostgres(ctx);
  const cluster = pg && PrivateCluster.available();
  const configs: IoConfig[] = [];
  for (const phase of ['store.call', 'commit.beforeCommit', 'claim.beforeCommit', 'claim.beforeUpdate'] as const) {
    for (const code of ['SQLITE_IOERR', 'SQLITE_IOERR_FSYNC', 'SQLITE_FULL', 'SQLITE_BUSY']) for (const onward of [false, true]) configs.push({ phase, code, onward });
  }
  return (index) => {
    const rng = new Rng(ctx.baseSeed ^ index);
    const kind = rng.weighted<string>([
      ['chaos', 6],
      ['busy', 0.6],
      ['sweep', 2],
      ['pg', pg ? 3 : 0],
      ['cluster', cluster ? 0.4 : 0],
      ['io', 0.4],
      ['fuzz', 0.2],
      ['bad', 0.1],
      ['model', pg ? 0.2 : 0.1],
    ]);
    if (kind === 'sweep') {
      const phase = rng.pick(SWEEP_PHASES);
      const k = rng.int(1, SWEEP_OCCURRENCES);
      return { kind: `sweep-${phase}-${k}`, budgetMs: 90_000, run: (env) => sweepEpisode(env, sqliteBackend(env.dir), phase, k) };
    }
    if (kind === 'pg') return chaosPg({ min: 50, max: 1500, rounds: rng.int(3, 10), killAll: rng.chance(0.5) });
    if (kind === 'cluster') return clusterPg([rng.pick(['pgRestart', 'pgBackendKill'] as Round[])]);
    if (kind === 'io') return { kind: 'io-loop', budgetMs: 600_000, run: (env) => ioLoop(env, [rng.pick(configs), rng.pick(configs)], 400) };
    if (kind === 'fuzz') return { kind: 'corrupt-fuzz', budgetMs: 600_000, run: (env) => corruptFuzz(env, 500) };
    if (kind === 'bad') return { kind: 'bad-inputs', budgetMs: 600_000, run: (env) => badInputs(env, { codecRuns: 20_000, runFuzz: 2_000 }) };
    if (kind === 'model') {
      const backend = pg && rng.chance(0.5) ? 'postgres' : 'sqlite';
      return { kind: `model-${backend === 'postgres' ? 'pg' : 'sqlite'}`, budgetMs: 600_000, run: (env, c) => modelEpisode(env, backend, 2_000, c) };
    }
    return chaosSqlite({ force: kind === 'busy' ? ['zombieBusy'] : [], min: 50, max: 3000, rounds: rng.int(2, 10), killAll: rng.chance(0.5) });
  };
}
