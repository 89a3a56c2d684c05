import { ConfigError } from '../engine/errors.js';
import { EXIT, type ExitCode, type GlobalFlags, print, requireRun, withStore } from './common.js';

interface Snapshottable {
  snapshot(destination: string): Promise<void>;
}

function canSnapshot(store: object): store is Snapshottable {
  return typeof (store as Partial<Snapshottable>).snapshot === 'function';
}

/** A consistent full copy of the store, written while runs go on. */
export async function snapshotCommand(runId: string, file: string, flags: GlobalFlags): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    await requireRun(store, runId);
    if (!canSnapshot(store)) throw new ConfigError(`${store.description} takes its full checkpoints with its own tools (pg_dump, base backups); \`rlm snapshot\` is for SQLite stores.`);
    const started = performance.now();
    await store.snapshot(file);
    print(`Snapshot of ${store.description} written to ${file} in ${Math.round(performance.now() - started)} ms; resume from it with --store sqlite:${file} --run ${runId}.`);
    return EXIT.ok;
  });
}

/**
 * Checks the whole store: on SQLite the file itself, and on both stores every constraint, every stored value
 * against its checksum and every counter against a recount (PostgreSQL also its tables, indexes and leases).
 */
export async function doctorCommand(flags: GlobalFlags): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    if (!store.doctor) {
      print(`${store.description}: reachable, schema up to date.`);
      return EXIT.ok;
    }
    const report = await store.doctor();
    const checked = Object.entries(report.checked)
      .map(([what, n]) => `${n.toLocaleString('en-US')} ${what}`)
      .join(', ');
    for (const note of report.notes ?? []) print(`${store.description}: note: ${note}`);
    if (report.problems.length === 0) {
      print(`${store.description}: integrity ok (checked ${checked}).`);
      return EXIT.ok;
    }
    print(
      `${store.description}: ${report.problems.length} problem(s) (checked ${checked}):\n${report.problems.join('\n')}\n` +
        'Restore the store from an `rlm snapshot` copy (SQLite) or a backup (PostgreSQL); rlm refuses the damaged values and runs.',
    );
    return EXIT.failure;
  });
}

/** Prunes finished subtrees of a run (see Store.compact). */
export async function compactCommand(runId: string, flags: GlobalFlags): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    await requireRun(store, runId);
    if (!store.compact) throw new ConfigError(`${store.description} does not support compaction.`);
    const { deleted, pruned } = await store.compact(runId);
    print(`Run ${runId}: ${deleted} finished node(s) deleted, ${pruned} keyed node(s) pruned to key and result.`);
    return EXIT.ok;
  });
}
