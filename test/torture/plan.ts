/**
 * What the tiers run. The CI plan is a fixed list sized for about five minutes on two cores; the soak plan draws
 * an endless mix from the episode number. Episode numbers are stable for a given plan, so a replay line names
 * one episode of it. PostgreSQL episodes join the plan only when the PostgreSQL store works.
 */
import { join } from 'node:path';
import { chaosEpisode, type Round } from './chaos.js';
import { badInputs } from './bad-inputs.js';
import { corruptFixed, corruptFuzz } from './corrupt.js';
import { ioLoop, ioWorkers } from './io-sweep.js';
import { modelTest } from './model.js';
import corpus from './corpus.json' with { type: 'json' };
import { postgresBackend, sqliteBackend } from './episode.js';
import { pgFaults, PrivateCluster, templateDatabase } from './pg-faults.js';
import { parseSeed, Rng } from './random.js';
import type { EpisodeEnv } from './episode.js';
import type { PlanItem, SuiteContext } from './suite.js';
import { SWEEP_OCCURRENCES, SWEEP_PHASES, sweepEpisode } from './sweep.js';

function chaosSqlite(force: Round[] = [], sizes?: { min: number; max: number }): PlanItem {
  return {
    kind: force.includes('zombieBusy') ? 'zombie-busy' : 'chaos',
    budgetMs: 90_000,
    run: (env) => chaosEpisode(env, { backend: sqliteBackend(env.dir), force, minSize: sizes?.min, maxSize: sizes?.max }),
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

function chaosPg(force: Round[] = []): PlanItem {
  return {
    kind: 'chaos-pg',
    budgetMs: 120_000,
    run: async (env, ctx) => {
      const pg = await sharedPostgres(ctx);
      if (!pg) return ['PostgreSQL is not available'];
      const backend = await postgresBackend(pg.url, `rlm_torture_${process.pid}_${env.index}`, pg.template);
      return chaosEpisode(env, { backend, pg: pgFaults(pg.url, null), force, minSize: 30, maxSize: 350 });
    },
  };
}

/** Episodes on the private cluster: server crashes and backend kill -9 (run alone). */
function clusterPg(force: Round[]): PlanItem {
  return {
    kind: 'cluster-pg',
    exclusive: true,
    budgetMs: 150_000,
    run: async (env, ctx) => {
      const cluster = await ctx.shared(
        'cluster',
        () => PrivateCluster.create(),
        (c) => c.destroy(),
      );
      const template = await ctx.shared('cluster-template', () => templateDatabase(cluster.url, 'rlm_torture_tpl'));
      const backend = await postgresBackend(cluster.url, `rlm_torture_${env.index}`, template);
      return chaosEpisode(env, { backend, pg: pgFaults(cluster.url, cluster), force, minSize: 60, maxSize: 300, rounds: 2 });
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
    if (entry.kind === 'bad-inputs') return { kind: 'corpus-bad-inputs', seed, budgetMs: 180_000, run: (env) => badInputs(env, { codecRuns: 600, runFuzz: 150 }) };
    if (entry.kind === 'corrupt-fixed') return { kind: 'corpus-corrupt-fixed', seed, budgetMs: 120_000, run: (env) => corruptFixed(env) };
    if (entry.kind === 'corrupt-fuzz') return { kind: 'corpus-corrupt-fuzz', seed, budgetMs: 120_000, run: (env) => corruptFuzz(env, 200) };
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
    const result = await modelTest({ open, numRuns: runs, seed: env.seed, deadline: Date.now() + env.budgetMs - 10_000 });
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
  const items: PlanItem[] = [...corpusItems()];
  const pg = await sharedPostgres(ctx);
  if (pg && PrivateCluster.available()) {
    for (let i = 0; i < (options.cluster ?? 3); i++) items.push(clusterPg([i % 2 === 0 ? 'pgRestart' : 'pgBackendKill']));
  }
  items.push({ kind: 'bad-inputs', budgetMs: 180_000, run: (env) => badInputs(env, { codecRuns: options.codecRuns ?? 600, runFuzz: options.runFuzz ?? 150 }) });
  items.push({ kind: 'io-workers', budgetMs: 120_000, run: (env) => ioWorkers(env) });
  const loops: [Parameters<typeof ioLoop>[1]['phase'], string, boolean][] = [
    ['store.call', 'SQLITE_IOERR', false],
    ['store.call', 'SQLITE_IOERR_FSYNC', true],
    ['store.call', 'SQLITE_FULL', false],
    ['commit.beforeCommit', 'SQLITE_IOERR', false],
    ['commit.beforeCommit', 'SQLITE_FULL', true],
    ['claim.beforeCommit', 'SQLITE_IOERR', false],
    ['claim.beforeUpdate', 'SQLITE_IOERR_FSYNC', false],
  ];
  for (const [phase, code, onward] of loops) {
    items.push({ kind: `io-loop-${phase}-${code}`, budgetMs: 150_000, run: (env) => ioLoop(env, { phase, code, onward, maxInjections: options.ioInjections ?? 200 }) });
  }
  items.push({ kind: 'model-sqlite', budgetMs: 120_000, run: (env) => modelEpisode(env, 'sqlite', options.modelRuns ?? 300) });
  if (pg) items.push({ kind: 'model-pg', budgetMs: 150_000, run: (env, c) => modelEpisode(env, 'postgres', options.modelRuns ?? 300, c) });
  items.push({ kind: 'corrupt-fixed', budgetMs: 120_000, run: (env) => corruptFixed(env) });
  items.push({ kind: 'corrupt-fuzz', budgetMs: 120_000, run: (env) => corruptFuzz(env, options.fuzz ?? 200) });
  if (options.sweep !== false) items.push(...sweepItems());
  const chaos = options.chaos ?? 40;
  const pgCount = pg ? (options.pg ?? 30) : 0;
  // Interleaved, so PostgreSQL's waits overlap SQLite's work.
  for (let i = 0; i < Math.max(chaos, pgCount); i++) {
    if (i < chaos) items.push(chaosSqlite(i % 10 === 9 ? ['zombieBusy'] : []));
    if (i < pgCount) items.push(chaosPg(i % 10 === 4 ? ['pgInCommit'] : i % 10 === 7 ? ['pgProxy'] : []));
  }
  return items;
}

export async function soakPlan(ctx: SuiteContext): Promise<(index: number) => PlanItem> {
  const pg = await sharedPostgres(ctx);
  const cluster = pg && PrivateCluster.available();
  return (index) => {
    const rng = new Rng(ctx.baseSeed ^ index);
    const kind = rng.weighted<string>([
      ['chaos', 6],
      ['busy', 0.6],
      ['sweep', 2],
      ['pg', pg ? 3 : 0],
      ['cluster', cluster ? 0.4 : 0],
    ]);
    if (kind === 'sweep') {
      const phase = rng.pick(SWEEP_PHASES);
      const k = rng.int(1, SWEEP_OCCURRENCES);
      return { kind: `sweep-${phase}-${k}`, budgetMs: 90_000, run: (env) => sweepEpisode(env, sqliteBackend(env.dir), phase, k) };
    }
    if (kind === 'pg') return chaosPg();
    if (kind === 'cluster') return clusterPg([rng.pick(['pgRestart', 'pgBackendKill'] as Round[])]);
    return chaosSqlite(kind === 'busy' ? ['zombieBusy'] : [], { min: 50, max: 3000 });
  };
}
