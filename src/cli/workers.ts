import type { WorkerRecord } from '../store/store.js';
import { EXIT, type ExitCode, type GlobalFlags, print, withStore } from './common.js';

export interface WorkersFlags extends GlobalFlags {
  json?: boolean;
  all?: boolean;
}

/** The stable `--json` shape of one worker (documented in README). */
export function workerJson(worker: WorkerRecord, leases: readonly { runId: string; nodes: number }[]) {
  return {
    id: worker.id,
    state: worker.state,
    task: worker.task,
    taskVersion: worker.version,
    host: worker.host,
    pid: worker.pid,
    heartbeatAt: new Date(worker.heartbeatAt).toISOString(),
    leaseUntil: new Date(worker.leaseUntil).toISOString(),
    holds: leases.reduce((sum, lease) => sum + lease.nodes, 0),
    leases: leases.map((lease) => ({ runId: lease.runId, nodes: lease.nodes })),
  };
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10}s`;
}

/** `rlm workers`: the live workers (every one ever registered with --all) and the nodes each holds leased, per run. */
export async function workersCommand(flags: WorkersFlags): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    const [workers, leases] = await Promise.all([store.listWorkers(), store.workerLeases()]);
    const byWorker = new Map<string, { runId: string; nodes: number }[]>();
    for (const lease of leases) {
      const list = byWorker.get(lease.workerId) ?? [];
      list.push({ runId: lease.runId, nodes: lease.nodes });
      byWorker.set(lease.workerId, list);
    }
    const shown = flags.all ? workers : workers.filter((worker) => worker.state === 'alive' || byWorker.has(worker.id));
    const rows = shown.map((worker) => workerJson(worker, byWorker.get(worker.id) ?? []));
    if (flags.json) print(JSON.stringify(rows));
    else if (rows.length === 0) print(workers.length === 0 ? 'No workers have joined this store yet.' : 'No live workers.');
    else {
      const now = Date.now();
      for (const [i, row] of rows.entries()) {
        const worker = shown[i] as WorkerRecord;
        const timing =
          worker.state === 'alive' ? `heartbeat ${seconds(now - worker.heartbeatAt)} ago, lease ${seconds(Math.max(0, worker.leaseUntil - now))} left` : `last heartbeat ${row.heartbeatAt}`;
        const holds = row.leases.length === 0 ? 'holds nothing' : `holds ${row.holds} node(s): ${row.leases.map((l) => `${l.runId} ${l.nodes}`).join(', ')}`;
        print(`${row.id}  ${row.state.padEnd(7)}  ${row.task} v${row.taskVersion}  pid ${row.pid} on ${row.host}  ${timing}  ${holds}`);
      }
    }
    const hidden = workers.length - shown.length;
    if (hidden > 0) process.stderr.write(`${hidden} stopped or dead worker(s) not shown; \`rlm workers --all\` lists them.\n`);
    return EXIT.ok;
  });
}
