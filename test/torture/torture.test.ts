/**
 * The torture suite's CI tier (TORTURE.md §8): fixed seeds, about five minutes on two cores. It runs the whole
 * plan once — crash-point sweep, chaos episodes on SQLite and PostgreSQL, zombies, WAL truncation, store errors,
 * corrupt files, bad inputs, the Store model test — writes torture-report.json, and asserts the figures: every
 * failpoint phase crashed at, the §8.7 CI counts, and nothing lost, duplicated or applied by a zombie.
 * Needs `npm run build` first (the workers run bin/rlm.mjs); `npm test` does it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CI_SEED } from './ci-seed.js';
import { adminClient } from './episode.js';
import { PHASES } from './harness.js';
import { ciPlan } from './plan.js';
import { hexSeed } from './random.js';
import { REGRESSIONS } from './regressions.js';
import { type Report, summarize } from './report.js';
import { runSuite } from './suite.js';

const pgUrl = process.env.RLM_TEST_DATABASE_URL ?? null;

describe('the bugs the torture suite found stay fixed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rlm-regressions-'));
  const postgres = { pgUrl: pgUrl ?? '', schemas: [] as string[] };
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    if (!pgUrl || postgres.schemas.length === 0) return;
    const admin = await adminClient(pgUrl);
    for (const schema of postgres.schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await admin.end();
  });
  for (const regression of REGRESSIONS) {
    it(`SQLite: ${regression.name}`, async () => {
      expect(await regression.check({ dir })).toBeNull();
    });
    if (regression.sqliteOnly) continue;
    it.runIf(pgUrl)(`PostgreSQL: ${regression.name}`, async () => {
      expect(await regression.check(postgres)).toBeNull();
    });
  }
});

describe(`torture suite, CI tier (seed ${hexSeed(CI_SEED)})`, () => {
  let report: Report;

  beforeAll(async () => {
    report = await runSuite({
      baseSeed: CI_SEED,
      tier: 'ci',
      plan: (ctx) => ciPlan(ctx),
      parallel: 6,
      pgUrl,
      replay: (index) => `RLM_TORTURE_SEED=${hexSeed(CI_SEED)} npm run torture -- --episode ${index}`,
      log: () => undefined,
    });
    writeFileSync('torture-report.json', `${JSON.stringify(report, null, 2)}\n`);
    process.stderr.write(`\n${summarize(report)}\n`);
  });

  it('every episode held every invariant (failures print their replay line)', () => {
    const failures = report.failures.map((f) => `#${f.episode} ${f.kind}: ${f.problems.slice(0, 3).join(' | ')}\n    replay: ${f.replay}${f.kept ? `\n    files: ${f.kept}` : ''}`);
    expect(failures, failures.join('\n')).toEqual([]);
  });

  it('lost nothing, duplicated nothing, applied no zombie commit', () => {
    expect(report.invariants.checked).toBeGreaterThan(100);
    expect(report.invariants.dataLost).toBe(0);
    expect(report.invariants.duplicatedCompletions).toBe(0);
    expect(report.zombies.applied).toBe(0);
    expect(report.invariants.zombieCommitsApplied).toBe(0);
    expect(report.effects.duplicates).toBe(0);
  });

  it('hit every failpoint phase and crashed at each, every occurrence 1…5 the phase reaches', () => {
    for (const phase of PHASES) {
      expect(report.phases.hits[phase], `${phase} never hit`).toBeGreaterThan(0);
      expect(report.phases.kills[phase], `${phase} never crashed at`).toBeGreaterThan(0);
    }
    expect(report.sweep.episodes).toBe(PHASES.length * 5);
    expect(report.sweep.killed).toBeGreaterThanOrEqual(PHASES.length * 5 - 10);
  });

  it('reached the CI figures of TORTURE.md §8.7', () => {
    expect(report.kills.sigkill, 'SIGKILLs survived').toBeGreaterThanOrEqual(300);
    expect(report.kills.midCommit, 'mid-commit kills').toBeGreaterThanOrEqual(50);
    expect(report.zombies.commitsAttempted, 'zombie commits attempted (all rejected)').toBeGreaterThanOrEqual(30);
    expect(report.badInputs.total, 'bad inputs tried').toBeGreaterThanOrEqual(1000);
    expect(report.storage.walTruncations, 'WAL-tail truncations').toBeGreaterThanOrEqual(30);
    expect(report.storage.corruptFixed, 'fixed corrupt-store cases').toBeGreaterThanOrEqual(12);
    expect(report.storage.corruptFuzzed, 'fuzzed corrupt-store cases').toBeGreaterThanOrEqual(200);
    expect(report.storage.corruptSilentlyWrong, 'damaged store files that ran to a wrong state rlm cannot see').toBe(0);
    expect(report.storage.storeErrorInjections + report.storage.storeErrorInjectionsInProcess, 'store-error injections').toBeGreaterThanOrEqual(1000);
    expect(report.model.sqliteRuns, 'model runs on SQLite').toBeGreaterThanOrEqual(300);
    expect(report.gracefulStops, 'graceful stops').toBeGreaterThan(0);
    expect(report.storage.snapshotsChecked + (report.sweep.byPhase['snapshot.end']?.reduce((a, b) => a + b, 0) ?? 0), 'snapshots').toBeGreaterThan(0);
    if (report.postgres.available) {
      expect(report.kills.postgres, 'SIGKILLs on PostgreSQL').toBeGreaterThanOrEqual(100);
      expect(report.model.postgresRuns, 'model runs on PostgreSQL').toBeGreaterThanOrEqual(300);
      expect(report.postgres.terminateBackend, 'backend terminations').toBeGreaterThanOrEqual(40);
      expect(report.postgres.inCommit, 'terminations at COMMIT').toBeGreaterThanOrEqual(10);
      expect(report.postgres.proxyAckDrops, 'COMMIT replies dropped').toBeGreaterThan(0);
      expect(report.postgres.immediateRestarts, 'server crash-restarts').toBeGreaterThanOrEqual(2);
    } else {
      expect(pgUrl, 'RLM_TEST_DATABASE_URL is set but the PostgreSQL store does not work').toBeNull();
    }
  });
});
