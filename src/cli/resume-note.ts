import { HOST, isProcessAlive } from '../engine/process-info.js';
import { formatCount, formatDuration } from '../observe/progress.js';
import type { RunRecord, Store, WorkerRecord } from '../store/store.js';

/**
 * What `rlm run --run ID` says before it resumes an existing run: its counts, since when it exists and was last
 * written, and the worker that last joined it, with that worker's state.
 * ```
 * resuming run tree-demo (tree v1, started 2026-12-03 08:40:12 UTC, 6m 02s ago; last written 3m 10s ago)
 *   492,149 done, 57 pending, 0 running, 6 waiting, 0 dead, 0 parked of 492,212 nodes
 *   last worker: host:4242:1a2b3c4d, stopped, last heartbeat 3m 11s ago
 * ```
 */
export async function resumeNote(run: RunRecord, store: Store, now = Date.now()): Promise<string> {
  const c = run.counts;
  const ago = (at: number) => `${formatDuration((now - at) / 1000)} ago`;
  const lines = [
    `resuming run ${run.id} (${run.task} v${run.taskVersion}, ${run.state}, started ${utc(run.createdAt)}, ${ago(run.createdAt)}; last written ${ago(run.updatedAt)})`,
    `  ${formatCount(c.done)} done, ${formatCount(c.pending)} pending, ${formatCount(c.running)} running, ${formatCount(c.waiting)} waiting, ` +
      `${formatCount(c.dead)} dead, ${formatCount(c.parked)} parked of ${formatCount(run.nodeCount)} nodes`,
  ];
  let lastAlive = false;
  if (run.lastWorker) {
    let worker: WorkerRecord | undefined;
    try {
      worker = (await store.listWorkers()).find((w) => w.id === run.lastWorker?.id);
    } catch {
      // The note is a courtesy: a store that cannot list its workers must not stop the resume.
    }
    lastAlive = worker !== undefined && workerState(worker, now) === 'alive';
    const state = worker ? `, ${workerState(worker, now)}, last heartbeat ${ago(worker.heartbeatAt)}` : '';
    lines.push(`  last worker: ${run.lastWorker.id} (joined ${ago(run.lastWorker.at)}${state})`);
  }
  if (c.running > 0 && lastAlive) {
    lines.push(`  ${formatCount(c.running)} node(s) are running, leased by workers still alive: they go on there (a worker that died lets its nodes go when a worker on its host sees it gone, or its lease runs out).`);
  } else if (c.running > 0) {
    lines.push(`  ${formatCount(c.running)} node(s) were left running by a worker that stopped or crashed: they are taken back and run again.`);
  }
  return `${lines.join('\n')}\n`;
}

/** A worker the store still calls alive may be gone: its lease ran out, or (on this host) its process is. */
function workerState(worker: WorkerRecord, now: number): string {
  if (worker.state !== 'alive') return worker.state;
  if (worker.host === HOST && !isProcessAlive(worker.pid, worker.pidStart)) return 'crashed (its process is gone)';
  return worker.leaseUntil < now ? 'gone (its lease ran out)' : 'alive';
}

function utc(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
