import type { RunRecord } from '../store/store.js';
import { payloadView } from '../engine/json-view.js';
import { EXIT, type ExitCode, type GlobalFlags, print, requireRun, withStore } from './common.js';

/** The stable `--json` shape of one run (documented in README). */
export function runJson(run: RunRecord, extra: Record<string, unknown> = {}) {
  const elapsed = ((run.finishedAt ?? Date.now()) - run.createdAt) / 1000;
  return {
    runId: run.id,
    task: run.task,
    taskVersion: run.taskVersion,
    state: run.state,
    pauseReason: run.pauseReason,
    counts: run.counts,
    nodes: run.nodeCount,
    dlq: run.counts.dead,
    rate: elapsed > 0 ? Math.round(run.counts.done / elapsed) : 0,
    result: run.state === 'completed' ? payloadView(run.result) : null,
    createdAt: new Date(run.createdAt).toISOString(),
    finishedAt: run.finishedAt ? new Date(run.finishedAt).toISOString() : null,
    ...extra,
  };
}

export async function statusCommand(runId: string | undefined, flags: GlobalFlags & { json?: boolean }): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    if (!runId) {
      const runs = await store.listRuns(50);
      if (flags.json) print(JSON.stringify(runs.map((run) => runJson(run))));
      else if (runs.length === 0) print('No runs yet. Start one with `rlm run <module> --input JSON`.');
      else for (const run of runs) print(`${run.id}  ${run.task}  ${run.state.padEnd(9)}  done ${run.counts.done}  dead ${run.counts.dead}  ${new Date(run.createdAt).toISOString()}`);
      return EXIT.ok;
    }
    const run = await requireRun(store, runId);
    const depths = await store.depthHistogram(runId);
    const json = runJson(run, { depthHistogram: depths });
    if (flags.json) {
      print(JSON.stringify(json));
      return EXIT.ok;
    }
    print(`run ${run.id} (${run.task} v${run.taskVersion}): ${run.state}${run.pauseReason ? ` — ${run.pauseReason}` : ''}`);
    const c = run.counts;
    print(`  pending ${c.pending}  running ${c.running}  waiting ${c.waiting}  done ${c.done}  dead ${c.dead}  parked ${c.parked}`);
    print(`  ${json.rate} nodes/s on average; dead-letter queue: ${c.dead}`);
    print(`  depth histogram: ${depths.map((d) => `${d.depth}:${d.count}`).join(' ')}`);
    if (run.state === 'completed') print(`  result: ${JSON.stringify(payloadView(run.result))}`);
    return EXIT.ok;
  });
}
