import { type ChildProcess, spawn } from 'node:child_process';
import type { Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { openEngine, type RunHandle, type RunOutcome } from '../engine/engine.js';
import { UsageError } from '../engine/errors.js';
import type { EngineOptions } from '../engine/options.js';
import { createLogger, type Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import type { OtlpExport } from '../observe/otlp.js';
import { failpoints } from '../failpoints.js';
import { isPersonPause, type RunRecord, type Store } from '../store/store.js';
import { payloadView } from '../engine/json-view.js';
import { EXIT, type ExitCode, type GlobalFlags, openWorkStore, parseJson, print, storeUrl } from './common.js';
import { loadTask } from './load-task.js';
import { ProgressBar } from './progress.js';
import { resumeNote } from './resume-note.js';

export interface RunFlags extends GlobalFlags {
  input?: string;
  context?: string;
  run?: string;
  concurrency?: number;
  workers?: number;
  budget?: number;
  budgetCost?: number;
  restart?: boolean;
  force?: boolean;
  maxRss?: number;
  metricsPort?: number;
  commitEvery?: number;
  commitMs?: number;
  leaseMs?: number;
  heartbeatMs?: number;
  graceMs?: number;
  compactEvery?: number;
  otlp?: string;
}

export function engineOptions(flags: RunFlags): EngineOptions {
  return {
    concurrency: flags.concurrency,
    commitEverySteps: flags.commitEvery,
    commitEveryMs: flags.commitMs,
    leaseMs: flags.leaseMs,
    heartbeatMs: flags.heartbeatMs,
    graceMs: flags.graceMs,
    maxRssBytes: flags.maxRss === undefined ? undefined : flags.maxRss * 1024 * 1024,
    compactEveryCommits: flags.compactEvery,
  };
}

/** Exit code for how a run ended (SPEC): 0 completed, 3 dead-lettered nodes, 4 paused, 5 cancelled, 130/143/75 stopped. */
export function exitCodeFor(outcome: Pick<RunOutcome, 'state' | 'counts' | 'stoppedBy'>, signal: NodeJS.Signals | null): ExitCode {
  if (outcome.stoppedBy === 'rss') return EXIT.rss;
  if (outcome.stoppedBy === 'signal' && outcome.state === 'running') return signal === 'SIGINT' ? EXIT.sigint : EXIT.sigterm;
  if (outcome.state === 'paused') return EXIT.paused;
  if (outcome.state === 'cancelled') return EXIT.cancelled;
  if (outcome.counts.dead > 0 || outcome.state === 'failed') return EXIT.dead;
  if (outcome.state === 'completed') return EXIT.ok;
  return signal === 'SIGINT' ? EXIT.sigint : signal ? EXIT.sigterm : EXIT.failure;
}

function report(run: RunRecord, outcome: { state: string }): void {
  const c = run.counts;
  const summary = `run ${run.id}: ${outcome.state}; ${c.done} done, ${c.dead} dead, ${c.parked} parked, ${c.pending + c.running + c.waiting} unfinished`;
  process.stderr.write(`${summary}${run.pauseReason ? ` (paused: ${run.pauseReason})` : ''}\n`);
  if (c.dead > 0) process.stderr.write(`  ${c.dead} node(s) in the dead-letter queue: \`rlm dlq list ${run.id}\`, then \`rlm dlq retry ${run.id} --all\` once fixed.\n`);
  if (run.state === 'cancelled') {
    process.stderr.write(`  \`rlm run <module> --run ${run.id} --restart\` starts it again from its root input; \`rlm rm ${run.id}\` deletes it.\n`);
  } else if (run.state === 'paused' && isPersonPause(run.pauseReason)) {
    process.stderr.write(`  \`rlm resume ${run.id}\` lifts the pause; then \`rlm run <module> --run ${run.id}\` (or any worker) goes on.\n`);
  } else if (run.state === 'paused') {
    process.stderr.write(
      `  Decide with \`rlm approve ${run.id} --all\` or \`rlm reject ${run.id} --all\` (raise a budget first: \`rlm budget ${run.id} N\` for nodes, \`--cost C\` for cost; a node waiting for a signal wakes with \`rlm signal ${run.id} NAME JSON\`), then resume with \`rlm run <module> --run ${run.id}\`.\n`,
    );
  }
}

/**
 * Metrics cost a little on every step: they are collected only when `--metrics-port` serves them, or when a
 * supervisor serving them asks this worker process for its own (RLM_METRICS_IPC).
 */
async function serveMetrics(port: number | undefined): Promise<{ metrics?: Metrics; server?: Server }> {
  if (port === undefined) {
    if (process.env.RLM_SUPERVISED !== '1' || process.env.RLM_METRICS_IPC !== '1') return {};
    const observe = await import('../observe/metrics.js');
    const metrics = new observe.Metrics();
    observe.answerMetricsRequests(metrics);
    return { metrics };
  }
  const metrics = new (await import('../observe/metrics.js')).Metrics();
  return { metrics, server: await metrics.serve(port) };
}

/** `--otlp URL`: spans exported over OTLP/HTTP; the SDK packages are loaded only then. */
async function startTracing(flags: RunFlags, logger: Logger, task: string): Promise<OtlpExport | undefined> {
  if (flags.otlp === undefined) return undefined;
  return (await import('../observe/otlp.js')).startOtlp(flags.otlp, logger, task);
}

/** The run gauges of one run, read from the store when scraped. */
function watchRun(metrics: Metrics | undefined, store: Store, runId: () => string | undefined): void {
  metrics?.watchRuns(async () => {
    const id = runId();
    const run = id === undefined ? undefined : await store.getRun(id);
    return run ? [run] : [];
  });
}

export async function runCommand(modulePath: string, flags: RunFlags): Promise<ExitCode> {
  if (flags.workers !== undefined && (!Number.isInteger(flags.workers) || flags.workers < 0)) throw new UsageError(`Expected --workers to be an integer >= 0, got ${flags.workers}.`);
  const task = await loadTask(modulePath);
  const input = flags.input === undefined ? undefined : parseJson(flags.input, '--input');
  const context = flags.context === undefined ? undefined : parseJson(flags.context, '--context');
  const supervised = process.env.RLM_SUPERVISED === '1';
  const logger = createLogger();
  survivePromisesLeftBehind(logger);
  const supervisor = flags.workers !== undefined && flags.workers > 0 && !supervised;
  // A supervisor runs no step: its workers export the spans.
  const tracing = supervisor ? undefined : await startTracing(flags, logger, task.name);
  const { metrics, server } = await serveMetrics(flags.metricsPort);
  const store = await openWorkStore(flags, task);
  const engine = await openEngine({ store, ...engineOptions(flags), logger, metrics }).catch(async (error: unknown) => {
    await store.close().catch(() => undefined);
    throw error;
  });
  let handle: RunHandle | undefined;
  let signal: NodeJS.Signals | null = null;
  watchRun(metrics, engine.store, () => handle?.runId ?? flags.run);
  let signalCount = 0;
  const onSignal = (received: NodeJS.Signals) => {
    signalCount++;
    if (signal) {
      process.stderr.write(`\nSecond ${received}: stopping now.\n`);
      handle?.abort();
      setTimeout(() => process.exit(received === 'SIGINT' ? EXIT.sigint : EXIT.sigterm), 2_000).unref();
      return;
    }
    signal = received;
    if (!supervised) process.stderr.write(`\n${received}: finishing in-flight steps, then stopping (send it again to stop now).\n`);
    handle?.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A step that calls process.exit() ends the process mid-run: never report that as success.
  let ended = false;
  const onExit = (code: number) => {
    if (ended || code !== 0) return;
    process.stderr.write('rlm: the process exited while the run was in progress (a step called process.exit?); resuming treats it as a crash.\n');
    process.exitCode = EXIT.failure;
  };
  process.on('exit', onExit);
  try {
    if (flags.restart && !flags.run) throw new UsageError('--restart needs --run ID: it starts that run again from its root input.');
    let existing = flags.run ? await engine.store.getRun(flags.run) : undefined;
    if (existing) {
      if (input !== undefined && JSON.stringify(input) !== JSON.stringify(payloadView(existing.input))) {
        throw new UsageError(`Run ${existing.id} exists with another input; drop --input to resume it, or choose a new --run id.`);
      }
      if (flags.restart) {
        existing = await engine.store.restartRun(existing.id, { force: flags.force });
        if (!supervised) process.stderr.write(`run ${existing.id} restarted from its root input\n`);
      }
      // --budget on a resumed run sets its node budget; parked nodes wait for `rlm approve` as before.
      if (flags.budget !== undefined && !supervised) await engine.store.setNodeBudget(existing.id, flags.budget);
      if (flags.budgetCost !== undefined && !supervised) await engine.store.setCostBudget(existing.id, flags.budgetCost);
    } else if (flags.restart) {
      throw new UsageError(`No run ${flags.run} in the store to restart; drop --restart (and pass --input) to start it.`);
    } else if (input === undefined) {
      throw new UsageError(flags.run ? `No run ${flags.run} in the store; pass --input to start it.` : 'Pass --input JSON to start a run, or --run ID to resume one.');
    }
    if (supervisor) {
      if (existing && !flags.restart) process.stderr.write(await resumeNote(existing, engine.store));
      const runId = existing?.id ?? (await engine.create(task, input, { runId: flags.run, context: context as never, nodeBudget: flags.budget, costBudget: flags.budgetCost }));
      return await supervise(modulePath, runId, flags, engine.store, () => signal, () => signalCount, metrics);
    }
    handle = existing ? await engine.resume(task, existing.id) : await engine.start(task, input, { runId: flags.run, context: context as never, nodeBudget: flags.budget, costBudget: flags.budgetCost });
    // The run's check goes on beside the run: a store found damaged ends it with that error, after this note.
    if (existing && !supervised && !flags.restart) process.stderr.write(await resumeNote(existing, engine.store));
    if (!supervised && !existing) process.stderr.write(`run ${handle.runId} started (resume it with --run ${handle.runId})\n`);
    if (signal) handle.stop();
    const bar = !supervised && ProgressBar.enabled() ? new ProgressBar({ baseline: finishedOf(existing) }) : undefined;
    if (bar) void engine.store.getRun(handle.runId).then((run) => run && bar.update(run));
    const timer = bar
      ? setInterval(() => {
          void engine.store.getRun(handle?.runId ?? '').then((run) => run && bar.update(run));
        }, 200)
      : undefined;
    let outcome: RunOutcome;
    try {
      outcome = await handle.done;
    } finally {
      if (timer) clearInterval(timer);
    }
    const run = await engine.getRun(handle.runId);
    if (bar) {
      bar.update(run);
      bar.done();
    }
    if (!supervised) {
      if (outcome.state === 'completed') print(JSON.stringify(payloadView(run.result)));
      report(run, outcome);
    }
    return exitCodeFor(outcome, signal);
  } finally {
    ended = true;
    process.off('exit', onExit);
    // A second signal during the close must find the handler, or it would kill the process with no exit code.
    await engine.close();
    await store.close();
    await tracing?.shutdown();
    server?.close();
    endSignalHandling(onSignal);
  }
}

/** Nodes a run had finished before this process began: its progress line's rates count only what comes after. */
function finishedOf(run: RunRecord | undefined): number {
  return run ? run.counts.done + run.counts.dead : 0;
}

/**
 * A handler may leave a promise running after its step returned; if it rejects with nobody listening, Node would
 * end the process and every step in flight with it, over and over on each resume. The step's own outcome was
 * already decided, so the worker logs it and goes on.
 */
function survivePromisesLeftBehind(logger: Logger): void {
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: reason }, 'A promise was rejected and nothing handled it (a step left work running in the background); going on.');
  });
}

/**
 * Once the store is closed nothing is left to finish, but the process may take a moment to exit: a signal then
 * must not kill it with no exit code. It ends the process at once with the code the command decided.
 */
function endSignalHandling(onSignal: (received: NodeJS.Signals) => void): void {
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  const late = () => process.exit();
  process.once('SIGINT', late);
  process.once('SIGTERM', late);
  if (failpoints.active) failpoints.hit('cli.closed');
}

/** `--workers N`: N worker processes on one run; any that dies is restarted until the run ends. */
async function supervise(
  modulePath: string,
  runId: string,
  flags: RunFlags,
  store: Store,
  stopSignal: () => NodeJS.Signals | null,
  signals: () => number,
  metrics: Metrics | undefined,
): Promise<ExitCode> {
  const bin = fileURLToPath(new URL('../../bin/rlm.mjs', import.meta.url));
  const args = (): string[] => {
    const list = ['run', modulePath, '--run', runId, '--store', storeUrl(flags)];
    // Every engine flag reaches the workers. The metrics port stays here: the supervisor serves the run's gauges
    // and the sum of its workers' counters and histograms, which it asks them for at each scrape.
    const pass: Array<[string, number | undefined]> = [
      ['--concurrency', flags.concurrency],
      ['--commit-every', flags.commitEvery],
      ['--commit-ms', flags.commitMs],
      ['--lease-ms', flags.leaseMs],
      ['--heartbeat-ms', flags.heartbeatMs],
      ['--grace-ms', flags.graceMs],
      ['--max-rss', flags.maxRss],
      ['--compact-every', flags.compactEvery],
    ];
    for (const [flag, value] of pass) if (value !== undefined) list.push(flag, String(value));
    if (flags.otlp !== undefined) list.push('--otlp', flags.otlp);
    return list;
  };
  const children = new Set<ChildProcess>();
  const signalled = new Map<ChildProcess, number>();
  watchRun(metrics, store, () => runId);
  metrics?.aggregate(async () => (await import('../observe/metrics.js')).requestMetrics(children));
  const env = { ...process.env, RLM_SUPERVISED: '1', ...(metrics ? { RLM_METRICS_IPC: '1' } : {}) };
  let restarts = 0;
  let ended = false;
  const start = (): void => {
    const child = spawn(process.execPath, [bin, ...args()], { stdio: ['ignore', 'ignore', 'inherit', ...(metrics ? ['ipc' as const] : [])], env });
    children.add(child);
    child.on('exit', (code, signal) => {
      children.delete(child);
      if (ended || stopSignal()) return;
      if (code === EXIT.ok || code === EXIT.dead || code === EXIT.paused || code === EXIT.cancelled) return;
      restarts++;
      process.stderr.write(`\nworker ${child.pid} exited (${signal ?? code}); restarting it\n`);
      start();
    });
  };
  for (let i = 0; i < (flags.workers ?? 1); i++) start();
  let run = await store.getRun(runId);
  const bar = ProgressBar.enabled() ? new ProgressBar({ baseline: finishedOf(run) }) : undefined;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    run = await store.getRun(runId);
    if (run && bar) bar.update(run);
    const signal = stopSignal();
    // Each worker gets each signal the supervisor got once: a first one stops it gracefully, a second at once.
    if (signal) {
      for (const child of children) {
        const sent = signalled.get(child) ?? 0;
        if (sent >= signals()) continue;
        signalled.set(child, sent + 1);
        child.kill(signal);
      }
    }
    if (run?.state !== 'running' || (signal && children.size === 0)) break;
    if (children.size === 0) start();
  }
  ended = true;
  await Promise.all([...children].map((child) => new Promise((resolve) => child.once('exit', resolve))));
  run = await store.getRun(runId);
  if (run && bar) bar.update(run);
  bar?.done();
  if (!run) return EXIT.failure;
  if (run.state === 'completed') print(JSON.stringify(payloadView(run.result)));
  if (restarts > 0) process.stderr.write(`${restarts} worker restart(s)\n`);
  report(run, run);
  return exitCodeFor({ state: run.state, counts: run.counts, stoppedBy: stopSignal() ? 'signal' : 'finished' }, stopSignal());
}

export async function workerCommand(modulePath: string, flags: RunFlags): Promise<ExitCode> {
  const task = await loadTask(modulePath);
  const logger = createLogger();
  survivePromisesLeftBehind(logger);
  const tracing = await startTracing(flags, logger, task.name);
  const { metrics, server } = await serveMetrics(flags.metricsPort);
  const store = await openWorkStore(flags, task);
  const engine = await openEngine({ store, ...engineOptions(flags), logger, metrics }).catch(async (error: unknown) => {
    await store.close().catch(() => undefined);
    throw error;
  });
  const worker = engine.work(task);
  metrics?.watchRuns(async () => {
    const live = await Promise.all([store.listRuns(1_000, { state: 'running' }), store.listRuns(1_000, { state: 'paused' })]);
    return live.flat().filter((run) => run.task === task.name);
  });
  let signal: NodeJS.Signals | null = null;
  const onSignal = (received: NodeJS.Signals) => {
    if (signal) {
      worker.abort();
      setTimeout(() => process.exit(received === 'SIGINT' ? EXIT.sigint : EXIT.sigterm), 2_000).unref();
      return;
    }
    signal = received;
    worker.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  logger.info({ task: task.name, store: store.description }, 'Worker joined; waiting for work.');
  try {
    await worker.done;
  } finally {
    await engine.close();
    await store.close();
    await tracing?.shutdown();
    server?.close();
    endSignalHandling(onSignal);
  }
  return signal === 'SIGINT' ? EXIT.sigint : signal === 'SIGTERM' ? EXIT.sigterm : EXIT.ok;
}
