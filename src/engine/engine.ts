import { randomUUID } from 'node:crypto';
import type { Json, Task } from '../task.js';
import type { EmitRecord, NodeState, RunRecord, RunState, Store } from '../store/store.js';
import { failpoints } from '../failpoints.js';
import { context, traceparentOf } from '../observe/tracing.js';
import { codecNamed, decode, encodeOptional } from './codec.js';
import { ConfigError, NotFoundError, RlmError } from './errors.js';
import { type EngineOptions, type ResolvedEngineOptions, resolveOptions } from './options.js';
import { openStore } from '../store/open.js';
import { type TaskRuntime, taskRuntime } from './task-runtime.js';
import { Worker } from './worker.js';

export interface OpenEngineOptions extends EngineOptions {
  /** A store, or its URL: `sqlite:<path>` (default `sqlite:.rlm/rlm.db`) or `postgres://…`. */
  store?: Store | string;
}

export interface StartOptions {
  /** Run id; a new UUID when omitted. */
  runId?: string;
  /** Context handed to the root (and inherited by its subtree). */
  context?: Json;
  /** Most nodes the run may create; past it the rest is parked and the run pauses. */
  nodeBudget?: number;
  /**
   * Most cost, in the user's units (tokens, dollars, API calls), the run's steps may reserve (`ctx.reserve`); a
   * reservation past it parks its node and pauses the run.
   */
  costBudget?: number;
}

export interface ResultsOptions {
  /** Wait for more records until the run ends. */
  follow?: boolean;
  /** Start after this record sequence number. */
  afterSeq?: number;
  /** How often a follow looks for new records, in ms. @default 200 */
  pollMs?: number;
  /** Ends the stream at once (between records and while it waits for more). */
  signal?: AbortSignal;
}

/** How a run ended, as far as this process saw it. */
export interface RunOutcome<R = unknown> {
  runId: string;
  state: RunState;
  /** The root's result once the run completed. */
  result: R | undefined;
  counts: Record<NodeState, number>;
  /** Why the run is paused, when it is. */
  pauseReason: string | null;
  /** Why this process stopped working on it. */
  stoppedBy: 'finished' | 'signal' | 'rss' | 'error';
}

/** A run being worked on by this process. */
export interface RunHandle<R = unknown> {
  readonly runId: string;
  /** Resolves when the run ends (completed, failed or paused) or this process stops working on it. */
  readonly done: Promise<RunOutcome<R>>;
  /** Graceful stop: finish in-flight steps, commit, hand the rest back. */
  stop(): void;
  /** Stop now: abort in-flight steps, commit what finished, hand the rest back. */
  abort(): void;
  /** Steps run and commits made by this process so far. */
  stats(): { steps: number; commits: number; fenced: number; startedAt: number };
}

export interface Engine {
  readonly store: Store;
  readonly options: ResolvedEngineOptions;
  /** Creates a run of `task` from `input` without working on it (other workers will). Returns its id. */
  create<I, R>(task: Task<I, R>, input: I, options?: StartOptions): Promise<string>;
  /** Creates a run of `task` from `input` and works on it until it ends. */
  start<I, R>(task: Task<I, R>, input: I, options?: StartOptions): Promise<RunHandle<R>>;
  /** Works on an existing run until it ends. Never re-runs a node that is done. */
  resume<I, R>(task: Task<I, R>, runId: string): Promise<RunHandle<R>>;
  /** Joins as a worker for every run of `task` in the store, until stopped. */
  work<I, R>(task: Task<I, R>): { done: Promise<void>; stop(): void; abort(): void };
  getRun(runId: string): Promise<RunRecord>;
  /** The run's emitted records, in commit order; with `follow`, waits for more until the run ends. */
  results(runId: string, options?: ResultsOptions): AsyncIterable<{ seq: number; nodeId: number; record: unknown }>;
  close(): Promise<void>;
}

/**
 * Opens an engine on a store.
 * ```ts
 * const engine = await openEngine({ store: 'sqlite:.rlm/rlm.db' });
 * const run = await engine.start(tree, { fanout: 10, depth: 3 });
 * console.log((await run.done).result); // 1111
 * await engine.close();
 * ```
 */
export async function openEngine(options: OpenEngineOptions = {}): Promise<Engine> {
  const { store: storeOption, ...rest } = options;
  const resolved = resolveOptions(rest);
  const owned = typeof storeOption !== 'object';
  const store = typeof storeOption === 'object' ? storeOption : await openStore(storeOption ?? 'sqlite:.rlm/rlm.db');
  try {
    await store.migrate();
  } catch (error) {
    if (owned) await store.close().catch(() => undefined);
    throw error;
  }
  return new RlmEngine(store, resolved, owned);
}

class RlmEngine implements Engine {
  readonly store: Store;
  readonly options: ResolvedEngineOptions;
  readonly #owned: boolean;
  readonly #workers = new Map<Worker, Promise<unknown>>();
  #closed = false;

  constructor(store: Store, options: ResolvedEngineOptions, owned: boolean) {
    this.store = store;
    this.options = options;
    this.#owned = owned;
  }

  async start<I, R>(task: Task<I, R>, input: I, options: StartOptions = {}): Promise<RunHandle<R>> {
    const runId = await this.create(task, input, options);
    return this.#work<R>(taskRuntime(task), runId);
  }

  async create<I, R>(task: Task<I, R>, input: I, options: StartOptions = {}): Promise<string> {
    this.#assertOpen();
    const runtime = taskRuntime(task);
    const runId = options.runId ?? randomUUID();
    if (options.nodeBudget !== undefined && (!Number.isInteger(options.nodeBudget) || options.nodeBudget < 1)) {
      throw new ConfigError(`Expected \`nodeBudget\` to be an integer >= 1, got \`${String(options.nodeBudget)}\`.`);
    }
    if (options.costBudget !== undefined && (typeof options.costBudget !== 'number' || !Number.isFinite(options.costBudget) || options.costBudget < 0)) {
      throw new ConfigError(`Expected \`costBudget\` to be a finite number >= 0, got \`${String(options.costBudget)}\`.`);
    }
    const encodedInput = runtime.codec.encode(input, 'The run input');
    const rootContext = options.context ?? null;
    let rootKey = 'root';
    let priority = 0;
    if (runtime.keyed) rootKey = runtime.keyOf(input);
    if (runtime.hasPriority) priority = runtime.priorityOf(input, 0, rootContext);
    await this.store.createRun({
      id: runId,
      task: runtime.name,
      taskVersion: runtime.version,
      input: encodedInput,
      context: encodeOptional(runtime.codec, options.context, 'The run context'),
      rootKey,
      rootKeyed: runtime.keyed,
      rootPriority: priority,
      order: runtime.order,
      nodeBudget: options.nodeBudget ?? null,
      costBudget: options.costBudget ?? null,
      passDead: runtime.passDead,
      traceparent: traceparentOf(context.active()),
      estimate: await estimateOf(runtime, input, runtime.version),
    });
    return runId;
  }

  async resume<I, R>(task: Task<I, R>, runId: string): Promise<RunHandle<R>> {
    const runtime = taskRuntime(task);
    const run = await this.getRun(runId);
    if (run.task !== runtime.name) {
      throw new ConfigError(`Run ${runId} belongs to task \`${run.task}\`, not \`${runtime.name}\`; resume it with the module that defines ${run.task}.`);
    }
    if (run.taskVersion > runtime.version) {
      throw new ConfigError(`Run ${runId} was started by version ${run.taskVersion} of ${run.task}; this module is version ${runtime.version}. Deploy the newer module to resume it.`);
    }
    // Once per resume, O(run), beside the run rather than before it: a run whose stored state does not add up
    // is stopped, and never reports an outcome, right or wrong, before its check has passed.
    const verified = this.store.verifyRun?.(runId);
    verified?.catch(() => undefined);
    // The estimate follows the code: a task that gained (or fixed) its `estimate` shows it on runs it resumes.
    const estimate = await estimateOf(runtime, decode(run.input), run.taskVersion);
    if (estimate !== null && estimate !== run.estimate) await this.store.setRunEstimate(runId, estimate);
    if (run.state === 'failed' || run.state === 'completed') await this.store.settleRun(runId);
    // A paused run stays paused (only an explicit resume, `rlm resume` or the dashboard, lifts a pause) and a
    // cancelled one cancelled: the worker finds nothing to claim and ends at once, and the run's state says why.
    return this.#work<R>(runtime, runId, verified);
  }

  #work<R>(runtime: TaskRuntime, runId: string, verified?: Promise<void>): RunHandle<R> {
    this.#assertOpen();
    const worker = new Worker({ store: this.store, task: runtime, options: this.options, runIds: [runId], untilRunsEnd: true });
    verified?.catch((error: unknown) => worker.fail(error));
    const done = (async (): Promise<RunOutcome<R>> => {
      try {
        const stoppedBy = await worker.run();
        await verified;
        const run = await this.getRun(runId);
        return {
          runId,
          state: run.state,
          result: run.state === 'completed' && run.result !== null ? (decode(run.result) as R) : undefined,
          counts: run.counts,
          pauseReason: run.pauseReason,
          stoppedBy,
        };
      } finally {
        this.#workers.delete(worker);
      }
    })();
    this.#workers.set(worker, done);
    return {
      runId,
      done,
      stop: () => worker.stop('signal'),
      abort: () => worker.abortNow(),
      stats: () => worker.stats,
    };
  }

  work<I, R>(task: Task<I, R>): { done: Promise<void>; stop(): void; abort(): void } {
    this.#assertOpen();
    const runtime = taskRuntime(task);
    const worker = new Worker({ store: this.store, task: runtime, options: this.options, untilRunsEnd: false });
    const done = worker.run().then(
      () => {
        this.#workers.delete(worker);
      },
      (error: unknown) => {
        this.#workers.delete(worker);
        throw error;
      },
    );
    this.#workers.set(worker, done);
    return { done, stop: () => worker.stop('signal'), abort: () => worker.abortNow() };
  }

  /**
   * Delivers the run's signal `name` with `payload` (JSON): nodes waiting for it (`ctx.waitFor`) run again, and
   * a step that waits for it later gets it at once. Once per name: the same payload again only wakes waiters;
   * another payload is refused (RefusedError). Resolves with how many waiting nodes it woke.
   */
  async signal(runId: string, name: string, payload: Json = null): Promise<{ sent: boolean; woke: number }> {
    this.#assertOpen();
    await this.getRun(runId);
    if (typeof name !== 'string' || name === '' || name.length > 1024) throw new ConfigError('A signal name is a non-empty string of at most 1024 characters.');
    return this.store.sendSignal(runId, name, codecNamed('json').encode(payload, `The payload of signal ${name}`));
  }

  async getRun(runId: string): Promise<RunRecord> {
    const run = await this.store.getRun(runId);
    if (!run) throw new NotFoundError(`No run ${runId} in ${this.store.description}; \`rlm status\` lists the runs.`);
    return run;
  }

  async *results(runId: string, options: ResultsOptions = {}): AsyncIterable<{ seq: number; nodeId: number; record: unknown }> {
    await this.getRun(runId);
    let after = options.afterSeq ?? 0;
    const signal = options.signal;
    for (;;) {
      if (signal?.aborted) return;
      const batch: EmitRecord[] = await this.store.readEmits(runId, after, 1000);
      for (const emit of batch) {
        after = emit.seq;
        yield { seq: emit.seq, nodeId: emit.nodeId, record: decode(emit.record) };
      }
      if (batch.length === 1000) continue;
      if (!options.follow) return;
      const run = await this.getRun(runId);
      if (run.state !== 'running') {
        // One last read: records committed together with the end of the run.
        const rest = await this.store.readEmits(runId, after, 1000);
        if (rest.length === 0) return;
        continue;
      }
      if (failpoints.active) failpoints.hit('results.waiting');
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, options.pollMs ?? 200);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new RlmError('The engine is closed.', 'CONFIG');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const worker of this.#workers.keys()) worker.stop('signal');
    await Promise.allSettled(this.#workers.values());
    if (this.#owned) await this.store.close();
  }
}

/**
 * The task's estimate of a run's size from its root input, once the input passed the schema (and migrations):
 * an input the schema refuses has none, and its root step dead-letters with the schema's issues.
 */
async function estimateOf(runtime: TaskRuntime, raw: unknown, version: number): Promise<number | null> {
  if (!runtime.task.estimate) return null;
  let input: unknown;
  try {
    input = await runtime.prepare(raw, version);
  } catch {
    return null;
  }
  return runtime.estimateOf(input);
}
