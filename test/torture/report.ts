/**
 * The figures of TORTURE.md §8.7, gathered across every episode of a torture run and written to
 * torture-report.json. Every count is of something that happened, never of something planned.
 */
import { PHASES } from './harness.js';
import { hexSeed } from './random.js';

export interface Failure {
  episode: number;
  kind: string;
  seed: string;
  replay: string;
  kept: string | null;
  problems: string[];
}

export function emptyReport(baseSeed: number, tier: string) {
  return {
    tier,
    seeds: { base: hexSeed(baseSeed), failing: [] as string[] },
    wallSeconds: 0,
    episodes: { total: 0, sqlite: 0, postgres: 0, byKind: {} as Record<string, number> },
    kills: {
      sigkill: 0,
      sqlite: 0,
      postgres: 0,
      random: 0,
      failpoint: 0,
      poisonSelf: 0,
      midCommit: 0,
      effectWindow: 0,
      duringRecovery: 0,
      allAtOnce: 0,
    },
    zombies: { sigstop: 0, eventLoopBlocks: 0, inTransactionStops: 0, commitsAttempted: 0, opsRejected: 0, applied: 0 },
    postgres: { terminateBackend: 0, inCommit: 0, proxyAckDrops: 0, immediateRestarts: 0, backendKill9: 0, available: false },
    storage: {
      storeErrorInjections: 0,
      storeErrorInjectionsInProcess: 0,
      walTruncations: 0,
      walDeletions: 0,
      corruptFixed: 0,
      corruptFuzzed: 0,
      corruptRefused: 0,
      corruptRanCorrectly: 0,
      corruptSilentlyWrong: 0,
      /** Ran to an end, leaving damage in values the run never read: refused on every read, named by rlm doctor. */
      corruptDetectedAfter: 0,
      snapshotsChecked: 0,
      diskFull: 0,
    },
    gracefulStops: 0,
    falseBlames: 0,
    nodesProcessed: 0,
    effects: { calls: 0, applications: 0, reinvocations: 0, duplicates: 0 },
    badInputs: { total: 0, modules: 0, inputs: 0, results: 0, children: 0, cli: 0, storeFiles: 0, fuzz: 0 },
    model: { sqliteRuns: 0, postgresRuns: 0, commands: 0, fencedChecked: 0 },
    sweep: { episodes: 0, killed: 0, unreached: 0, byPhase: {} as Record<string, number[]> },
    phases: {
      hits: Object.fromEntries(PHASES.map((p) => [p, 0])) as Record<string, number>,
      kills: Object.fromEntries(PHASES.map((p) => [p, 0])) as Record<string, number>,
    },
    invariants: { violations: 0, dataLost: 0, duplicatedCompletions: 0, zombieCommitsApplied: 0, checked: 0 },
    notes: [] as string[],
    failures: [] as Failure[],
  };
}

export type Report = ReturnType<typeof emptyReport>;

/** The §8.7 summary, a few lines for people. */
export function summarize(r: Report): string {
  const k = r.kills;
  const z = r.zombies;
  const p = r.postgres;
  const s = r.storage;
  const b = r.badInputs;
  const n = (x: number) => x.toLocaleString('en-US');
  return [
    `episodes: ${n(r.episodes.total)} (sqlite ${n(r.episodes.sqlite)}, postgres ${n(r.episodes.postgres)}), seeds: base=${r.seeds.base}, failing seeds: ${r.seeds.failing.length}${r.seeds.failing.length ? ` (${r.seeds.failing.join(', ')})` : ''}`,
    `kills: ${n(k.sigkill)} SIGKILL (sqlite ${n(k.sqlite)}, postgres ${n(k.postgres)}; random ${n(k.random)}, failpoint ${n(k.failpoint)}, poison ${n(k.poisonSelf)}; mid-commit ${n(k.midCommit)}, effect-window ${n(k.effectWindow)}, during-recovery ${n(k.duringRecovery)}, all-at-once ${n(k.allAtOnce)})`,
    `zombies: ${n(z.sigstop)} SIGSTOP (${n(z.inTransactionStops)} inside a write txn) + ${n(z.eventLoopBlocks)} event-loop blocks -> zombie commits attempted ${n(z.commitsAttempted)} (${n(z.opsRejected)} ops fenced), applied ${n(z.applied)}`,
    `postgres: ${p.available ? '' : '(store not functional: skipped) '}pg_terminate_backend ${n(p.terminateBackend)} (in COMMIT ${n(p.inCommit)}), proxy ack-drops ${n(p.proxyAckDrops)}, immediate restarts ${n(p.immediateRestarts)}, backend kill -9 ${n(p.backendKill9)}`,
    `storage: store-error sweep ${n(s.storeErrorInjections)} injected errors in workers + ${n(s.storeErrorInjectionsInProcess)} in-process, WAL-tail truncations ${n(s.walTruncations)}, WAL deletions ${n(s.walDeletions)}, corrupt-store cases ${n(s.corruptFixed)} fixed + ${n(s.corruptFuzzed)} fuzzed (refused ${n(s.corruptRefused)}, ran correctly ${n(s.corruptRanCorrectly)}, damage left in unread values and detected ${n(s.corruptDetectedAfter)}, silently wrong ${n(s.corruptSilentlyWrong)}), snapshots checked ${n(s.snapshotsChecked)}`,
    `graceful stops ${n(r.gracefulStops)}; false crash blames (a healthy node running alone when the harness killed its process, charged an attempt) ${n(r.falseBlames)}`,
    `nodes processed ${n(r.nodesProcessed)}; effect calls ${n(r.effects.calls)}, applications ${n(r.effects.applications)} (re-invocations ${n(r.effects.reinvocations)}), duplicates ${n(r.effects.duplicates)}`,
    `bad inputs tried: ${n(b.total)} (modules ${n(b.modules)}, inputs ${n(b.inputs)}, results ${n(b.results)}, children ${n(b.children)}, CLI ${n(b.cli)}, store files ${n(b.storeFiles)}, fuzz ${n(b.fuzz)})`,
    `model runs: sqlite ${n(r.model.sqliteRuns)}, postgres ${n(r.model.postgresRuns)} (${n(r.model.commands)} commands, ${n(r.model.fencedChecked)} fenced writes checked)`,
    `crash-point sweep: ${n(r.sweep.episodes)} episodes, ${n(r.sweep.killed)} killed at their failpoint, ${n(r.sweep.unreached)} occurrences not reached`,
    `phases never hit: ${PHASES.filter((ph) => !r.phases.hits[ph]).join(', ') || 'none'}; never killed at: ${PHASES.filter((ph) => !r.phases.kills[ph]).join(', ') || 'none'}`,
    `invariant violations: ${n(r.invariants.violations)}   data lost: ${n(r.invariants.dataLost)}   duplicated completions: ${n(r.invariants.duplicatedCompletions)}   zombie commits applied: ${n(r.invariants.zombieCommitsApplied)}`,
    `wall time: ${r.wallSeconds.toFixed(1)} s`,
  ].join('\n');
}
