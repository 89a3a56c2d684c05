/** rlm rows: the whole `rlm run` command, spawned and timed from spawn to exit, and the resume latency. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { killGroup, lastWords, measure, RLM_BIN } from './proc.mjs';
import { treeSize } from './tree.mjs';

const SUMMARY = /: completed; (\d+) done, (\d+) dead/;

/**
 * Checks what `rlm run` printed: exit 0, the summary's done count equal to the tree size, and (for tasks that
 * combine) the root result on stdout equal to it too. Returns null when all holds, else what went wrong.
 */
export function checkRun(result, expected, { expectResult, printed: want = String(expected) }) {
  if (result.timedOut) return `timed out after ${result.seconds.toFixed(0)} s`;
  if (result.code !== 0) return `exit ${result.code ?? result.signal}: ${lastWords(result)}`;
  const summary = SUMMARY.exec(result.stderr);
  if (!summary) return `no completion summary on stderr: ${lastWords(result)}`;
  if (Number(summary[1]) !== expected) return `${summary[1]} nodes done, expected ${expected}`;
  const printed = result.stdout.trim().split('\n').at(-1);
  if (expectResult && printed !== want) return `printed result ${printed}, expected ${want}`;
  return null;
}

function tempStore() {
  const dir = mkdtempSync(join(tmpdir(), 'rlm-bench-'));
  return { dir, file: join(dir, 'rlm.db') };
}

/**
 * One `rlm run` row. `store` defaults to a fresh SQLite file; `workers` > 1 runs `rlm run --workers N`.
 * `onFailure` decides the status of a row whose run did not check out ('failed' fails the bench).
 */
export async function rlmRow({
  section,
  workload,
  system,
  task,
  fanout,
  depth,
  input = { fanout, depth },
  nodes = treeSize(fanout, depth),
  result: printed = String(nodes),
  floor,
  expectResult,
  store,
  workers = 1,
  env = {},
  timeoutMs,
  onFailure = 'failed',
  note = '',
}) {
  const temp = store ? null : tempStore();
  const storeUrl = store ?? `sqlite:${temp.file}`;
  const args = [RLM_BIN, 'run', task, '--input', JSON.stringify(input), '--store', storeUrl];
  if (workers > 1) args.push('--workers', String(workers));
  const expected = nodes;
  try {
    const result = await measure(args, { env, timeoutMs });
    const problem = checkRun(result, expected, { expectResult, printed });
    const processes = result.processes > 1 ? `; RSS summed over ${result.processes} processes (supervisor ${Math.round((result.rssKb ?? 0) / 1024)} MB)` : '';
    if (problem) {
      const status = typeof onFailure === 'function' ? onFailure(result) : onFailure;
      return { section, workload, system, nodes: expected, seconds: null, rssMb: null, floor, status, note: status === 'unavailable' ? `unavailable: ${problem}` : problem };
    }
    const rssKb = result.processes > 1 ? result.rssTotalKb : result.rssKb;
    return {
      section,
      workload,
      system,
      nodes: expected,
      seconds: result.seconds,
      rssMb: rssKb === null ? null : rssKb / 1024,
      floor,
      status: 'ok',
      note: [note, expectResult ? `result ${printed} ok` : `${expected} done ok`].filter(Boolean).join('; ') + processes,
    };
  } finally {
    if (temp) rmSync(temp.dir, { recursive: true, force: true });
  }
}

/** Reads a run's committed done count from its SQLite store, from another process, as a user's status call would. */
class DoneCounter {
  #db = null;
  #query = null;
  constructor(file, runId) {
    this.file = file;
    this.runId = runId;
  }
  /** The run's done count, or null while the store or the run does not exist yet. */
  read() {
    try {
      if (!this.#db) {
        if (!existsSync(this.file)) return null;
        this.#db = new Database(this.file, { readonly: true, fileMustExist: true });
        this.#query = this.#db.prepare('SELECT n_done AS done FROM rlm_runs WHERE id = ?');
      }
      return this.#query.get(this.runId)?.done ?? null;
    } catch {
      // Schema not created yet, or the file is being set up: look again on the next poll.
      this.close();
      return null;
    }
  }
  close() {
    this.#db?.close();
    this.#db = null;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `predicate(done)` holds or `isOver()`; resolves to the time it held (performance.now()) or null. */
async function pollUntil(counter, predicate, isOver, everyMs) {
  while (!isOver()) {
    const done = counter.read();
    if (done !== null && predicate(done)) return performance.now();
    await sleep(everyMs);
  }
  return null;
}

/**
 * Resume latency: start the tree, SIGKILL rlm once about half the nodes are committed (watching the store's done
 * counter), restart it with `--run ID`, and time from that spawn until the store's done counter first grows.
 * The resumed run must then finish with the full tree's result.
 */
export async function resumeRow({ section, task, fanout, depth, timeoutMs }) {
  const { dir, file } = tempStore();
  const runId = 'bench-resume';
  const expected = treeSize(fanout, depth);
  const base = { section, workload: 'resume after SIGKILL at ~50%', system: 'rlm run --run ID (SQLite)', floor: null };
  const counter = new DoneCounter(file, runId);
  try {
    let exited = false;
    let killedAfter = null;
    const first = await measure([RLM_BIN, 'run', task, '--input', JSON.stringify({ fanout, depth }), '--run', runId, '--store', `sqlite:${file}`], {
      timeoutMs,
      onSpawn(child, started) {
        child.once('exit', () => {
          exited = true;
        });
        void pollUntil(counter, (done) => done >= expected / 2, () => exited, 20).then((at) => {
          if (at === null) return;
          killedAfter = (at - started) / 1000;
          killGroup(child.pid, 'SIGKILL');
        });
      },
    });
    if (first.signal !== 'SIGKILL' || killedAfter === null) {
      return { ...base, nodes: expected, seconds: null, rssMb: null, status: 'failed', note: `the first run ended before it could be killed: ${checkRun(first, expected, { expectResult: true }) ?? 'it completed'}` };
    }
    counter.close();
    const doneAtKill = counter.read();
    let firstCommit = null;
    exited = false;
    const resumed = await measure([RLM_BIN, 'run', task, '--run', runId, '--store', `sqlite:${file}`], {
      // The rest of the run takes about as long as its first half did; a resume that hangs fails the row soon.
      timeoutMs: Math.min(timeoutMs, 60_000 + killedAfter * 6_000),
      onSpawn(child, started) {
        child.once('exit', () => {
          exited = true;
        });
        void pollUntil(counter, (done) => done > doneAtKill, () => exited, 2).then((at) => {
          if (at !== null) firstCommit = (at - started) / 1000;
        });
      },
    });
    counter.close();
    const problem = checkRun(resumed, expected, { expectResult: true });
    if (problem) return { ...base, nodes: expected - doneAtKill, seconds: null, rssMb: null, status: 'failed', note: `the resumed run: ${problem}` };
    if (firstCommit === null) return { ...base, nodes: expected - doneAtKill, seconds: null, rssMb: null, status: 'failed', note: 'never saw a new commit' };
    const remaining = expected - doneAtKill;
    return {
      ...base,
      nodes: remaining,
      seconds: firstCommit,
      rssMb: resumed.rssKb === null ? null : resumed.rssKb / 1024,
      status: 'ok',
      noRate: true,
      note:
        `seconds = spawn → first new commit; killed at ${doneAtKill.toLocaleString('en-US')} done (${killedAfter.toFixed(1)} s in); ` +
        `the rest took ${resumed.seconds.toFixed(1)} s (${Math.round(remaining / resumed.seconds).toLocaleString('en-US')} nodes/s); result ${expected} ok`,
    };
  } finally {
    counter.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
