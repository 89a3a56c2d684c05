import type { RunRecord, RunState } from '../store/store.js';
import { payloadView } from '../engine/json-view.js';
import { UsageError } from '../engine/errors.js';
import { estimatedProgress, formatCount, formatDuration, frontierOf } from '../observe/progress.js';
import { EXIT, type ExitCode, type GlobalFlags, print, requireRun, withStore } from './common.js';

const RUN_STATES: readonly RunState[] = ['running', 'paused', 'completed', 'failed', 'cancelled'];

export interface StatusFlags extends GlobalFlags {
  json?: boolean;
  limit?: number;
  offset?: number;
  state?: string;
}

/** The stable `--json` shape of one run (documented in README). */
/** A cost amount as a person reads it: whole numbers grouped, fractions to 4 places. */
function formatAmount(n: number): string {
  return Number.isInteger(n) ? formatCount(n) : String(Math.round(n * 1e4) / 1e4);
}

export function runJson(run: RunRecord, extra: Record<string, unknown> = {}) {
  const elapsed = ((run.finishedAt ?? Date.now()) - run.createdAt) / 1000;
  const rate = elapsed > 0 ? Math.round(run.counts.done / elapsed) : 0;
  // Only the average is known here (no live readings): the ETA is at that rate, and null once the run ended.
  const progress = estimatedProgress(run, rate);
  return {
    runId: run.id,
    task: run.task,
    taskVersion: run.taskVersion,
    state: run.state,
    pauseReason: run.pauseReason,
    counts: run.counts,
    nodes: run.nodeCount,
    dlq: run.counts.dead,
    rate,
    frontier: frontierOf(run.counts),
    estimate: progress.estimate,
    percent: progress.percent,
    etaSeconds: progress.etaSeconds,
    costBudget: run.costBudget,
    costSpent: run.costSpent,
    lastWorker: run.lastWorker ? { id: run.lastWorker.id, at: new Date(run.lastWorker.at).toISOString() } : null,
    result: run.state === 'completed' ? payloadView(run.result) : null,
    createdAt: new Date(run.createdAt).toISOString(),
    finishedAt: run.finishedAt ? new Date(run.finishedAt).toISOString() : null,
    ...extra,
  };
}

function runState(text: string | undefined): RunState | undefined {
  if (text === undefined) return undefined;
  if (!RUN_STATES.includes(text as RunState)) throw new UsageError(`Expected --state to be one of ${RUN_STATES.join(', ')}; got \`${text}\`.`);
  return text as RunState;
}

/** Every run, newest first, one page at a time: a note on stderr says when more exist and how to see them. */
async function listCommand(flags: StatusFlags): Promise<ExitCode> {
  const state = runState(flags.state);
  const limit = flags.limit ?? 50;
  const offset = flags.offset ?? 0;
  return withStore(flags, async (store) => {
    const [runs, total] = await Promise.all([store.listRuns(limit, { state, offset }), store.countRuns({ state })]);
    const of = state ? `${total} ${state} run(s)` : `${total} run(s)`;
    if (flags.json) print(JSON.stringify(runs.map((run) => runJson(run))));
    else if (total === 0) print(state ? `No ${state} runs.` : 'No runs yet. Start one with `rlm run <module> --input JSON`.');
    else for (const run of runs) print(`${run.id}  ${run.task}  ${run.state.padEnd(9)}  done ${run.counts.done}  dead ${run.counts.dead}  ${new Date(run.createdAt).toISOString()}`);
    const shown = offset + runs.length;
    if (shown < total) {
      const next = [`--offset ${shown}`, limit !== 50 ? `--limit ${limit}` : '', state ? `--state ${state}` : ''].filter(Boolean).join(' ');
      process.stderr.write(`Showing ${runs.length === 0 ? 'none' : `${offset + 1}–${shown}`} of ${of}, newest first; \`rlm status ${next}\` for the next page.\n`);
    } else if (offset > 0 && runs.length === 0) process.stderr.write(`No runs past --offset ${offset}; there are ${of}.\n`);
    return EXIT.ok;
  });
}

export async function statusCommand(runId: string | undefined, flags: StatusFlags): Promise<ExitCode> {
  if (!runId) return listCommand(flags);
  if (flags.limit !== undefined || flags.offset !== undefined || flags.state !== undefined) {
    throw new UsageError('--limit, --offset and --state page the list of runs; drop them to see one run, or drop the run id to list runs.');
  }
  return withStore(flags, async (store) => {
    const run = await requireRun(store, runId);
    const [depths, wake] = await Promise.all([store.depthHistogram(runId), store.nextWake(runId)]);
    const json = runJson(run, { depthHistogram: depths, timers: wake?.nodes ?? 0, nextWake: wake ? new Date(wake.at).toISOString() : null });
    if (flags.json) {
      print(JSON.stringify(json));
      return EXIT.ok;
    }
    print(`run ${run.id} (${run.task} v${run.taskVersion}): ${run.state}${run.pauseReason ? ` — ${run.pauseReason}` : ''}`);
    const c = run.counts;
    print(`  pending ${c.pending}  running ${c.running}  waiting ${c.waiting}  done ${c.done}  dead ${c.dead}  parked ${c.parked}`);
    print(`  ${json.rate} nodes/s on average; dead-letter queue: ${c.dead}`);
    if (json.percent === null || json.estimate === null) {
      print(`  progress: size unknown (the task declares no \`estimate\`); ${formatCount(c.done + c.dead)} finished, frontier ${formatCount(json.frontier)}`);
    } else {
      const eta = json.etaSeconds === null ? '' : `; ETA ${formatDuration(json.etaSeconds)} at the average rate`;
      print(`  progress: ${json.percent.toFixed(1)}% of an estimated ${formatCount(json.estimate)} nodes${eta}`);
    }
    if (run.costBudget !== null || run.costSpent !== 0) print(`  cost: ${formatAmount(run.costSpent)} charged${run.costBudget === null ? ' (no budget)' : ` of a budget of ${formatAmount(run.costBudget)}`}`);
    if (wake) print(`  timers: ${wake.nodes} node(s) wait for their time; the next wakes at ${new Date(wake.at).toISOString()} (in ${formatDuration(Math.max(0, (wake.at - Date.now()) / 1000))})`);
    print(`  depth histogram: ${depths.map((d) => `${d.depth}:${d.count}`).join(' ')}`);
    if (run.state === 'completed') print(`  result: ${JSON.stringify(payloadView(run.result))}`);
    return EXIT.ok;
  });
}
