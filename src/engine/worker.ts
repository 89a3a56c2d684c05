/*
 * Terminology:
 * - task: a definition from defineTask (name, version, input schema, run, combine)
 * - run: one execution of a task, from a root input to a root result
 * - node: one call within a run: key, input, inherited context, state, result
 * - step: one attempt at a node's handler; its outcome commits in one transaction
 * - frontier: the pending nodes of a run, ordered by priority then depth
 * - window: the nodes leased to this worker and held in memory, ready to run
 * - effect: a journaled side effect (ctx.effect); a retried step reads the journal instead
 * - lease: a worker's claim on a node, extended by heartbeats, fenced by an epoch
 *
 * The worker loop: claim → run → commit.
 * - Claim. When the window runs dry, the worker leases a batch of frontier nodes from the store. Most nodes
 *   never need it: children are born leased to the worker that spawned them and go straight into the window.
 * - Run. Up to `concurrency` steps at once. A step's outcome (result, children, emitted records) is buffered.
 * - Commit. Buffered outcomes are committed in groups (every `commitEverySteps` steps or `commitEveryMs`), in
 *   one transaction, each fenced by the epoch its node was leased under. A crash loses at most the
 *   uncommitted group, which runs again. Effects force a commit before their step goes on.
 * - Suspects. A node taken back from a worker that died may have killed it. Suspects run alone, their attempt
 *   counted when claimed, and commit before anything else runs: a poison pill that kills every process that
 *   runs it ends in the dead-letter queue after `maxAttempts`, and its siblings are never blamed.
 */
import { randomUUID } from 'node:crypto';
import type { Span } from '@opentelemetry/api';
import type { ChildFailure, ChildSpec, Json, StepResult, TaskContext } from '../task.js';
import type { CommitOp, CommitResult, ErrorEntry, LeasedNode, NewNode, Store, StepOp, StepOutcome } from '../store/store.js';
import { failpoints } from '../failpoints.js';
import type { Logger } from '../observe/logger.js';
import { silentLogger } from '../observe/logger.js';
import { ATTR, SPAN } from '../observe/names.js';
import { context, contextFromTraceparent, endSpan, startSpan, trace, traceparentOf } from '../observe/tracing.js';
import { decode, encode, encodeOptional } from './codec.js';
import { describeThrown, NonRetryableError, RlmError, StaleLeaseError, StoreCorruptError, StoreIoError } from './errors.js';
import { Frontier } from './frontier.js';
import type { ResolvedEngineOptions } from './options.js';
import { HOST, isProcessAlive, processStart } from './process-info.js';
import type { TaskRuntime } from './task-runtime.js';

/** A leased node held in memory. */
interface WindowNode {
  id: number;
  runId: string;
  parentId: number | null;
  ord: number;
  key: string;
  depth: number;
  priority: number;
  orderKey: number;
  version: number;
  phase: 'run' | 'combine';
  attempts: number;
  epoch: number;
  suspect: boolean;
  fanoutApproved: boolean;
  spawned: number;
  traceparent: string | null;
  /** Decoded input; `validated` says whether it passed the gate already (born here). */
  input: unknown;
  encodedInput: string | null;
  validated: boolean;
  context: Json;
}

/** Children of a waiting parent that finished in this process, kept so combine needs no read. */
interface Join {
  results: unknown[];
  remaining: number;
  node: WindowNode;
}

export interface WorkerStats {
  steps: number;
  commits: number;
  claimed: number;
  fenced: number;
  startedAt: number;
}

type StopReason = 'finished' | 'signal' | 'rss' | 'error';

class Deferred<T> {
  promise: Promise<T>;
  resolve!: (value: T) => void;
  reject!: (error: unknown) => void;
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.promise.catch(() => undefined);
  }
}

/** Thrown inside a step whose deadline passed; the late result is discarded. */
class DeadlineError extends RlmError {
  constructor(ms: number) {
    super(`The step did not finish within its deadline of ${ms} ms (limits.timeoutMs); its late result is discarded.`, 'TIMEOUT');
  }
}

export interface WorkerConfig {
  store: Store;
  task: TaskRuntime;
  options: ResolvedEngineOptions;
  /** Only these runs; every run of the task when omitted (`rlm worker`). */
  runIds?: readonly string[];
  /** Stop once these runs leave the running state. */
  untilRunsEnd: boolean;
  logger?: Logger;
}

/** One worker: claims, runs and commits nodes of one task until stopped or its runs end. */
export class Worker {
  readonly #store: Store;
  readonly #task: TaskRuntime;
  readonly #o: ResolvedEngineOptions;
  readonly #runIds: readonly string[] | undefined;
  readonly #untilRunsEnd: boolean;
  readonly #log: Logger;
  #id = '';
  #window: Frontier<WindowNode>;
  readonly #suspects: WindowNode[] = [];
  /** Keyed children born here, held until the commit tells whether they were created or were duplicates. */
  readonly #limbo = new Map<number, WindowNode>();
  readonly #joins = new Map<number, Join>();
  #ops: CommitOp[] = [];
  #opSteps = 0;
  #nextCommit = new Deferred<CommitResult>();
  #committing: Promise<void> | null = null;
  #commitTimer: NodeJS.Timeout | null = null;
  #inflight = 0;
  #isolating = false;
  readonly #controllers = new Set<AbortController>();
  #wake = new Deferred<void>();
  #stopping: StopReason | null = null;
  #fatal: unknown = null;
  #heartbeat: NodeJS.Timeout | null = null;
  #idNext = 0;
  #idEnd = 0;
  readonly stats: WorkerStats = { steps: 0, commits: 0, claimed: 0, fenced: 0, startedAt: Date.now() };

  constructor(config: WorkerConfig) {
    this.#store = config.store;
    this.#task = config.task;
    this.#o = config.options;
    this.#runIds = config.runIds;
    this.#untilRunsEnd = config.untilRunsEnd;
    this.#log = config.logger ?? config.options.logger ?? silentLogger();
    this.#window = this.#newWindow();
  }

  get id(): string {
    return this.#id;
  }

  #newWindow(): Frontier<WindowNode> {
    return new Frontier<WindowNode>(this.#task.hasPriority ? 'heap' : this.#task.order === 'dfs' ? 'stack' : 'queue');
  }

  /** Runs until the runs end (or, for `rlm worker`, until stopped). Resolves with why it stopped. */
  async run(): Promise<StopReason> {
    await this.#register();
    await this.#reapDeadProcesses();
    this.#heartbeat = setInterval(() => void this.#tick(), this.#o.heartbeatMs);
    try {
      await this.#loop();
    } finally {
      if (this.#heartbeat) clearInterval(this.#heartbeat);
      this.#heartbeat = null;
      if (this.#commitTimer) clearTimeout(this.#commitTimer);
    }
    if (this.#fatal) throw this.#fatal;
    return this.#stopping ?? 'finished';
  }

  /** Graceful stop: no new claims; in-flight steps get `graceMs` to finish; the rest is handed back. */
  stop(reason: StopReason = 'signal'): void {
    if (this.#stopping) return;
    this.#stopping = reason;
    this.#signal();
  }

  /** A second signal: abort in-flight steps now. */
  abortNow(): void {
    for (const controller of this.#controllers) controller.abort(new RlmError('The worker is stopping.', 'HANDLER'));
    this.stop('signal');
  }

  #signal(): void {
    const wake = this.#wake;
    this.#wake = new Deferred<void>();
    wake.resolve();
  }

  async #register(): Promise<void> {
    this.#id = `${HOST}:${process.pid}:${randomUUID().slice(0, 8)}`;
    await this.#store.registerWorker(
      { id: this.#id, host: HOST, pid: process.pid, pidStart: processStart(process.pid), task: this.#task.name, version: this.#task.version },
      this.#o.leaseMs,
    );
  }

  /** Leases held by processes of this host that are gone are taken back at once, without waiting for expiry. */
  async #reapDeadProcesses(): Promise<void> {
    const workers = await this.#store.listWorkers();
    const dead = workers.filter((w) => w.state === 'alive' && w.host === HOST && w.id !== this.#id && !isProcessAlive(w.pid, w.pidStart)).map((w) => w.id);
    const taken = await this.#store.takeBack({ deadIds: dead, expiredBefore: Date.now() });
    if (taken > 0) {
      this.#o.metrics?.leaseExpiries.inc(taken);
      this.#log.warn({ taken, workers: dead }, 'Took back the leases of workers that died.');
    }
  }

  async #tick(): Promise<void> {
    try {
      const alive = await this.#store.heartbeat(this.#id, this.#o.leaseMs);
      if (!alive) {
        this.#log.error({ worker: this.#id }, 'This worker was declared dead (its heartbeat came too late); dropping its leases and rejoining.');
        this.#dropEverything();
        await this.#register();
      }
      await this.#reapDeadProcesses();
      if (this.#o.maxRssBytes > 0 && process.memoryUsage.rss() > this.#o.maxRssBytes) {
        this.#log.warn({ rss: process.memoryUsage.rss(), max: this.#o.maxRssBytes }, 'Memory ceiling reached; stopping gracefully.');
        this.stop('rss');
      }
    } catch (error) {
      this.#die(error);
    }
  }

  #die(error: unknown): void {
    if (!this.#fatal) this.#fatal = error;
    this.#stopping = 'error';
    this.#signal();
  }

  /** Lost every lease: what is in memory is someone else's now. */
  #dropEverything(): void {
    this.#window = this.#newWindow();
    this.#suspects.length = 0;
    this.#limbo.clear();
    this.#joins.clear();
    this.#ops = [];
    this.#opSteps = 0;
    this.#nextCommit.reject(new RlmError('This worker lost its leases; its uncommitted steps were dropped.', 'STALE_LEASE'));
    this.#nextCommit = new Deferred<CommitResult>();
    for (const controller of this.#controllers) controller.abort(new RlmError('This worker lost its leases.', 'STALE_LEASE'));
  }

  async #loop(): Promise<void> {
    for (;;) {
      if (this.#fatal) return;
      if (this.#stopping) {
        await this.#drain();
        return;
      }
      this.#fill();
      if (this.#inflight > 0 || this.#committing) {
        await this.#wake.promise;
        continue;
      }
      if (this.#ops.length > 0 || this.#limbo.size > 0) {
        await this.#commit();
        continue;
      }
      if (this.#window.size > 0 || this.#suspects.length > 0) continue;
      const claimed = await this.#claim();
      if (claimed > 0) continue;
      if (this.#untilRunsEnd && (await this.#runsEnded())) {
        this.#stopping = 'finished';
        return;
      }
      await this.#idle();
    }
  }

  async #idle(): Promise<void> {
    if (this.#store.waitForWork) {
      await Promise.race([this.#wake.promise, this.#store.waitForWork(this.#o.pollMs * 10)]);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#wake.promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#o.pollMs)))]);
    clearTimeout(timer);
  }

  async #runsEnded(): Promise<boolean> {
    for (const runId of this.#runIds ?? []) {
      const run = await this.#store.getRun(runId);
      if (run?.state === 'running') return false;
    }
    return true;
  }

  async #claim(): Promise<number> {
    const nodes = await this.#store.claimNodes(
      this.#id,
      { task: this.#task.name, maxVersion: this.#task.version, runIds: this.#runIds },
      this.#o.claimBatch,
    );
    this.stats.claimed += nodes.length;
    // The store returns the best first; a stack pops the last pushed, so push in reverse.
    for (let i = nodes.length - 1; i >= 0; i--) this.#admit(nodes[i] as LeasedNode);
    return nodes.length;
  }

  #admit(leased: LeasedNode, join?: Join): void {
    const node: WindowNode = join?.node ?? {
      id: leased.id,
      runId: leased.runId,
      parentId: leased.parentId,
      ord: 0,
      key: leased.key,
      depth: leased.depth,
      priority: leased.priority,
      orderKey: 0,
      version: leased.version,
      phase: leased.phase,
      attempts: leased.attempts,
      epoch: leased.epoch,
      suspect: leased.suspect,
      fanoutApproved: leased.fanoutApproved,
      spawned: leased.spawned,
      traceparent: leased.traceparent,
      input: undefined,
      encodedInput: leased.input,
      validated: false,
      context: null,
    };
    if (join) {
      node.phase = leased.phase;
      node.epoch = leased.epoch;
      node.attempts = leased.attempts;
      node.suspect = false;
    } else {
      try {
        node.context = (decode(leased.context) ?? null) as Json;
      } catch {
        node.context = null;
        node.encodedInput = '\u0000'; // fails to decode in the step, which sends the node to the DLQ
      }
    }
    node.orderKey = this.#task.order === 'dfs' ? -leased.id : leased.id;
    if (node.suspect) this.#suspects.push(node);
    else this.#window.push(node);
  }

  /** Starts steps while there is room. A suspect runs alone. */
  #fill(): void {
    if (this.#stopping || this.#isolating) return;
    if (this.#suspects.length > 0) {
      if (this.#inflight > 0 || this.#ops.length > 0 || this.#committing) return;
      const suspect = this.#suspects.shift() as WindowNode;
      this.#isolating = true;
      this.#start(suspect);
      return;
    }
    while (this.#inflight < this.#o.concurrency) {
      const node = this.#window.pop();
      if (!node) return;
      this.#start(node);
    }
  }

  #start(node: WindowNode): void {
    this.#inflight++;
    this.#step(node).then(
      () => this.#finishStep(node),
      (error: unknown) => {
        this.#die(error);
        this.#finishStep(node);
      },
    );
  }

  #finishStep(node: WindowNode): void {
    this.#inflight--;
    this.stats.steps++;
    if (node.suspect) {
      // The next step starts only once the suspect's outcome is durable.
      void this.#commit().then(() => {
        this.#isolating = false;
        this.#signal();
      });
    } else if (this.#opSteps >= this.#o.commitEverySteps || (this.#inflight === 0 && this.#window.size === 0)) {
      void this.#commit();
    } else if (!this.#commitTimer && this.#ops.length > 0) {
      this.#commitTimer = setTimeout(() => {
        this.#commitTimer = null;
        void this.#commit();
      }, this.#o.commitEveryMs);
    }
    this.#signal();
  }

  // ---------------------------------------------------------------- commit

  #push(op: CommitOp): Promise<CommitResult> {
    this.#ops.push(op);
    if (op.kind === 'step') this.#opSteps++;
    return this.#nextCommit.promise;
  }

  /** Commits the buffered group; resolves when it (and any commit before it) is durable. */
  #commit(): Promise<void> {
    if (this.#committing) {
      // One commit at a time: the next starts when this one ends and finds the buffer non-empty.
      return this.#committing;
    }
    if (this.#commitTimer) {
      clearTimeout(this.#commitTimer);
      this.#commitTimer = null;
    }
    if (this.#ops.length === 0) return Promise.resolve();
    const ops = this.#ops;
    const deferred = this.#nextCommit;
    this.#ops = [];
    this.#opSteps = 0;
    this.#nextCommit = new Deferred<CommitResult>();
    const started = performance.now();
    this.#committing = (async () => {
      try {
        const result = await this.#store.commit(this.#id, ops);
        this.stats.commits++;
        this.#o.metrics?.commitDuration.observe((performance.now() - started) / 1000);
        this.#o.metrics?.commitBatch.observe(ops.length);
        this.#afterCommit(ops, result);
        deferred.resolve(result);
      } catch (error) {
        deferred.reject(error);
        this.#die(error);
      } finally {
        this.#committing = null;
        this.#signal();
      }
    })();
    return this.#committing;
  }

  #afterCommit(ops: readonly CommitOp[], result: CommitResult): void {
    if (result.rejected.length > 0) {
      this.stats.fenced += result.rejected.length;
      this.#o.metrics?.fenced.inc(result.rejected.length);
      this.#log.warn({ nodes: result.rejected.slice(0, 20), count: result.rejected.length }, 'Step writes were rejected: their leases had moved on to another worker.');
    }
    if (this.#limbo.size > 0) {
      const duplicates = new Set(result.duplicates);
      const rejected = new Set(result.rejected);
      for (const op of ops) {
        if (op.kind === 'effect') continue;
        for (const child of op.children) {
          const node = this.#limbo.get(child.id);
          if (!node) continue;
          this.#limbo.delete(child.id);
          if (!duplicates.has(child.id) && !rejected.has(op.nodeId) && child.state === 'running') this.#window.push(node);
        }
      }
    }
    for (const leased of result.ready) {
      const join = this.#joins.get(leased.id);
      this.#joins.delete(leased.id);
      this.#admit(leased, join && join.remaining === 0 ? join : undefined);
    }
  }

  // ---------------------------------------------------------------- one step

  async #step(node: WindowNode): Promise<void> {
    const task = this.#task;
    const limits = task.limits;
    if (node.suspect && node.attempts > limits.maxAttempts) {
      const error = this.#errorEntry(node.attempts - 1, {
        message: `The step crashed its worker process on ${limits.maxAttempts} attempts (a poison pill); it is not run again.`,
        code: 'CRASHED',
        stack: null,
      });
      this.#push(this.#stepOp(node, { type: 'dead', error }, limits.maxAttempts, [], []));
      return;
    }
    const attempt = node.suspect ? node.attempts : node.attempts + 1;
    const started = performance.now();
    const span = startSpan(node.phase === 'combine' ? SPAN.combine : SPAN.step, contextFromTraceparent(node.traceparent), {
      [ATTR.runId]: node.runId,
      [ATTR.nodeId]: node.id,
      [ATTR.depth]: node.depth,
      [ATTR.attempt]: attempt,
    });
    let emits: string[] = [];
    let children: NewNode[] = [];
    let born: WindowNode[] = [];
    let finished = false;
    let controller: AbortController | undefined;
    let deadline: NodeJS.Timeout | undefined;
    let deadlineHit: Deferred<never> | undefined;
    const effectNames = new Set<string>();
    const worker = this;
    let log: Logger | undefined;
    const ctx: TaskContext = {
      runId: node.runId,
      nodeId: node.id,
      key: node.key,
      depth: node.depth,
      attempt,
      context: node.context,
      get signal() {
        if (!controller) {
          controller = new AbortController();
          worker.#controllers.add(controller);
          if (worker.#stopping) controller.abort(new RlmError('The worker is stopping.', 'HANDLER'));
        }
        return controller.signal;
      },
      get log() {
        log ??= worker.#log.child({ runId: node.runId, nodeId: node.id, key: node.key, depth: node.depth, attempt, traceId: span.spanContext().traceId });
        return log;
      },
      traceId: span.spanContext().traceId,
      emit(record: unknown) {
        if (finished) throw new RlmError(`ctx.emit was called after the step of node ${node.id} ended; records must be emitted before the step returns.`, 'HANDLER');
        emits.push(encode(record, 'An emitted record'));
      },
      effect<T>(name: string, fn: (idempotencyKey: string) => Promise<T> | T): Promise<T> {
        if (finished) return Promise.reject(new RlmError(`ctx.effect('${name}') was called after the step of node ${node.id} ended.`, 'HANDLER'));
        if (effectNames.has(name)) {
          return Promise.reject(new NonRetryableError(`ctx.effect('${name}') was called twice in one step; give each effect of a step its own name.`));
        }
        effectNames.add(name);
        return worker.#effect(node, name, fn);
      },
    };
    let outcome: StepOutcome;
    let attempts = attempt;
    try {
      if (task.limits.timeoutMs > 0) {
        deadlineHit = new Deferred<never>();
        deadline = setTimeout(() => {
          const error = new DeadlineError(task.limits.timeoutMs);
          controller?.abort(error);
          deadlineHit?.reject(error);
        }, task.limits.timeoutMs);
      }
      const work = this.#runPhase(node, ctx, children, born, span);
      const value = deadlineHit ? await Promise.race([work, deadlineHit.promise]) : await work;
      outcome = value;
    } catch (thrown) {
      outcome = this.#failure(node, attempt, thrown);
      if (outcome.type === 'dead' && (thrown as RlmError)?.code === 'INVALID_INPUT' && node.phase === 'run') attempts = node.attempts;
      // A late handler may still touch these: the failed outcome gets fresh, empty ones.
      children = [];
      emits = [];
      born = [];
      span.recordException(describeThrown(thrown).message);
    } finally {
      finished = true;
      if (deadline) clearTimeout(deadline);
      if (controller) this.#controllers.delete(controller);
    }
    endSpan(span);
    this.#o.metrics?.stepDuration.observe((performance.now() - started) / 1000);
    this.#o.metrics?.steps.inc({ outcome: outcome.type });
    if (outcome.type === 'park') attempts = node.attempts;
    this.#push(this.#stepOp(node, outcome, attempts, children, emits));
    if (outcome.type === 'done') this.#recordForJoin(node, outcome.result);
    if (outcome.type === 'wait') this.#openJoin(node, children, born.length);
    // Born-leased children may run before their parent's group commits, always in a later position of the
    // same or a later group; a commit that rejects the parent rejects them too, since their rows never existed.
    if (outcome.type === 'done' || outcome.type === 'wait') {
      for (const child of born) {
        if (this.#task.keyed) this.#limbo.set(child.id, child);
        else this.#window.push(child);
      }
    }
  }

  #stepOp(node: WindowNode, outcome: StepOutcome, attempts: number, children: NewNode[], emits: string[]): StepOp {
    return { kind: 'step', runId: node.runId, nodeId: node.id, epoch: node.epoch, outcome, attempts, children, emits, waits: this.#task.waits, passDead: this.#task.passDead };
  }

  /** A finished child whose parent waits here: keep its result for the parent's combine. */
  #recordForJoin(node: WindowNode, encoded: string | null): void {
    if (node.parentId === null) return;
    const join = this.#joins.get(node.parentId);
    if (!join) return;
    if (join.results[node.ord] === undefined) join.remaining--;
    join.results[node.ord] = encoded === null ? null : decode(encoded);
  }

  #errorEntry(attempt: number, described: { message: string; code: string | null; stack: string | null }): ErrorEntry {
    return { attempt, message: described.message, code: described.code, stack: described.stack, at: Date.now(), worker: this.#id };
  }

  #failure(node: WindowNode, attempt: number, thrown: unknown): StepOutcome {
    const described = describeThrown(thrown);
    const code = (thrown as RlmError)?.code;
    this.#o.metrics?.errors.inc({ code: described.code ?? 'HANDLER' });
    const error = this.#errorEntry(attempt, described);
    if (thrown instanceof StoreIoError || thrown instanceof StoreCorruptError) throw thrown;
    const permanent =
      thrown instanceof NonRetryableError ||
      code === 'INVALID_INPUT' ||
      code === 'NOT_SERIALIZABLE' ||
      code === 'MIGRATION' ||
      code === 'VERSION' ||
      code === 'NON_RETRYABLE';
    if (permanent || attempt >= this.#task.limits.maxAttempts) {
      this.#log.warn({ nodeId: node.id, key: node.key, attempt, error: described.message, code: described.code }, 'A node went to the dead-letter queue.');
      return { type: 'dead', error };
    }
    const { backoffMs, maxBackoffMs } = this.#task.limits;
    const ceiling = Math.min(maxBackoffMs, backoffMs * 2 ** (attempt - 1));
    return { type: 'retry', error, availableAt: Date.now() + Math.round(Math.random() * ceiling) };
  }

  async #input(node: WindowNode): Promise<unknown> {
    if (node.validated) return node.input;
    let raw: unknown;
    try {
      raw = decode(node.encodedInput ?? 'null');
    } catch (error) {
      throw new RlmError(`The stored input of node ${node.id} cannot be decoded (${(error as Error).message}); it was damaged outside rlm.`, 'INVALID_INPUT');
    }
    const input = await this.#task.prepare(raw, node.version);
    node.input = input;
    node.validated = true;
    return input;
  }

  async #runPhase(node: WindowNode, ctx: TaskContext, children: NewNode[], born: WindowNode[], span: Span): Promise<StepOutcome> {
    const input = await this.#input(node);
    const task = this.#task.task;
    if (node.phase === 'combine') {
      const results = await this.#childResults(node);
      const value = await (task.combine as NonNullable<typeof task.combine>)(input, results, ctx);
      return { type: 'done', result: encodeOptional(value, 'The result of combine') };
    }
    const output = (await task.run(input, ctx)) as StepResult<unknown, unknown> | undefined;
    if (output !== undefined && (typeof output !== 'object' || output === null)) {
      throw new NonRetryableError(`run() of ${this.#task.name} must return { result?, children? } or nothing, got ${output === null ? 'null' : typeof output}.`);
    }
    const result = encodeOptional(output?.result, 'The result');
    if (output?.children === undefined || output.children === null) return { type: 'done', result };
    const traceparent = traceparentOf(trace.setSpan(context.active(), span));
    const spawned = await this.#spawn(node, output.children, children, born, traceparent);
    if (spawned === 'alarm') {
      return {
        type: 'park',
        reason: `fan-out alarm: the step spawned more than maxChildren (${this.#task.limits.maxChildren}) children; approve or reject it`,
        pauseRun: true,
      };
    }
    if (spawned > 0 && this.#task.waits) return { type: 'wait', result };
    return { type: 'done', result };
  }

  /** Opens an in-memory join when every child of the step was born here, unkeyed and leased. */
  #openJoin(node: WindowNode, children: NewNode[], born: number): void {
    if (this.#task.keyed || children.length !== born || node.spawned > 0 || this.#joins.size >= 100_000) return;
    for (const child of children) if (child.state !== 'running') return;
    this.#joins.set(node.id, { results: new Array(children.length), remaining: children.length, node });
  }

  async #childResults(node: WindowNode): Promise<unknown[]> {
    const join = this.#joins.get(node.id);
    if (join && join.remaining === 0) {
      this.#joins.delete(node.id);
      return join.results;
    }
    const rows = await this.#store.childResults(node.id);
    return rows.map((row): unknown => {
      if (row.state === 'dead') return { failed: true, key: row.key, error: row.error ?? 'dead' } satisfies ChildFailure;
      return row.result === null ? null : decode(row.result);
    });
  }

  /** Turns the handler's children into rows. Returns how many were spawned, or 'alarm' past the fan-out bound. */
  async #spawn(node: WindowNode, source: unknown, rows: NewNode[], born: WindowNode[], traceparent: string | null): Promise<number | 'alarm'> {
    const task = this.#task;
    const limit = task.limits.maxChildren;
    const isIterable = source !== null && typeof source === 'object' && (Symbol.iterator in source || Symbol.asyncIterator in source);
    if (!isIterable) throw new NonRetryableError(`run() of ${task.name} returned \`children\` that is not an array or iterable.`);
    const chunked = !Array.isArray(source) && node.fanoutApproved;
    if (Array.isArray(source) && source.length - node.spawned > limit && !node.fanoutApproved) return 'alarm';
    let ord = 0;
    let skip = node.spawned;
    for await (const spec of source as AsyncIterable<ChildSpec<unknown>>) {
      if (skip > 0) {
        skip--;
        ord++;
        continue;
      }
      if (ord >= limit && !node.fanoutApproved) return 'alarm';
      rows.push(await this.#child(node, spec, ord, traceparent, born));
      ord++;
      if (chunked && rows.length >= this.#o.spawnChunk) {
        const spawnOp = { kind: 'spawn' as const, runId: node.runId, nodeId: node.id, epoch: node.epoch, children: rows.splice(0), spawned: ord, waits: task.waits };
        const result = await this.#pushAndCommit(spawnOp);
        if (result.rejected.includes(node.id)) throw new StaleLeaseError(node.id, node.epoch);
        this.#bornCommitted(spawnOp.children, born, result);
        born.length = 0;
      }
    }
    return ord;
  }

  #bornCommitted(children: readonly NewNode[], born: WindowNode[], result: CommitResult): void {
    const duplicates = new Set(result.duplicates);
    const byId = new Map(born.map((b) => [b.id, b]));
    for (const child of children) {
      const node = byId.get(child.id);
      if (node && child.state === 'running' && !duplicates.has(child.id)) this.#window.push(node);
    }
  }

  async #pushAndCommit(op: CommitOp): Promise<CommitResult> {
    const promise = this.#push(op);
    while (this.#ops.includes(op)) await this.#commit();
    return promise;
  }

  async #nextId(): Promise<number> {
    if (this.#idNext >= this.#idEnd) {
      const block = 8_192;
      this.#idNext = await this.#store.allocateIds(block);
      this.#idEnd = this.#idNext + block;
    }
    return this.#idNext++;
  }

  async #child(parent: WindowNode, spec: ChildSpec<unknown>, ord: number, traceparent: string | null, born: WindowNode[]): Promise<NewNode> {
    const task = this.#task;
    const id = this.#idNext < this.#idEnd ? this.#idNext++ : await this.#nextId();
    const depth = parent.depth + 1;
    const pathKey = `${parent.key}/${ord}`;
    const row: NewNode = {
      id,
      parentId: parent.id,
      ord,
      key: pathKey,
      keyed: false,
      depth,
      priority: 0,
      version: task.version,
      input: 'null',
      context: null,
      state: 'running',
      error: null,
      traceparent,
    };
    const dead = (error: unknown, state: 'dead' | 'parked' = 'dead'): NewNode => {
      row.state = state;
      row.error = this.#errorEntry(0, describeThrown(error));
      return row;
    };
    if (spec === null || typeof spec !== 'object' || !('input' in spec)) {
      return dead(new RlmError(`Child ${ord} of node ${parent.id} must be { input, context? }, got ${spec === null ? 'null' : typeof spec}.`, 'INVALID_INPUT'));
    }
    let context: Json = parent.context;
    try {
      if (spec.context !== undefined) {
        context = spec.context;
        row.context = encode(spec.context, `The context of child ${ord}`);
      } else {
        row.context = parent.context === null ? null : encode(parent.context, 'The inherited context');
      }
      row.input = encode(spec.input, `The input of child ${ord}`);
    } catch (error) {
      return dead(error);
    }
    let input: unknown;
    try {
      if (task.keyed) {
        row.key = task.keyOf(spec.input);
        row.keyed = true;
      }
      input = await task.validate(spec.input);
      row.priority = task.priorityOf(input, depth, context);
    } catch (error) {
      return dead(error);
    }
    if (depth > task.limits.maxDepth) {
      const error = new RlmError(`Child at depth ${depth} is deeper than limits.maxDepth (${task.limits.maxDepth}).`, 'DEPTH');
      return dead(error, task.depthPolicy === 'park' ? 'parked' : 'dead');
    }
    const windowFree = this.#window.size + born.length + this.#limbo.size < this.#o.windowSize;
    if (!windowFree || this.#stopping) {
      row.state = 'pending';
      return row;
    }
    born.push({
      id,
      runId: parent.runId,
      parentId: parent.id,
      ord,
      key: row.key,
      depth,
      priority: row.priority,
      orderKey: task.order === 'dfs' ? -id : id,
      version: task.version,
      phase: 'run',
      attempts: 0,
      epoch: 1,
      suspect: false,
      fanoutApproved: false,
      spawned: 0,
      traceparent,
      input,
      encodedInput: row.input,
      validated: true,
      context,
    });
    return row;
  }

  // ---------------------------------------------------------------- effects

  async #effect<T>(node: WindowNode, name: string, fn: (idempotencyKey: string) => Promise<T> | T): Promise<T> {
    const idempotencyKey = `${node.runId}:${node.key}:${name}`;
    const journaled = await this.#store.getEffect(node.runId, node.key, name);
    if (journaled) return decode(journaled.value) as T;
    if (failpoints.active) failpoints.hit('effect.beforeCall');
    this.#o.metrics?.effectCalls.inc();
    const value = await fn(idempotencyKey);
    if (failpoints.active) failpoints.hit('effect.afterCall');
    const encoded = encode(value, `The value of effect '${name}'`);
    const result = await this.#pushAndCommit({ kind: 'effect', runId: node.runId, nodeId: node.id, nodeKey: node.key, epoch: node.epoch, name, value: encoded });
    if (result.rejected.includes(node.id)) throw new StaleLeaseError(node.id, node.epoch);
    if (failpoints.active) failpoints.hit('effect.afterJournal');
    // The caller gets the decoded journal value, the same one a retry would get.
    return decode(encoded) as T;
  }

  // ---------------------------------------------------------------- graceful stop

  async #drain(): Promise<void> {
    if (this.#fatal) return;
    if (failpoints.active) failpoints.hit('stop.begin');
    const deadline = Date.now() + this.#o.graceMs;
    while (this.#inflight > 0 && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#wake.promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(1, deadline - Date.now()))))]);
      clearTimeout(timer);
      if (this.#fatal) return;
    }
    if (this.#inflight > 0) {
      for (const controller of this.#controllers) controller.abort(new RlmError('The worker is stopping.', 'HANDLER'));
    }
    try {
      if (this.#committing) await this.#committing;
      await this.#commit();
      if (this.#committing) await this.#committing;
      await this.#store.releaseWorker(this.#id);
    } catch (error) {
      if (!this.#fatal) this.#fatal = error;
    }
  }
}
