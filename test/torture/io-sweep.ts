/**
 * Store errors (TORTURE.md §8.2 IO1/IO2): injected at every store call in turn, once or from then on, in a real
 * `rlm run` (which must exit non-zero with one clear line, never reuse the connection, never corrupt the file),
 * and by the hundred in one process (io-child.mjs). After the faults the run is finished quietly and checked
 * against the reference like any other episode.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { auditSqlite, check } from './checker.js';
import { Episode, type EpisodeEnv, sqliteBackend, tail } from './episode.js';
import { Rng } from './random.js';
import { readSink } from './sink.js';
import { generateWorkload, rootInput } from './workload.js';

const CHILD = join(import.meta.dirname, 'io-child.mjs');

function smallWorkload(seed: number) {
  const rng = new Rng(seed);
  return generateWorkload(rng, { shape: 'tree', size: 30, combine: true, passDead: true, effects: true, keyed: rng.chance(0.5), poisons: { invalidChild: 1 } });
}

export interface IoConfig {
  phase: 'store.call' | 'commit.beforeCommit' | 'claim.beforeCommit' | 'claim.beforeUpdate';
  code: string;
  onward: boolean;
}

/** The in-process loop, once per configuration: for k = 1, 2, 3 …, a fresh run faulted at the k-th hit, then resumed and checked. */
export async function ioLoop(env: EpisodeEnv, configs: readonly IoConfig[], maxInjections: number): Promise<string[]> {
  const episode = new Episode(env, sqliteBackend(env.dir), smallWorkload(env.seed), ['--commit-every', '1', '--commit-ms', '1']);
  try {
    const job = join(env.dir, 'job.json');
    writeFileSync(
      job,
      JSON.stringify({
        module: episode.modulePath,
        runId: episode.runId,
        input: rootInput(episode.spec),
        dir: env.dir,
        expected: { state: episode.expected.runState, result: episode.expected.rootResult },
        configs,
        maxInjections,
      }),
    );
    const child = episode.command([job], { script: CHILD, label: 'io-loop' });
    await episode.settle([child]);
    const problems = [...episode.problems];
    if (child.exit?.code !== 0) problems.push(`the store-error loop ended ${child.exit?.signal ?? child.exit?.code}: ${tail(child.exit?.stderr ?? '')}`);
    const lines = child.stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { summary?: boolean; config?: IoConfig; injected?: number; uncoded?: number; wrong?: number; through?: boolean; k?: number; faulted?: { error?: { code: string | null } }; wrongRun?: boolean });
    for (const summary of lines.filter((l) => l.summary)) {
      const what = `${summary.config?.phase}=${summary.config?.code}${summary.config?.onward ? ' onward' : ''}`;
      env.report.storage.storeErrorInjectionsInProcess += summary.injected ?? 0;
      if ((summary.uncoded ?? 0) > 0) problems.push(`${what}: ${summary.uncoded} injected errors surfaced without an rlm store code`);
      if ((summary.wrong ?? 0) > 0) problems.push(`${what}: ${summary.wrong} runs did not recover exactly after an injected error, e.g. ${JSON.stringify(lines.find((l) => l.wrongRun))}`);
      if (!summary.through && (summary.injected ?? 0) < maxInjections) problems.push(`${what}: the loop never got a run through`);
    }
    // The last run, whole and unfaulted, against the reference.
    const audit = auditSqlite(join(env.dir, 'loop.db'), episode.runId);
    problems.push(...check(audit, episode.expected, { ...episode.checkOptions(), sink: readSink(episode.sinkPath) }).problems);
    return problems;
  } finally {
    await episode.close(false);
  }
}

/** Real `rlm run` processes meeting injected store errors: a clear exit, then a clean resume. */
export async function ioWorkers(env: EpisodeEnv): Promise<string[]> {
  const episode = new Episode(env, sqliteBackend(env.dir), smallWorkload(env.seed), ['--commit-every', '3', '--commit-ms', '2', '--concurrency', '3']);
  const rng = new Rng(env.seed);
  let failed = true;
  try {
    const plans: [string, string][] = [
      ['store.call', 'SQLITE_IOERR'],
      ['store.call', 'SQLITE_FULL'],
      ['commit.beforeCommit', 'SQLITE_IOERR_FSYNC'],
      ['commit.beforeCommit', 'SQLITE_FULL'],
      ['claim.beforeCommit', 'SQLITE_IOERR'],
      ['store.call', 'SQLITE_READONLY'],
    ];
    for (const [phase, code] of plans) {
      const k = rng.int(1, 8);
      const proc = episode.spawn({ rules: { [phase]: `throw(${code})@${k}${rng.chance(0.5) ? '+' : ''}` } });
      await episode.settle([proc]);
      const exit = proc.exit;
      if (!exit || proc.hitsOf(phase) < k) continue;
      env.report.storage.storeErrorInjections++;
      const stderr = exit.stderr;
      if (exit.code !== 1) episode.problems.push(`IO ${phase}=${code}@${k}: exit ${exit.signal ?? exit.code}, expected 1: ${tail(stderr)}`);
      else if (stderr.includes('unexpected error') || stderr.includes('    at ')) episode.problems.push(`IO ${phase}=${code}@${k}: a stack trace: ${tail(stderr)}`);
      else if (!/^rlm: .*(could not be written|damaged)/m.test(stderr)) episode.problems.push(`IO ${phase}=${code}@${k}: no clear line: ${tail(stderr)}`);
    }
    await episode.complete();
    const result = await episode.verify({ rerun: false });
    failed = result.problems.length > 0;
    return result.problems;
  } finally {
    await episode.close(failed);
  }
}
