/**
 * What the tiers run. The CI plan is a fixed list sized for about five minutes on two cores; the soak plan draws
 * an endless mix from the episode number. Episode numbers are stable for a given plan, so a replay line names
 * one episode of it.
 */
import { chaosEpisode, type Round } from './chaos.js';
import { sqliteBackend } from './episode.js';
import { Rng, parseSeed } from './random.js';
import corpus from './corpus.json' with { type: 'json' };
import type { PlanItem } from './suite.js';

function chaosSqlite(force: Round[] = [], sizes?: { min: number; max: number }): PlanItem {
  return {
    kind: force.includes('zombieBusy') ? 'zombie-busy' : 'chaos',
    budgetMs: 90_000,
    run: (env) => chaosEpisode(env, { backend: sqliteBackend(env.dir), force, minSize: sizes?.min, maxSize: sizes?.max }),
  };
}

export interface PlanOptions {
  chaos?: number;
}

/** Seeds that once failed, replayed on every run (SQLite's fuzzcheck idea). */
export function corpusItems(): PlanItem[] {
  return (corpus as { kind: string; seed: string }[]).map((entry) => {
    if (entry.kind !== 'chaos') throw new Error(`corpus.json: unknown kind ${entry.kind}`);
    return { ...chaosSqlite(), kind: 'corpus', seed: parseSeed(entry.seed, 0) };
  });
}

export function ciPlan(options: PlanOptions = {}): PlanItem[] {
  const items: PlanItem[] = [...corpusItems()];
  for (let i = 0; i < (options.chaos ?? 40); i++) items.push(chaosSqlite(i % 10 === 9 ? ['zombieBusy'] : []));
  return items;
}

export function soakPlan(baseSeed: number): (index: number) => PlanItem {
  return (index) => {
    const rng = new Rng(baseSeed ^ index);
    return chaosSqlite(rng.chance(0.1) ? ['zombieBusy'] : [], { min: 50, max: 3000 });
  };
}
