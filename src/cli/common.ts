import { openStore, redactUrl } from '../store/open.js';
import type { Store } from '../store/store.js';
import { NotFoundError, UsageError } from '../engine/errors.js';

/** Exit codes of the rlm command (SPEC). */
export const EXIT = { ok: 0, failure: 1, usage: 2, dead: 3, paused: 4, cancelled: 5, rss: 75, sigint: 130, sigterm: 143 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export interface GlobalFlags {
  store?: string;
}

export function storeUrl(flags: GlobalFlags): string {
  return flags.store ?? process.env.RLM_STORE ?? 'sqlite:.rlm/rlm.db';
}

/**
 * Opens the store a worker process works on. SQLite goes on a thread of its own (see SqliteThreadStore) for
 * a task without keys, whose steps run while their group commits. A keyed task stays on the main thread: it ran
 * about 15% slower on the thread while its children waited for commits, and since they run speculatively an A/B
 * showed no clear difference (see README's Architecture). RLM_SQLITE_THREAD=0 or 1 decides instead.
 */
export function openWorkStore(flags: GlobalFlags, task: { key?: unknown }): Promise<Store> {
  const setting = process.env.RLM_SQLITE_THREAD;
  return openStore(storeUrl(flags), { thread: setting === '0' ? false : setting === '1' ? true : task.key === undefined });
}

/** Opens the store of an existing deployment: a missing SQLite file is an error, not a new store. */
export async function openExisting(flags: GlobalFlags): Promise<Store> {
  const store = await openStore(storeUrl(flags), { mustExist: true });
  await store.migrate();
  return store;
}

export async function withStore<T>(flags: GlobalFlags, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openExisting(flags);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

export async function requireRun(store: Store, runId: string) {
  const run = await store.getRun(runId);
  if (!run) throw new NotFoundError(`No run ${runId} in ${redactUrl(store.description)}; \`rlm status\` lists the runs.`);
  return run;
}

export function parseNodeId(text: string): number {
  const id = Number(text);
  if (!Number.isInteger(id) || id < 1) throw new NotFoundError(`\`${text}\` is not a node id; node ids are positive integers (see \`rlm inspect\` or \`rlm dlq list\`).`);
  return id;
}

export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${what} is not valid JSON: ${(error as Error).message}`);
  }
}

export function print(line: string): void {
  process.stdout.write(`${line}\n`);
}
