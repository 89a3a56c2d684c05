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
import type { CommitOp, CommitResult, ErrorEntry, LeasedNode, NewNode, Payload, Store, StepOp, StepOutcome } from '../store/store.js';
import { failpoints } from '../failpoints.js';
import type { Logger } from '../observe/logger.js';
import { silentLogger } from '../observe/logger.js';
import { ATTR, SPAN } from '../observe/names.js';
import { context, contextFromTraceparent, endSpan, startSpan, trace, tracingEnabled, traceparentOf } from '../observe/tracing.js';
import { type Codec, decode, encodeOptional } from './codec.js';
import { describeThrown, NonRetryableError, RlmError, StaleLeaseError, StoreCorruptError, StoreIoError } from './errors.js';
import { FlightRecorder, readFlight } from './flight.js';
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
  /** Results of its children gathered in memory, for its combine phase. */
  childResults?: unknown[];
  /** Decoded input; `validated` says whether it passed the gate already (born here). */
  input: unknown;
  encodedInput: Payload | null;
  validated: boolean;
  /**
   * No effect of this node can be in the journal yet, so `ctx.effect` need not look: an unkeyed child born here,
   * before its first effect. (A keyed node's key may have a journal from an earlier node of that key.)
   */
  journalEmpty: boolean;
  context: Json;
  /** The context as stored, handed on to children that inherit it without re-encoding. */
  encodedContext: Payload | null;
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
  /**
   * Combines started before their parent's row was committed (it sits in the buffered group, waiting, with
   * every child finished in the same group): their outcome is merged into that row. If the group commits
   * first, the store makes the parent ready and leases it here; the combine takes that lease over (`ready`).
   */
  readonly #early = new Map<number, { node: WindowNode; ready: boolean; op: StepOp | null }>();
  #ops: CommitOp[] = [];
  #opSteps = 0;
  /** Child rows created by the buffered group, by id: a child that finishes before the group commits is merged into its row. */
  #buffered = new Map<number, NewNode>();
  #nextCommit = new Deferred<CommitResult>();
  /** The latest commit in flight; it settles after every commit before it. */
  #committing: Promise<void> | null = null;
  #commitsInFlight = 0;
  /** Groups sent before the one ahead is acknowledged: 2 on a store that applies commits in call order. */
  readonly #maxInFlight: number;
  #commitTimer: NodeJS.Timeout | null = null;
  #commitSoon: Promise<void> | null = null;
  #inflight = 0;
  #isolating = false;
  /** Suspects ran since the last commit: commit their outcomes before anything else runs. */
  #afterSuspects = false;
  readonly #controllers = new Set<AbortController>();
  #wake = new Deferred<void>();
  #stopping: StopReason | null = null;
  #fatal: unknown = null;
  #heartbeat: NodeJS.Timeout | null = null;
  #idNext = 0;
  #idEnd = 0;
  readonly #spareIds: Array<[number, number]> = [];
  #reserving: Promise<void> | null = null;
  readonly #tracing = tracingEnabled();
  #flight = new FlightRecorder('unregistered');
  readonly #host: StepHost;
  /** Other live workers of this task: while there are some, children go to the shared frontier, not this window. */
  #peers = 0;
  /** The shared frontier held fewer nodes than the peers could take at this worker's last commit. */
  #frontierLow = true;
  /** The loop waits on #wake only when it has nothing to do; steps signal it only then. */
  #loopWaiting = false;
  /** Runs whose recorded task code this worker has compared with its own (once per run). */
  readonly #codeChecked = new Set<string>();
  readonly stats: WorkerStats = { steps: 0, commits: 0, claimed: 0, fenced: 0, startedAt: Date.now() };

  constructor(config: WorkerConfig) {
    this.#store = config.store;
    this.#maxInFlight = config.store.capabilities.orderedCommits ? 2 : 1;
    this.#task = config.task;
    this.#o = config.options;
    this.#runIds = config.runIds;
    this.#untilRunsEnd = config.untilRunsEnd;
    this.#log = config.logger ?? config.options.logger ?? silentLogger();
    this.#window = this.#newWindow();
    this.#host = {
      log: this.#log,
      controllers: this.#controllers,
      codec: this.#task.codec,
      stopping: () => this.#stopping !== null,
      effect: (node, name, fn) => this.#effect(node, name, fn),
    };
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
    await this.#reserveIds();
    this.#heartbeat = setInterval(() => void this.#tick(), this.#o.heartbeatMs);
    try {
      await this.#loop();
      // No heartbeat may reach the store after the release: it would find this worker gone and rejoin.
      this.#stopHeartbeat();
      // Nodes still leased here (a paused run's window) go back to the frontier for the next worker.
      if (!this.#fatal && this.#stopping !== 'signal' && this.#stopping !== 'rss') await this.#store.releaseWorker(this.#id);
    } finally {
      this.#stopHeartbeat();
      if (this.#commitTimer) clearTimeout(this.#commitTimer);
      this.#flight.close();
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
    if (!this.#loopWaiting) return;
    this.#loopWaiting = false;
    const wake = this.#wake;
    this.#wake = new Deferred<void>();
    wake.resolve();
  }

  #sleep(): Promise<void> {
    this.#loopWaiting = true;
    return this.#wake.promise;
  }

  async #register(): Promise<void> {
    this.#id = `${HOST}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.#flight.close();
    this.#flight = new FlightRecorder(this.#id);
    await this.#store.registerWorker(
      { id: this.#id, host: HOST, pid: process.pid, pidStart: processStart(process.pid), task: this.#task.name, version: this.#task.version },
      this.#o.leaseMs,
    );
  }

  /**
   * Leases held by processes of this host that are gone are taken back at once, without waiting for expiry;
   * a node such a process was running alone when it died is blamed for the crash (see FlightRecorder).
   */
  async #reapDeadProcesses(): Promise<void> {
    const workers = await this.#store.listWorkers();
    this.#peers = workers.filter((w) => w.state === 'alive' && w.task === this.#task.name && w.id !== this.#id).length;
    const dead = workers.filter((w) => w.state === 'alive' && w.host === HOST && w.id !== this.#id && !isProcessAlive(w.pid, w.pidStart)).map((w) => w.id);
    const blame = dead.map(readFlight).filter((node): node is { id: number; epoch: number } => node !== null);
    const taken = await this.#store.takeBack({ deadIds: dead, expiredBefore: Date.now(), blame });
    if (taken > 0) {
      this.#o.metrics?.leaseExpiries.inc(taken);
      this.#log.warn({ taken, workers: dead }, 'Took back the leases of workers that died.');
    }
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
  }

  async #tick(): Promise<void> {
    try {
      const alive = await this.#store.heartbeat(this.#id, this.#o.leaseMs);
      // The worker ended while the heartbeat was on its way: its release, not this answer, says what happens.
      if (!this.#heartbeat) return;
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
    this.#early.clear();
    this.#ops = [];
    this.#opSteps = 0;
    this.#buffered = new Map();
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
        await this.#sleep();
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
      await Promise.race([this.#sleep(), this.#store.waitForWork(this.#o.pollMs * 10)]);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#sleep(), new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#o.pollMs)))]);
    clearTimeout(timer);
  }

  async #runsEnded(): Promise<boolean> {
    for (const runId of this.#runIds ?? []) {
      const run = await this.#store.getRun(runId);
      if (run?.state === 'running') return false;
    }
    return true;
  }

  /**
   * Nodes this worker keeps in memory. With peers and a shared frontier running low, only enough to stay busy:
   * its other children go to the frontier, where idle peers claim them. Otherwise it keeps what it spawns, which
   * costs one write per node instead of three (insert pending, claim, complete).
   */
  #room(): number {
    return this.#peers > 0 && this.#frontierLow ? this.#busyRoom() : this.#o.windowSize;
  }

  /**
   * Keyed children wait in limbo for the commit that decides whether their keys exist. Once they fill an eighth
   * of the window, the worker commits and starts no step until that commit lands. Steps started meanwhile would
   * widen the tree held in memory (their children wait too, so the window is not worked depth-first) until
   * children found no room left and went to the store's frontier, to come back through claims. An eighth ran
   * the 1.1M-node keyed tree fastest (half: 25.2 s, a quarter: 17.7, an eighth: 17.4, a sixteenth: 18.4).
   */
  #limboFull(): boolean {
    return this.#limbo.size * 8 >= this.#o.windowSize;
  }

  /** Enough nodes to keep `concurrency` steps busy; a claim with peers takes no more, so nobody drains the frontier. */
  #busyRoom(): number {
    return Math.min(this.#o.windowSize, this.#o.concurrency * 4);
  }

  async #claim(): Promise<number> {
    const nodes = await this.#store.claimNodes(
      this.#id,
      { task: this.#task.name, maxVersion: this.#task.version, runIds: this.#runIds },
      Math.max(1, Math.min(this.#o.claimBatch, (this.#peers > 0 ? this.#busyRoom() : this.#o.windowSize) - this.#window.size)),
    );
    this.stats.claimed += nodes.length;
    for (const node of nodes) if (!this.#codeChecked.has(node.runId)) await this.#checkCode(node.runId);
    // The store returns the best first; a stack pops the last pushed, so push in reverse.
    for (let i = nodes.length - 1; i >= 0; i--) this.#admit(nodes[i] as LeasedNode);
    return nodes.length;
  }

  /**
   * The first time this worker works on a run, it records its task code there and compares it with the code
   * recorded before: the same `version` with other code means stored inputs and results come from code this
   * worker does not run, which `version` and `migrate` exist to handle.
   */
  async #checkCode(runId: string): Promise<void> {
    this.#codeChecked.add(runId);
    const task = this.#task;
    const before = await this.#store.recordRunCode(runId, { version: task.version, hash: task.codeHash, passDead: task.passDead });
    if (!before || before.version !== task.version || before.hash === task.codeHash) return;
    const message =
      `Task ${task.name} version ${task.version}: its code (run, combine, key or migrate) differs from the code that worked on run ${runId} before, ` +
      `under the same version. Nodes already done keep what the old code computed, and stored inputs are not migrated. If the shape of inputs, ` +
      `contexts or results changed, bump \`version\` (to ${task.version + 1}) and add \`migrate[${task.version}]\`; otherwise this warning can be ignored.`;
    this.#log.warn({ runId, task: task.name, version: task.version, codeHash: task.codeHash, recordedCodeHash: before.hash }, message);
    // Without a logger the warning would go nowhere: a library user still sees it once, on stderr.
    if (!this.#o.logger) process.emitWarning(message, { code: 'RLM_CODE_CHANGED' });
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
      journalEmpty: false,
      context: null,
      encodedContext: leased.context,
    };
    if (join) {
      node.childResults = join.results;
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
    // Backpressure: a full group waits while the store holds as many commits as it may, so memory stays bounded.
    if (this.#commitsInFlight >= this.#maxInFlight && this.#opSteps >= this.#o.commitEverySteps) return;
    // Keyed children wait for a commit before they run (see #limboFull): past a point, so do new steps.
    if (this.#limboFull()) return;
    if (this.#suspects.length > 0) {
      if (this.#inflight > 0) return;
      this.#afterSuspects = true;
      const suspect = this.#suspects.shift() as WindowNode;
      this.#isolating = true;
      this.#start(suspect);
      return;
    }
    if (this.#afterSuspects) {
      // Only committed outcomes stop a suspect from being blamed or re-run: commit them first (the loop does).
      if (this.#inflight > 0 || this.#ops.length > 0 || this.#committing) return;
      this.#afterSuspects = false;
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
    if (node.suspect) this.#isolating = false;
    if (
      this.#opSteps >= this.#o.commitEverySteps ||
      (this.#inflight === 0 && this.#window.size === 0 && this.#suspects.length === 0) ||
      this.#limboFull()
    ) {
      void this.#commit();
    } else if (!this.#commitTimer && this.#ops.length > 0) {
      this.#commitTimer = setTimeout(() => {
        this.#commitTimer = null;
        void this.#commit();
      }, this.#o.commitEveryMs);
    }
    // Refill at once; the loop is needed only when nothing can start.
    if (!this.#stopping && !this.#fatal) this.#fill();
    if (this.#inflight === 0 || this.#stopping || this.#fatal) this.#signal();
  }

  // ---------------------------------------------------------------- commit

  #push(op: CommitOp): Promise<CommitResult> {
    if (op.kind === 'step') {
      const early = this.#early.get(op.nodeId);
      if (early && !this.#pushEarly(op, early)) return this.#nextCommit.promise;
      this.#opSteps++;
      const row = this.#buffered.get(op.nodeId);
      if (row && (op.outcome.type === 'done' || op.outcome.type === 'wait')) {
        // Born and finished within one group: write the row once, in its final state.
        row.state = op.outcome.type === 'done' ? 'done' : 'waiting';
        row.result = op.outcome.result;
        row.attempts = op.attempts;
        op.merged = true;
      }
    }
    if (op.kind !== 'effect') for (const child of op.children) this.#buffered.set(child.id, child);
    this.#ops.push(op);
    return this.#nextCommit.promise;
  }

  /** An early combine finished. Returns whether its op goes into the buffer now. */
  #pushEarly(op: StepOp, early: { node: WindowNode; ready: boolean; op: StepOp | null }): boolean {
    const row = this.#buffered.get(op.nodeId);
    if (row) {
      this.#early.delete(op.nodeId);
      // Merged into the parent's row when done; a failure is dropped, and the store makes the parent ready
      // at commit, so the combine runs again the ordinary way with its attempt counted.
      return op.outcome.type === 'done';
    }
    if (early.ready) {
      this.#early.delete(op.nodeId);
      op.epoch = early.node.epoch;
      return true;
    }
    // The parent's group is being committed: wait for the store to lease the parent here.
    early.op = op;
    return false;
  }

  /** Commits the buffered group; resolves when it (and any commit before it) is durable. */
  #commit(): Promise<void> {
    if (this.#committing && (this.#commitsInFlight >= this.#maxInFlight || this.#opSteps < this.#o.commitEverySteps)) {
      // The next group is sent when a commit ends and finds the buffer non-empty; only a full group goes out
      // while another is in flight (a partial one, such as an effect's, gathers more ops meanwhile).
      return this.#committing;
    }
    if (this.#commitTimer) {
      clearTimeout(this.#commitTimer);
      this.#commitTimer = null;
    }
    if (this.#ops.length === 0) return this.#committing ?? Promise.resolve();
    const ops = this.#ops;
    const deferred = this.#nextCommit;
    this.#ops = [];
    this.#opSteps = 0;
    this.#buffered = new Map();
    this.#nextCommit = new Deferred<CommitResult>();
    const started = performance.now();
    // Sent now, so groups reach the store in the order they were cut; their results are taken in that order too.
    const sent = (async () => this.#store.commit(this.#id, ops))();
    const previous = this.#committing;
    this.#commitsInFlight++;
    let committing: Promise<void> | null = null;
    committing = (async () => {
      try {
        const result = await sent;
        if (previous) await previous;
        if (this.#fatal) throw this.#fatal;
        this.stats.commits++;
        this.#o.metrics?.commitDuration.observe((performance.now() - started) / 1000);
        this.#o.metrics?.commitBatch.observe(ops.length);
        this.#afterCommit(ops, result);
        deferred.resolve(result);
        if (this.#o.compactEveryCommits > 0 && this.stats.commits % this.#o.compactEveryCommits === 0) await this.#compact();
      } catch (error) {
        deferred.reject(error);
        this.#die(error);
      } finally {
        // Steps and commits can run on promise callbacks alone, which never let timers fire: give the event
        // loop one full turn per group so heartbeats, the memory check and progress output keep their pace.
        await new Promise<void>((resolve) => setImmediate(resolve));
        this.#commitsInFlight--;
        if (this.#committing === committing) this.#committing = null;
        this.#signal();
      }
    })();
    this.#committing = committing;
    return committing;
  }

  #afterCommit(ops: readonly CommitOp[], result: CommitResult): void {
    const pending = result.frontier ? Object.values(result.frontier) : [];
    if (pending.length > 0) this.#frontierLow = pending.some((n) => n < this.#peers * this.#o.concurrency * 2);
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
          // A shared child finishes elsewhere (or has): the parent's combine reads its results from the store.
          else this.#joins.delete(op.nodeId);
        }
      }
    }
    if (this.#idEnd - this.#idNext < 16_384 && this.#spareIds.length === 0 && !this.#reserving) {
      this.#reserving = this.#reserveIds().finally(() => {
        this.#reserving = null;
      });
    }
    for (const leased of result.ready) {
      const early = this.#early.get(leased.id);
      if (early) {
        early.node.epoch = leased.epoch;
        early.ready = true;
        if (early.op) {
          this.#early.delete(leased.id);
          early.op.epoch = leased.epoch;
          this.#push(early.op);
        }
        continue;
      }
      const join = this.#joins.get(leased.id);
      this.#joins.delete(leased.id);
      this.#admit(leased, join && join.remaining === 0 ? join : undefined);
    }
  }

  /** Prunes finished subtrees of the runs this worker serves, so a long run's store stays bounded. */
  async #compact(): Promise<void> {
    if (!this.#store.compact) return;
    for (const runId of this.#runIds ?? []) {
      const { deleted, pruned } = await this.#store.compact(runId);
      this.#log.debug({ runId, deleted, pruned }, 'Compacted finished subtrees.');
    }
  }

  // ---------------------------------------------------------------- one step

  async #step(node: WindowNode): Promise<void> {
    const task = this.#task;
    const limits = task.limits;
    if (node.suspect && node.attempts >= limits.maxAttempts) {
      const error = this.#errorEntry(node.attempts, {
        message: `The step crashed its worker process on ${limits.maxAttempts} attempts (a poison pill); it is not run again.`,
        code: 'CRASHED',
        stack: null,
      });
      this.#push(this.#stepOp(node, { type: 'dead', error }, limits.maxAttempts, [], []));
      return;
    }
    const attempt = node.attempts + 1;
    if (node.suspect) this.#flight.mark(node);
    const started = this.#o.metrics ? performance.now() : 0;
    const span = this.#tracing
      ? startSpan(node.phase === 'combine' ? SPAN.combine : SPAN.step, contextFromTraceparent(node.traceparent), {
          [ATTR.runId]: node.runId,
          [ATTR.nodeId]: node.id,
          [ATTR.depth]: node.depth,
          [ATTR.attempt]: attempt,
        })
      : undefined;
    const step = new Step(this.#host, node, attempt, span);
    let outcome: StepOutcome;
    let attempts = attempt;
    let deadline: NodeJS.Timeout | undefined;
    try {
      let work = this.#runPhase(node, step);
      if (limits.timeoutMs > 0 && work instanceof Promise) {
        let expire: (error: unknown) => void = () => undefined;
        const expired = new Promise<never>((_, reject) => (expire = reject));
        deadline = setTimeout(() => {
          const error = new DeadlineError(limits.timeoutMs);
          step.abort(error);
          expire(error);
        }, limits.timeoutMs);
        work = Promise.race([work, expired]);
      }
      outcome = work instanceof Promise ? await work : work;
    } catch (thrown) {
      outcome = this.#failure(node, attempt, thrown);
      if (outcome.type === 'dead' && (thrown as RlmError)?.code === 'INVALID_INPUT' && node.phase === 'run') attempts = node.attempts;
      // A late handler may still touch these: the failed outcome gets fresh, empty ones.
      step.children = [];
      step.emits = [];
      step.born = [];
      span?.recordException(describeThrown(thrown).message);
    } finally {
      step.finish();
      if (deadline) clearTimeout(deadline);
      if (node.suspect) this.#flight.mark(null);
    }
    if (span) endSpan(span);
    if (this.#o.metrics) {
      this.#o.metrics.stepDuration.observe((performance.now() - started) / 1000);
      this.#o.metrics.steps.inc({ outcome: outcome.type });
    }
    if (outcome.type === 'park') attempts = node.attempts;
    this.#push(this.#stepOp(node, outcome, attempts, step.children, step.emits));
    if (outcome.type === 'done') this.#recordForJoin(node, step.value);
    else if (outcome.type === 'wait') this.#openJoin(node, step.children, step.born.length);
    // Born-leased children may run before their parent's group commits, always in a later position of the
    // same or a later group; a commit that rejects the parent rejects them too, since their rows never existed.
    if (outcome.type === 'done' || outcome.type === 'wait') {
      for (const child of step.born) {
        if (this.#task.keyed) this.#limbo.set(child.id, child);
        else this.#window.push(child);
      }
    }
  }

  #stepOp(node: WindowNode, outcome: StepOutcome, attempts: number, children: NewNode[], emits: Payload[]): StepOp {
    return { kind: 'step', runId: node.runId, nodeId: node.id, epoch: node.epoch, outcome, attempts, children, emits, waits: this.#task.waits, passDead: this.#task.passDead };
  }

  /** A finished child whose parent waits here: keep its result for the parent's combine. */
  #recordForJoin(node: WindowNode, value: unknown): void {
    if (node.parentId === null) return;
    const join = this.#joins.get(node.parentId);
    if (!join) return;
    if (join.results[node.ord] === undefined) join.remaining--;
    join.results[node.ord] = value ?? null;
    if (join.remaining > 0) return;
    const row = this.#buffered.get(node.parentId);
    if (row?.state !== 'waiting') return;
    // Every child finished within the parent's own group: combine now, and write the parent once, done.
    this.#joins.delete(node.parentId);
    const parent = join.node;
    parent.phase = 'combine';
    parent.childResults = join.results;
    this.#early.set(parent.id, { node: parent, ready: false, op: null });
    this.#window.push(parent);
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

  /** Runs the handler; returns synchronously when the handler and the gate do. */
  #runPhase(node: WindowNode, step: Step): StepOutcome | Promise<StepOutcome> {
    const input = node.validated ? node.input : this.#input(node);
    if (input instanceof Promise) return input.then((value) => this.#runHandler(node, step, value));
    return this.#runHandler(node, step, input);
  }

  #runHandler(node: WindowNode, step: Step, input: unknown): StepOutcome | Promise<StepOutcome> {
    const task = this.#task.task;
    if (node.phase === 'combine') {
      return this.#childResults(node).then(async (results) => {
        const value = await (task.combine as NonNullable<typeof task.combine>)(input, results, step);
        step.value = value;
        return { type: 'done', result: encodeOptional(this.#task.codec, value, 'The result of combine') };
      });
    }
    const output = task.run(input, step);
    if (isThenable(output)) return Promise.resolve(output).then((value) => this.#afterRun(node, step, value));
    return this.#afterRun(node, step, output);
  }

  #afterRun(node: WindowNode, step: Step, output: StepResult<unknown, unknown> | undefined): StepOutcome | Promise<StepOutcome> {
    if (output !== undefined && (typeof output !== 'object' || output === null)) {
      throw new NonRetryableError(`run() of ${this.#task.name} must return { result?, children? } or nothing, got ${output === null ? 'null' : typeof output}.`);
    }
    const result = encodeOptional(this.#task.codec, output?.result, 'The result');
    step.value = output?.result;
    if (output?.children === undefined || output.children === null) return { type: 'done', result };
    const spawned = this.#spawn(node, step, output.children);
    if (spawned instanceof Promise) return spawned.then((n) => this.#spawnOutcome(step, n, result));
    return this.#spawnOutcome(step, spawned, result);
  }

  #spawnOutcome(step: Step, spawned: number | 'alarm', result: Payload | null): StepOutcome {
    if (spawned === 'alarm') {
      // Nothing of an alarmed step is persisted (children, records): a person decides first, and an
      // approved step runs again from the start.
      step.children = [];
      step.born = [];
      step.emits = [];
      return {
        type: 'park',
        reason: `fan-out alarm: the step spawned more than maxChildren (${this.#task.limits.maxChildren}) children; approve or reject it`,
        pauseRun: true,
      };
    }
    return spawned > 0 && this.#task.waits ? { type: 'wait', result } : { type: 'done', result };
  }

  /**
   * Opens an in-memory join when every child of the step was born here and leased. A keyed child that turns out
   * to exist already (a shared node) closes its parent's join when the commit says so (see #afterCommit).
   */
  #openJoin(node: WindowNode, children: NewNode[], born: number): void {
    if (children.length !== born || node.spawned > 0 || this.#joins.size >= (this.#task.keyed ? this.#o.windowSize : 100_000)) return;
    for (const child of children) if (child.state !== 'running') return;
    this.#joins.set(node.id, { results: new Array(children.length), remaining: children.length, node });
  }

  async #childResults(node: WindowNode): Promise<unknown[]> {
    if (node.childResults) {
      const results = node.childResults;
      node.childResults = undefined;
      return results;
    }
    const rows = await this.#store.childResults(node.id);
    return rows.map((row): unknown => {
      if (row.state === 'dead') return { failed: true, key: row.key, error: row.error ?? 'dead' } satisfies ChildFailure;
      return row.result === null ? null : decode(row.result);
    });
  }

  /** Turns the handler's children into rows. Returns how many were spawned, or 'alarm' past the fan-out bound. */
  #spawn(node: WindowNode, step: Step, source: unknown): number | 'alarm' | Promise<number | 'alarm'> {
    const task = this.#task;
    const limit = task.limits.maxChildren;
    if (source === null || typeof source !== 'object') throw new NonRetryableError(`run() of ${task.name} returned \`children\` that is not an array or iterable.`);
    if (Array.isArray(source) && source.length - node.spawned > limit && !node.fanoutApproved) return 'alarm';
    if (!(Symbol.iterator in source)) {
      if (Symbol.asyncIterator in source) return this.#spawnAsync(node, step, source as AsyncIterable<ChildSpec<unknown>>);
      throw new NonRetryableError(`run() of ${task.name} returned \`children\` that is not an array or iterable.`);
    }
    // Synchronous children: no promise per child unless the schema validates asynchronously.
    const iterator = (source as Iterable<ChildSpec<unknown>>)[Symbol.iterator]();
    const traceparent = step.childTraceparent();
    let ord = 0;
    for (;;) {
      const next = iterator.next();
      if (next.done) return ord;
      if (ord < node.spawned) {
        ord++;
        continue;
      }
      if (ord >= limit && !node.fanoutApproved) return 'alarm';
      const row = this.#child(node, next.value, ord, traceparent, step.born);
      ord++;
      if (row instanceof Promise || (!Array.isArray(source) && node.fanoutApproved)) {
        // The rest goes the asynchronous way: chunked persistence or async validation.
        return (async () => {
          step.children.push(await row);
          return this.#spawnRest(node, step, { [Symbol.asyncIterator]: () => toAsync(iterator) }, ord, traceparent);
        })();
      }
      step.children.push(row);
    }
  }

  #spawnAsync(node: WindowNode, step: Step, source: AsyncIterable<ChildSpec<unknown>>): Promise<number | 'alarm'> {
    return this.#spawnRest(node, step, source, 0, step.childTraceparent());
  }

  /** Spawns from an async source; once approved past the bound, persists children in chunks as it goes. */
  async #spawnRest(node: WindowNode, step: Step, source: AsyncIterable<ChildSpec<unknown>>, firstOrd: number, traceparent: string | null): Promise<number | 'alarm'> {
    const task = this.#task;
    const limit = task.limits.maxChildren;
    const chunked = node.fanoutApproved;
    const rows = step.children;
    let ord = firstOrd;
    for await (const spec of source) {
      if (ord < node.spawned) {
        ord++;
        continue;
      }
      if (ord >= limit && !node.fanoutApproved) return 'alarm';
      rows.push(await this.#child(node, spec, ord, traceparent, step.born));
      ord++;
      if (chunked && rows.length >= this.#o.spawnChunk) {
        const spawnOp = { kind: 'spawn' as const, runId: node.runId, nodeId: node.id, epoch: node.epoch, children: rows.splice(0), spawned: ord, waits: task.waits, passDead: task.passDead };
        const result = await this.#pushAndCommit(spawnOp);
        if (result.rejected.includes(node.id)) throw new StaleLeaseError(node.id, node.epoch);
        this.#bornCommitted(spawnOp.children, step.born, result);
        step.born.length = 0;
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

  /**
   * Buffers an op that must be durable before its step goes on (an effect's journal entry, a spawned chunk)
   * and commits soon: ops pushed in the same turn of the event loop share one commit (and one fsync).
   */
  async #pushAndCommit(op: CommitOp): Promise<CommitResult> {
    const promise = this.#push(op);
    if (!this.#commitSoon) {
      this.#commitSoon = new Promise<void>((resolve) =>
        setImmediate(() => {
          this.#commitSoon = null;
          resolve();
        }),
      );
    }
    await this.#commitSoon;
    while (this.#ops.includes(op)) await this.#commit();
    return promise;
  }

  #nextId(): number {
    if (this.#idNext >= this.#idEnd) throw new Error('No node ids reserved.');
    return this.#idNext++;
  }

  /** Reserves node ids ahead, so spawning a child never waits for the store. */
  async #reserveIds(): Promise<void> {
    const block = 65_536;
    const first = await this.#store.allocateIds(block);
    if (this.#idNext >= this.#idEnd) {
      this.#idNext = first;
      this.#idEnd = first + block;
    } else {
      this.#spareIds.push([first, first + block]);
    }
  }

  #child(parent: WindowNode, spec: ChildSpec<unknown>, ord: number, traceparent: string | null, born: WindowNode[]): NewNode | Promise<NewNode> {
    const task = this.#task;
    if (this.#idNext >= this.#idEnd) {
      const spare = this.#spareIds.shift();
      if (!spare) return this.#reserveIds().then(() => this.#child(parent, spec, ord, traceparent, born));
      [this.#idNext, this.#idEnd] = spare;
    }
    const id = this.#nextId();
    const depth = parent.depth + 1;
    const row: NewNode = {
      id,
      parentId: parent.id,
      ord,
      key: `${parent.key}/${ord}`,
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
    let validated: unknown;
    try {
      const codec = task.codec;
      if (spec.context !== undefined) {
        context = spec.context;
        row.context = codec.encode(spec.context, `The context of child ${ord}`);
      } else {
        row.context = parent.encodedContext;
      }
      const input = codec.encode(spec.input, `The input of child ${ord}`);
      row.input = input;
      // The child runs on the stored form of its input, so its first attempt sees exactly what a retry
      // after a crash will decode (-0 becomes 0, undefined fields vanish).
      const stored = typeof input === 'string' ? (JSON.parse(input) as unknown) : decode(input);
      if (task.keyed) {
        row.key = task.keyOf(stored);
        row.keyed = true;
      }
      validated = task.validate(stored);
    } catch (error) {
      return dead(error);
    }
    const finish = (input: unknown): NewNode => {
      try {
        row.priority = task.priorityOf(input, depth, context);
      } catch (error) {
        return dead(error);
      }
      if (depth > task.limits.maxDepth) {
        const error = new RlmError(`Child at depth ${depth} is deeper than limits.maxDepth (${task.limits.maxDepth}).`, 'DEPTH');
        return dead(error, task.depthPolicy === 'park' ? 'parked' : 'dead');
      }
      if (this.#stopping || this.#window.size + born.length + this.#limbo.size >= this.#room()) {
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
        journalEmpty: !task.keyed,
        context,
        encodedContext: row.context,
      });
      return row;
    };
    if (validated instanceof Promise) return validated.then(finish, (error: unknown) => dead(error));
    return finish(validated);
  }

  // ---------------------------------------------------------------- effects

  async #effect<T>(node: WindowNode, name: string, fn: (idempotencyKey: string) => Promise<T> | T): Promise<T> {
    const idempotencyKey = `${node.runId}:${node.key}:${name}`;
    const journaled = node.journalEmpty ? undefined : await this.#store.getEffect(node.runId, node.key, name);
    node.journalEmpty = false;
    if (journaled) return decode(journaled.value) as T;
    if (failpoints.active) failpoints.hit('effect.beforeCall');
    this.#o.metrics?.effectCalls.inc();
    const value = await fn(idempotencyKey);
    if (failpoints.active) failpoints.hit('effect.afterCall');
    const encoded = this.#task.codec.encode(value, `The value of effect '${name}'`);
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
      await Promise.race([this.#sleep(), new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(1, deadline - Date.now()))))]);
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

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<unknown>).then === 'function';
}

async function* toAsync<T>(iterator: Iterator<T>): AsyncGenerator<T> {
  for (;;) {
    const next = iterator.next();
    if (next.done) return;
    yield next.value;
  }
}

/** What a step needs from its worker. */
interface StepHost {
  readonly log: Logger;
  readonly controllers: Set<AbortController>;
  readonly codec: Codec;
  stopping(): boolean;
  effect<T>(node: WindowNode, name: string, fn: (idempotencyKey: string) => Promise<T> | T): Promise<T>;
}

/** One attempt at a node: the `ctx` its handler sees, and what it produces. */
class Step implements TaskContext {
  readonly runId: string;
  readonly nodeId: number;
  readonly key: string;
  readonly depth: number;
  readonly attempt: number;
  readonly context: Json;
  readonly traceId: string;
  emits: Payload[] = [];
  children: NewNode[] = [];
  born: WindowNode[] = [];
  /** The step's result as the handler returned it (checked by the codec). */
  value: unknown;
  readonly #host: StepHost;
  readonly #node: WindowNode;
  readonly #span: Span | undefined;
  #finished = false;
  #controller: AbortController | undefined;
  #abortReason: unknown;
  #effects: Set<string> | undefined;
  #log: Logger | undefined;

  constructor(host: StepHost, node: WindowNode, attempt: number, span: Span | undefined) {
    this.#host = host;
    this.#node = node;
    this.#span = span;
    this.runId = node.runId;
    this.nodeId = node.id;
    this.key = node.key;
    this.depth = node.depth;
    this.attempt = attempt;
    this.context = node.context;
    this.traceId = span ? span.spanContext().traceId : (node.traceparent?.slice(3, 35) ?? '');
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#abortReason !== undefined) this.#controller.abort(this.#abortReason);
      else if (this.#host.stopping()) this.#controller.abort(new RlmError('The worker is stopping.', 'HANDLER'));
      if (!this.#finished) this.#host.controllers.add(this.#controller);
    }
    return this.#controller.signal;
  }

  get log(): Logger {
    this.#log ??= this.#host.log.child({ runId: this.runId, nodeId: this.nodeId, key: this.key, depth: this.depth, attempt: this.attempt, traceId: this.traceId });
    return this.#log;
  }

  emit(record: unknown): void {
    if (this.#finished) throw new RlmError(`ctx.emit was called after the step of node ${this.nodeId} ended; records must be emitted before the step returns.`, 'HANDLER');
    this.emits.push(this.#host.codec.encode(record, 'An emitted record'));
  }

  effect<T>(name: string, fn: (idempotencyKey: string) => Promise<T> | T): Promise<T> {
    if (this.#finished) return Promise.reject(new RlmError(`ctx.effect('${name}') was called after the step of node ${this.nodeId} ended.`, 'HANDLER'));
    this.#effects ??= new Set();
    if (this.#effects.has(name)) {
      return Promise.reject(new NonRetryableError(`ctx.effect('${name}') was called twice in one step; give each effect of a step its own name.`));
    }
    this.#effects.add(name);
    return this.#host.effect(this.#node, name, fn);
  }

  /** Aborts `signal` (the deadline passed). */
  abort(reason: unknown): void {
    this.#abortReason = reason;
    this.#controller?.abort(reason);
  }

  finish(): void {
    this.#finished = true;
    if (this.#controller) this.#host.controllers.delete(this.#controller);
  }

  /** The traceparent children store: this step's span, or the node's own trace without an SDK. */
  childTraceparent(): string | null {
    return this.#span ? traceparentOf(trace.setSpan(context.active(), this.#span)) : this.#node.traceparent;
  }
}
