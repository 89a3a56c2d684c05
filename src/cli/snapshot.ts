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

interface Checkable {
  integrityCheck(): string[];
}

/** Runs the store's own consistency check. */
export async function doctorCommand(flags: GlobalFlags): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    const check = (store as Partial<Checkable>).integrityCheck;
    if (!check) {
      print(`${store.description}: reachable, schema up to date.`);
      return EXIT.ok;
    }
    const problems = check.call(store).filter((line) => line !== 'ok');
    if (problems.length === 0) {
      print(`${store.description}: integrity ok.`);
      return EXIT.ok;
    }
    print(`${store.description}: ${problems.length} problem(s):\n${problems.slice(0, 20).join('\n')}\nRestore from an \`rlm snapshot\` copy.`);
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
