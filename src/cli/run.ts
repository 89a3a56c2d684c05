import { type ChildProcess, spawn } from 'node:child_process';
import type { Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { openEngine, type RunHandle, type RunOutcome } from '../engine/engine.js';
import { UsageError } from '../engine/errors.js';
import type { EngineOptions } from '../engine/options.js';
import { createLogger, type Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { failpoints } from '../failpoints.js';
import type { RunRecord, Store } from '../store/store.js';
import { payloadView } from '../engine/json-view.js';
import { EXIT, type ExitCode, type GlobalFlags, openWorkStore, parseJson, print, storeUrl } from './common.js';
import { loadTask } from './load-task.js';
import { ProgressBar } from './progress.js';

export interface RunFlags extends GlobalFlags {
  input?: string;
  context?: string;
  run?: string;
  concurrency?: number;
  workers?: number;
  budget?: number;
  maxRss?: number;
  metricsPort?: number;
  commitEvery?: number;
  commitMs?: number;
  leaseMs?: number;
  heartbeatMs?: number;
  graceMs?: number;
  compactEvery?: number;
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

/** Exit code for how a run ended (SPEC): 0 completed, 3 dead-lettered nodes, 4 paused, 130/143/75 stopped. */
export function exitCodeFor(outcome: Pick<RunOutcome, 'state' | 'counts' | 'stoppedBy'>, signal: NodeJS.Signals | null): ExitCode {
  if (outcome.stoppedBy === 'rss') return EXIT.rss;
  if (outcome.stoppedBy === 'signal' && outcome.state === 'running') return signal === 'SIGINT' ? EXIT.sigint : EXIT.sigterm;
  if (outcome.state === 'paused') return EXIT.paused;
  if (outcome.counts.dead > 0 || outcome.state === 'failed') return EXIT.dead;
  if (outcome.state === 'completed') return EXIT.ok;
  return signal === 'SIGINT' ? EXIT.sigint : signal ? EXIT.sigterm : EXIT.failure;
}

function report(run: RunRecord, outcome: { state: string }): void {
  const c = run.counts;
  const summary = `run ${run.id}: ${outcome.state}; ${c.done} done, ${c.dead} dead, ${c.parked} parked, ${c.pending + c.running + c.waiting} unfinished`;
  process.stderr.write(`${summary}${run.pauseReason ? ` (paused: ${run.pauseReason})` : ''}\n`);
  if (c.dead > 0) process.stderr.write(`  ${c.dead} node(s) in the dead-letter queue: \`rlm dlq list ${run.id}\`, then \`rlm dlq retry ${run.id} --all\` once fixed.\n`);
  if (run.state === 'paused') process.stderr.write(`  Decide with \`rlm approve ${run.id} --all\` or \`rlm reject ${run.id} --all\`, then resume with \`rlm run <module> --run ${run.id}\`.\n`);
}

/** Metrics cost a little on every step: they are collected only when `--metrics-port` serves them. */
async function serveMetrics(port: number | undefined): Promise<{ metrics?: Metrics; server?: Server }> {
  if (port === undefined) return {};
  const metrics = new (await import('../observe/metrics.js')).Metrics();
  return { metrics, server: await metrics.serve(port) };
}

export async function runCommand(modulePath: string, flags: RunFlags): Promise<ExitCode> {
  if (flags.workers !== undefined && (!Number.isInteger(flags.workers) || flags.workers < 0)) throw new UsageError(`Expected --workers to be an integer >= 0, got ${flags.workers}.`);
  const task = await loadTask(modulePath);
  const input = flags.input === undefined ? undefined : parseJson(flags.input, '--input');
  const context = flags.context === undefined ? undefined : parseJson(flags.context, '--context');
  const supervised = process.env.RLM_SUPERVISED === '1';
  const logger = createLogger();
  survivePromisesLeftBehind(logger);
  const { metrics, server } = await serveMetrics(flags.metricsPort);
  const store = await openWorkStore(flags, task);
  const engine = await openEngine({ store, ...engineOptions(flags), logger, metrics }).catch(async (error: unknown) => {
    await store.close().catch(() => undefined);
    throw error;
  });
  let handle: RunHandle | undefined;
  let signal: NodeJS.Signals | null = null;
  const onSignal = (received: NodeJS.Signals) => {
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
    const existing = flags.run ? await engine.store.getRun(flags.run) : undefined;
    if (existing) {
      if (input !== undefined && JSON.stringify(input) !== JSON.stringify(payloadView(existing.input))) {
        throw new UsageError(`Run ${existing.id} exists with another input; drop --input to resume it, or choose a new --run id.`);
      }
    } else if (input === undefined) {
      throw new UsageError(flags.run ? `No run ${flags.run} in the store; pass --input to start it.` : 'Pass --input JSON to start a run, or --run ID to resume one.');
    }
    if (flags.workers !== undefined && flags.workers > 0 && !supervised) {
      const runId = existing?.id ?? (await engine.create(task, input, { runId: flags.run, context: context as never, nodeBudget: flags.budget }));
      return await supervise(modulePath, runId, flags, engine.store, () => signal);
    }
    handle = existing ? await engine.resume(task, existing.id) : await engine.start(task, input, { runId: flags.run, context: context as never, nodeBudget: flags.budget });
    if (!supervised && !existing) process.stderr.write(`run ${handle.runId} started (resume it with --run ${handle.runId})\n`);
    if (signal) handle.stop();
    const bar = !supervised && ProgressBar.enabled() ? new ProgressBar() : undefined;
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
    server?.close();
    endSignalHandling(onSignal);
  }
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
async function supervise(modulePath: string, runId: string, flags: RunFlags, store: Store, stopSignal: () => NodeJS.Signals | null): Promise<ExitCode> {
  const bin = fileURLToPath(new URL('../../bin/rlm.mjs', import.meta.url));
  const args = (): string[] => {
    const list = ['run', modulePath, '--run', runId, '--store', storeUrl(flags)];
    // Every engine flag reaches the workers (a metrics port would collide between them: it stays here).
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
    return list;
  };
  const children = new Set<ChildProcess>();
  let restarts = 0;
  let ended = false;
  const start = (): void => {
    const child = spawn(process.execPath, [bin, ...args()], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RLM_SUPERVISED: '1' } });
    children.add(child);
    child.on('exit', (code, signal) => {
      children.delete(child);
      if (ended || stopSignal()) return;
      if (code === EXIT.ok || code === EXIT.dead || code === EXIT.paused) return;
      restarts++;
      process.stderr.write(`\nworker ${child.pid} exited (${signal ?? code}); restarting it\n`);
      start();
    });
  };
  for (let i = 0; i < (flags.workers ?? 1); i++) start();
  const bar = ProgressBar.enabled() ? new ProgressBar() : undefined;
  let run = await store.getRun(runId);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    run = await store.getRun(runId);
    if (run && bar) bar.update(run);
    const signal = stopSignal();
    if (signal) for (const child of children) child.kill(signal);
    if (run?.state !== 'running' || (signal && children.size === 0)) break;
    if (children.size === 0) start();
  }
  ended = true;
  await Promise.all([...children].map((child) => new Promise((resolve) => child.once('exit', resolve))));
  bar?.done();
  run = await store.getRun(runId);
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
  const { metrics, server } = await serveMetrics(flags.metricsPort);
  const store = await openWorkStore(flags, task);
  const engine = await openEngine({ store, ...engineOptions(flags), logger, metrics }).catch(async (error: unknown) => {
    await store.close().catch(() => undefined);
    throw error;
  });
  const worker = engine.work(task);
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
    server?.close();
    endSignalHandling(onSignal);
  }
  return signal === 'SIGINT' ? EXIT.sigint : signal === 'SIGTERM' ? EXIT.sigterm : EXIT.ok;
}
