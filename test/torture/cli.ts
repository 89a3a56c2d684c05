/**
 * `npm run torture`: the CI tier (fixed seeds, about five minutes); `npm run torture -- --minutes 60 --seed random`:
 * the soak tier; `--episode N` replays one episode of the plan its seed gives. Writes torture-report.json and
 * exits non-zero when any episode failed (each failure prints its replay line and keeps its files).
 *
 *   --seed S        base seed (0x…, a number, or random); default RLM_TORTURE_SEED or 0xC0FFEE
 *   --minutes M     soak: run episodes for M minutes
 *   --episode N     run only episode N
 *   --parallel P    episodes at once (default 6: most of an episode is waiting on leases, locks and PostgreSQL)
 *   --report FILE   where to write the report (default torture-report.json)
 *   --keep DIR      put episode directories under DIR (kept)
 *   --count N       only the first N episodes of the CI plan
 *   --kind REGEX    only the episodes whose kind matches (numbers stay those of the whole plan)
 */
import { writeFileSync } from 'node:fs';
import { CI_SEED } from './ci-seed.js';
import { ciPlan, soakPlan } from './plan.js';
import { hexSeed, parseSeed } from './random.js';
import { summarize } from './report.js';
import { runSuite } from './suite.js';


function flag(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

async function main(): Promise<number> {
  const minutes = flag('minutes') ? Number(flag('minutes')) : undefined;
  const baseSeed = parseSeed(flag('seed') ?? process.env.RLM_TORTURE_SEED, CI_SEED);
  const tier = minutes ? 'soak' : 'ci';
  const episode = flag('episode') !== undefined ? Number(flag('episode')) : undefined;
  const reportPath = flag('report') ?? 'torture-report.json';
  const seedText = hexSeed(baseSeed);
  process.stderr.write(`rlm torture: ${tier} tier, base seed ${seedText}${minutes ? `, ${minutes} min` : ''}${episode !== undefined ? `, episode ${episode}` : ''}\n`);
  const report = await runSuite({
    baseSeed,
    tier,
    minutes,
    episode,
    parallel: flag('parallel') ? Number(flag('parallel')) : 6,
    root: flag('keep'),
    pgUrl: process.env.RLM_TEST_DATABASE_URL ?? null,
    plan: async (ctx) => {
      if (tier !== 'ci') return soakPlan(ctx);
      const kinds = flag('kind') ? new RegExp(flag('kind') as string) : null;
      // --kind keeps episode numbers: the others are skipped, not removed.
      return (await ciPlan(ctx)).slice(0, flag('count') ? Number(flag('count')) : undefined).map((item) => (kinds && !kinds.test(item.kind) ? { ...item, skip: true } : item));
    },
    replay: (index) =>
      `RLM_TORTURE_SEED=${seedText} npm run torture -- --episode ${index}${tier === 'soak' ? ` --minutes ${minutes}` : ''}`,
  });
  writeFileSync(reportPath, `${JSON.stringify(report, null, 2)}\n`);
  process.stderr.write(`\n${summarize(report)}\nreport written to ${reportPath}\n`);
  return report.failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
