/**
 * The crash-point sweep (TORTURE.md §8.4.4, SQLite's count-up loop applied to rlm): for every failpoint phase P
 * and occurrence k = 1…5, a small workload is run, killed at the k-th hit of P, resumed and checked. Phases hit
 * once per process (a graceful stop, a take-back, a snapshot) are swept over k different moments of the run
 * instead. Every commit boundary is crashed at, independent of timing luck.
 */
import { join } from 'node:path';
import { type Backend, Episode, type EpisodeEnv, tail } from './episode.js';
import { type Phase, PHASES } from './harness.js';
import { Rng } from './random.js';
import { generateWorkload, type WorkloadSpec } from './workload.js';

const CHECKPOINTER = join(import.meta.dirname, 'checkpointer.mjs');
export const SWEEP_OCCURRENCES = 5;

export function sweepWorkload(seed: number, phase: Phase): WorkloadSpec {
  const rng = new Rng(seed);
  if (phase === 'spawn.midChunk') {
    // Past maxChildren the fan-out alarm pauses the run; once approved, children persist in chunks of 1,000.
    return generateWorkload(rng, { shape: 'fanout', size: 0, fanout: 5_300, maxChildren: 100, combine: rng.chance(0.5) });
  }
  return generateWorkload(rng, {
    shape: 'tree',
    size: 50,
    keyed: rng.chance(0.4),
    combine: true,
    passDead: true,
    effects: true,
    delays: true,
    streams: true,
    // Flaky nodes go back to the frontier with a backoff, which makes the worker claim again (claim phases only:
    // the idle polls cost time).
    poisons: { flaky: phase.startsWith('claim') ? 3 : 0, invalidChild: 1 },
    maxAttempts: 5,
  });
}

const FLAGS = ['--lease-ms', '3000', '--heartbeat-ms', '25', '--commit-every', '4', '--commit-ms', '5', '--concurrency', '4', '--grace-ms', '1500'];

/** One sweep episode: kill at (phase, k), resume, check. */
export async function sweepEpisode(env: EpisodeEnv, backend: Backend, phase: Phase, k: number): Promise<string[]> {
  const spec = sweepWorkload(env.seed, phase);
  // The fan-out's 5,300 leaves commit in large groups; the small tree commits often, so every boundary recurs.
  const episode = new Episode(env, backend, spec, phase === 'spawn.midChunk' ? [...FLAGS, '--commit-every', '200'] : FLAGS);
  const r = env.report;
  let failed = true;
  let killed = false;
  try {
    await episode.quiet();
    switch (phase) {
      case 'stop.begin':
      case 'stop.release': {
        // k = 1: the release at the normal end of a run; k > 1: a SIGTERM after commit k - 1, killed in the drain.
        const proc = episode.spawn({ rules: { [phase]: 'kill@1' } });
        if (k > 1 || phase === 'stop.begin') {
          if (await proc.waitFor('commit.afterCommit', Math.max(1, k - 1))) proc.signal('SIGTERM', 'graceful stop');
        }
        await episode.settle([proc]);
        killed = proc.killed && proc.hitsOf(phase) >= 1;
        break;
      }
      case 'takeback.afterMarkDead': {
        const first = episode.spawn({ rules: { 'commit.afterCommit': `kill@${k}` }, label: 'dies' });
        await episode.settle([first]);
        const second = episode.spawn({ rules: { [phase]: 'kill@1' }, label: 'reaper' });
        await episode.settle([second]);
        killed = second.killed && second.hitsOf(phase) >= 1;
        break;
      }
      case 'spawn.midChunk': {
        const alarm = episode.spawn({ label: 'alarm' });
        await episode.settle([alarm]);
        if (alarm.exit?.code !== 4) episode.problems.push(`the fan-out did not pause the run (exit ${alarm.exit?.code}): ${tail(alarm.exit?.stderr ?? '')}`);
        await episode.settle([episode.command(['approve', episode.runId, '--all'])]);
        const proc = episode.spawn({ rules: { [phase]: `kill@${k}` } });
        await episode.settle([proc]);
        killed = proc.killed && proc.hitsOf(phase) >= k;
        break;
      }
      case 'snapshot.begin':
      case 'snapshot.end': {
        const proc = episode.spawn();
        if (await proc.waitFor('commit.afterCommit', k)) {
          const file = join(env.dir, 'snapshot.db');
          const snap = episode.command(['snapshot', episode.runId, file], { rules: { [phase]: 'kill@1' }, label: 'snapshot' });
          await episode.settle([snap]);
          killed = snap.killed && snap.hitsOf(phase) >= 1;
        }
        await episode.settle([proc]);
        break;
      }
      case 'wal.beforeCheckpoint':
      case 'wal.afterCheckpoint': {
        // The worker holds still from its first claim until the checkpointer runs, so the two overlap.
        const proc = episode.spawn();
        if (await proc.waitFor('claim.beforeUpdate', 1)) proc.signal('SIGSTOP', 'until the checkpointer runs');
        const checkpointer = episode.command([backend.dbPath as string], {
          script: CHECKPOINTER,
          rules: { [phase]: `kill@${k}` },
          beacons: ['wal.beforeCheckpoint', 'wal.afterCheckpoint'],
          label: 'checkpointer',
        });
        await checkpointer.waitFor('wal.beforeCheckpoint', 1);
        proc.signal('SIGCONT', 'the checkpointer runs');
        await proc.exited;
        killed = checkpointer.killed && checkpointer.hitsOf(phase) >= k;
        checkpointer.signal('SIGTERM', 'workers are done');
        await episode.settle([proc, checkpointer]);
        break;
      }
      default: {
        const proc = episode.spawn({ rules: { [phase]: `kill@${k}` } });
        await episode.settle([proc]);
        killed = proc.killed && proc.hitsOf(phase) >= k;
      }
    }
    r.sweep.episodes++;
    const byPhase = (r.sweep.byPhase[phase] ??= Array(SWEEP_OCCURRENCES).fill(0));
    if (killed) {
      r.sweep.killed++;
      byPhase[k - 1] = (byPhase[k - 1] ?? 0) + 1;
    } else {
      r.sweep.unreached++;
      episode.log.note(`occurrence ${k} of ${phase} was not reached`);
    }
    await episode.checkCommitSeq();
    await episode.complete();
    const result = await episode.verify({ rerun: false });
    failed = result.problems.length > 0;
    return result.problems;
  } finally {
    await episode.close(failed);
  }
}

export const SWEEP_PHASES: readonly Phase[] = PHASES;
