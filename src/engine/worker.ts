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
import type { CommitOp, CommitResult, ErrorEntry, LeasedNode, NewNode, Payload, RunState, Store, StepOp, StepOutcome } from '../store/store.js';
import { COST_EFFECT_PREFIX, signalWaitReason } from '../store/charges.js';
import { failpoints } from '../failpoints.js';
import type { Logger } from '../observe/logger.js';
import { silentLogger } from '../observe/logger.js';
import { ATTR, SPAN } from '../observe/names.js';
import { contextFromTraceparent, endSpan, startSpan, traceIdOf, tracingEnabled, traceparentOfSpan } from '../observe/tracing.js';
import { type Codec, decode, encodeOptional } from './codec.js';
import { GroupGates } from './groups.js';
import { CostBudgetError, describeThrown, NeedsApproval, WaitingForSignal, NonRetryableError, RetryLater, RlmError, StaleLeaseError, StoreCorruptError, StoreIoError } from './errors.js';
import { FlightRecorder, readFlight } from './flight.js';
import { BoundedMap } from './bounded-map.js';
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
  /** A keyed child running before the commit that says whether its key was new (see #unconfirmed). */
  unconfirmed?: Unconfirmed;
  /** A speculative keyed child whose key existed: its outcome, and its children's, are thrown away. */
  discarded?: boolean;
  /** A speculative node's result, remembered for combines once its key is known to be new. */
  result?: { value: unknown; bytes: number };
  /** The group its steps count against (see GroupGates): unknown until its input is, null for none. */
  group?: string | null;
  /** Its next step holds a slot (and a token) of its group. */
  admitted?: boolean;
}

/** A keyed parent waiting here: its children's run-and-key ids in order, those not yet remembered, the node. */
interface WaitingParent {
  ids: string[];
  pending: Set<string>;
  node: WindowNode;
}

/** The commit that decides a speculative keyed child: the op that carries its row, and its verdict. */
interface Unconfirmed {
  op: CommitOp;
  created: Deferred<boolean>;
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
  /** Each group's share of capacity held here, and the nodes waiting for it (a task with `groups` only). */
  readonly #gates: GroupGates<WindowNode> | null;
  readonly #suspects: WindowNode[] = [];
  /**
   * Keyed children born here whose parent's group has not committed yet. They run at once, speculatively: a key
   * this worker has not spawned before is almost always new. When the commit says the key existed, the node
   * is discarded (its outcome, records and children are never written: the store rejects them, their rows
   * do not exist), and before its first effect a speculative node waits for the verdict, so no effect ever
   * runs for a duplicate.
   */
  readonly #unconfirmed = new Map<number, WindowNode>();
  /**
   * Per run, 30-bit hashes of the keys this worker has spawned or claimed. A key found here exists (or will,
   * once its group commits): the child is written as pending, for the store to link to the existing node, and
   * never runs here. A hash collision only sends a new child to the frontier instead of this window.
   */
  readonly #knownKeys = new Map<string, Set<number>>();
  readonly #joins = new Map<number, Join>();
  /**
   * A memoised DAG's combines, decided here. A shared child has several parents, so the store decides when a
   * parent's last child is done — one commit per level of the DAG, a long chain of commits on a deep one. The
   * worker also remembers the results of keyed nodes finished here (by run and key, only once their keys are
   * known to be new) and the child keys of keyed parents waiting here. When every child of a waiting parent
   * has a remembered result, the parent's combine runs at once and commits as StepOp.ifReady: the store
   * applies it only if nothing the parent waits on is left by then, so a wave of combines up the DAG commits
   * in one group. A parent the store made ready meanwhile keeps its lease and the combine's outcome (#ahead).
   * A combine the store leases here reads the remembered results instead of the store. All bounded; a miss
   * only takes the store's way.
   */
  readonly #keyedResults = new BoundedMap<string, unknown>({ maxEntries: KEYED_MEMORY.entries, maxBytes: KEYED_MEMORY.bytes });
  readonly #keyedChildren = new BoundedMap<number, WaitingParent>({
    maxEntries: KEYED_MEMORY.entries,
    maxBytes: KEYED_MEMORY.bytes,
    // The oldest parent goes first: one still waiting after so many others is likely blocked (a dead child).
    onEvict: (parentId, entry) => this.#unlinkParent(parentId, entry),
  });
  /** Run and key → the waiting parents in #keyedChildren that list it. */
  readonly #waitingOn = new Map<string, number[]>();
  /** Combines started before the store made their node ready: their op (once produced) and the lease that came. */
  readonly #ahead = new Map<number, { op: StepOp | null; leasedEpoch: number | null }>();
  /** Nodes whose combine ran ahead and was rejected: their rejection is not a fencing. */
  readonly #aheadRejected = new Set<number>();
  /** Discarded speculative nodes whose rejected writes may still come back from a commit. */
  readonly #discarded = new Set<number>();
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
  /**
   * Stopping at once (a second signal, or the grace period ran out): steps still in flight are handed back with
   * their leases, uncounted, whatever they end with; a failure they report now is our shutdown, not theirs.
   */
  #aborting = false;
  /**
   * Runs a commit said are no longer running: paused or cancelled by a person, or ended. No step of theirs starts
   * here; each of their nodes the window holds is handed back by a release op in the next group (see #handBack).
   */
  readonly #halted = new Set<string>();
  /** Runs this worker has worked on, compacted every `compactEveryCommits` commits (all its runs under `rlm worker`). */
  readonly #served = new Set<string>();
  /**
   * Runs with a node budget: their children go to the store's frontier rather than this window, so the store
   * counts (and parks) each one before it runs; the budget holds exactly.
   */
  readonly #budgeted = new Set<string>();
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
    this.#gates = this.#task.grouped
      ? new GroupGates<WindowNode>({
          store: this.#store,
          workerId: () => this.#id,
          leaseMs: this.#o.leaseMs,
          pollMs: Math.max(20, this.#o.pollMs),
          concurrency: this.#o.concurrency,
          limitsOf: (group) => this.#task.groupLimits(group),
          onReady: (nodes) => this.#groupReady(nodes),
          onError: (error) => this.#die(error),
        })
      : null;
    this.#host = {
      log: this.#log,
      controllers: this.#controllers,
      codec: this.#task.codec,
      stopping: () => this.#aborting,
      effect: (node, name, fn) => this.#effect(node, name, fn),
      charge: (node, name, kind, amount) => this.#charge(node, name, kind, amount),
      signal: (node, name) => this.#store.getSignal(node.runId, name),
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
      this.#gates?.clear();
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

  /** A second signal: stop now. In-flight steps are aborted and handed back uncounted; finished ones commit. */
  abortNow(): void {
    this.#aborting = true;
    for (const controller of this.#controllers) controller.abort(new RlmError('The worker is stopping.', 'HANDLER'));
    this.#stopping ??= 'signal';
    this.#signal();
  }

  /** Stops the worker as a store failure would: nothing more commits, and run() rejects with `error`. */
  fail(error: unknown): void {
    this.#die(error);
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
    const workers = await this.#store.listWorkers({ alive: true });
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
      await this.#gates?.renew();
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
    // Nothing commits from here on: every step waiting on a commit, or on its key's verdict, is let go.
    for (const node of this.#unconfirmed.values()) this.#discard(node);
    this.#unconfirmed.clear();
    this.#nextCommit.reject(this.#fatal);
    this.#nextCommit = new Deferred<CommitResult>();
    for (const controller of this.#controllers) controller.abort(this.#fatal);
    this.#signal();
  }

  /** Lost every lease: what is in memory is someone else's now. */
  #dropEverything(): void {
    this.#window = this.#newWindow();
    this.#suspects.length = 0;
    this.#gates?.clear();
    for (const node of this.#unconfirmed.values()) this.#discard(node);
    this.#unconfirmed.clear();
    this.#knownKeys.clear();
    this.#keyedResults.clear();
    this.#keyedChildren.clear();
    this.#waitingOn.clear();
    this.#ahead.clear();
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
      if (this.#ops.length > 0) {
        await this.#commit();
        continue;
      }
      if (this.#window.size > 0 || this.#suspects.length > 0) continue;
      const claimed = this.#claimRoom() > 0 ? await this.#claim() : 0;
      if (claimed > 0) continue;
      if (this.#untilRunsEnd && (await this.#runsEnded())) {
        this.#stopping = 'finished';
        return;
      }
      await this.#idle();
    }
  }

  async #idle(): Promise<void> {
    const wake = await this.#nextWake();
    if (this.#store.waitForWork) {
      await Promise.race([this.#sleep(), this.#store.waitForWork(Math.min(this.#o.pollMs * 10, wake ?? Number.POSITIVE_INFINITY))]);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#sleep(), new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(this.#o.pollMs, wake ?? 0))))]);
    clearTimeout(timer);
  }

  /**
   * With nothing to claim, how long until the earliest durable timer of this worker's runs, up to a second (a
   * person's redrive or approve is seen within it); null when none waits. A run with only timers left then
   * sleeps rather than polls.
   */
  async #nextWake(): Promise<number | null> {
    if (!this.#runIds) return null;
    let at = Number.POSITIVE_INFINITY;
    for (const runId of this.#runIds) at = Math.min(at, (await this.#store.nextWake(runId))?.at ?? Number.POSITIVE_INFINITY);
    return at === Number.POSITIVE_INFINITY ? null : Math.min(1_000, Math.max(1, at - Date.now()));
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

  /** Enough nodes to keep `concurrency` steps busy; a claim with peers takes no more, so nobody drains the frontier. */
  #busyRoom(): number {
    return Math.min(this.#o.windowSize, this.#o.concurrency * 4);
  }

  /** How many nodes a claim may take now: nodes waiting for their group count as held. */
  #claimRoom(): number {
    const held = this.#window.size + (this.#gates?.waiting ?? 0);
    const room = (this.#peers > 0 ? this.#busyRoom() : this.#o.windowSize) - held;
    return this.#gates && this.#gates.waiting > 0 ? room : Math.max(1, room);
  }

  async #claim(): Promise<number> {
    const nodes = await this.#store.claimNodes(
      this.#id,
      { task: this.#task.name, maxVersion: this.#task.version, runIds: this.#runIds },
      Math.min(this.#o.claimBatch, this.#claimRoom()),
    );
    this.stats.claimed += nodes.length;
    for (const node of nodes) {
      // Claims only lease nodes of running runs: a halted run that hands out nodes again was resumed.
      if (this.#halted.size > 0) this.#halted.delete(node.runId);
      this.#served.add(node.runId);
      if (!this.#codeChecked.has(node.runId)) await this.#checkCode(node.runId);
    }
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
    const run = await this.#store.getRun(runId);
    if (run && run.nodeBudget !== null) this.#budgeted.add(runId);
    const task = this.#task;
    const before = await this.#store.recordRunCode(runId, { version: task.version, hash: task.codeHash, passDead: task.passDead, workerId: this.#id });
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
    if (this.#task.keyed) this.#keysOf(leased.runId).add(keyHash(leased.key));
    if (node.suspect) this.#suspects.push(node);
    else this.#window.push(node);
  }

  /** Starts steps while there is room. A suspect runs alone. */
  #fill(): void {
    if (this.#stopping || this.#isolating) return;
    // Backpressure: a full group waits while the store holds as many commits as it may, so memory stays bounded.
    if (this.#commitsInFlight >= this.#maxInFlight && this.#opSteps >= this.#o.commitEverySteps) return;
    if (this.#suspects.length > 0) {
      if (this.#inflight > 0) return;
      const suspect = this.#suspects.shift() as WindowNode;
      if (this.#halted.size > 0 && this.#halted.has(suspect.runId)) {
        this.#handBack(suspect);
        this.#fill();
        return;
      }
      this.#afterSuspects = true;
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
      if ((node.unconfirmed && this.#isDiscarded(node)) || node.discarded) {
        this.#unadmit(node);
        continue;
      }
      if (this.#halted.size > 0 && this.#halted.has(node.runId)) this.#handBack(node);
      else if (this.#gates && !node.admitted && node.group !== undefined && !this.#enterGroup(node)) continue;
      else this.#start(node);
    }
  }

  /** Whether the node's group lets its next step start now; if not, the node waits in its group. */
  #enterGroup(node: WindowNode): boolean {
    const gates = this.#gates as GroupGates<WindowNode>;
    if (!gates.admit(node)) return false;
    node.admitted = true;
    return true;
  }

  /** Gives back the group slot a node took for a step it will not run here. */
  #unadmit(node: WindowNode): void {
    if (!node.admitted) return;
    node.admitted = false;
    this.#gates?.finished(node);
  }

  /** Nodes whose group now has room: their slots are taken, they start as soon as this worker can. */
  #groupReady(nodes: WindowNode[]): void {
    for (const node of nodes) {
      node.admitted = true;
      if (node.suspect) this.#suspects.push(node);
      else this.#window.push(node);
    }
    if (!this.#stopping && !this.#fatal) this.#fill();
    this.#signal();
  }

  /**
   * Hands a node of a halted run back to the frontier (pending, its attempt uncounted) with a release op in the
   * next group. As an op it commits after the group that created its row, even when that group is still in flight.
   */
  #handBack(node: WindowNode): void {
    this.#unadmit(node);
    this.#push(this.#stepOp(node, { type: 'release' }, node.attempts, [], []));
  }

  #start(node: WindowNode): void {
    this.#inflight++;
    this.#step(node).then(
      (ran) => this.#finishStep(node, ran),
      (error: unknown) => {
        this.#die(error);
        this.#finishStep(node, true);
      },
    );
  }

  #finishStep(node: WindowNode, ran: boolean): void {
    this.#inflight--;
    // A node that went to wait in its group may already be admitted again, and running: its slot is not ours.
    if (ran) {
      this.stats.steps++;
      this.#unadmit(node);
    }
    if (node.suspect) this.#isolating = false;
    if (this.#opSteps >= this.#o.commitEverySteps || (this.#inflight === 0 && this.#window.size === 0 && this.#suspects.length === 0)) {
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
    if (this.#fatal) {
      const failed = new Deferred<CommitResult>();
      failed.reject(this.#fatal);
      return failed.promise;
    }
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
    if (result.runStates) this.#noteRunStates(result.runStates);
    const pending = result.frontier ? Object.values(result.frontier) : [];
    if (pending.length > 0) this.#frontierLow = pending.some((n) => n < this.#peers * this.#o.concurrency * 2);
    const rejected = result.rejected.length > 0 ? new Set(result.rejected) : undefined;
    if (this.#ahead.size > 0) this.#settleAhead(ops, rejected);
    // A discarded speculative node's writes are rejected by design (its row never existed), and so is a combine
    // run ahead whose node was not ready (see #settleAhead): neither is a fencing.
    const fenced = result.rejected.filter((id) => !this.#discarded.delete(id) && !this.#aheadRejected.delete(id));
    if (fenced.length > 0) {
      // A fenced step's result may not be the one stored: forget every remembered result rather than guess.
      this.#keyedResults.clear();
      this.stats.fenced += fenced.length;
      this.#o.metrics?.fenced.inc(fenced.length);
      this.#log.warn({ nodes: fenced.slice(0, 20), count: fenced.length }, 'Step writes were rejected: their leases had moved on to another worker.');
    }
    if (this.#unconfirmed.size > 0) {
      const duplicates = new Set(result.duplicates);
      for (const op of ops) {
        if (op.kind === 'effect') continue;
        for (const child of op.children) {
          const node = this.#unconfirmed.get(child.id);
          if (!node) continue;
          this.#unconfirmed.delete(child.id);
          const created = !duplicates.has(child.id) && !rejected?.has(op.nodeId);
          node.unconfirmed?.created.resolve(created);
          node.unconfirmed = undefined;
          if (created) {
            if (node.result !== undefined) this.#remember(node, node.result.value, node.result.bytes);
            node.result = undefined;
            continue;
          }
          this.#discard(node);
          // A shared child finishes elsewhere (or has): the parent's combine reads its results from the store.
          this.#joins.delete(op.nodeId);
        }
      }
    }
    // Every verdict is in and nothing is in flight: no rejected write of a discarded node can come back.
    if (this.#unconfirmed.size === 0 && this.#inflight === 0 && this.#commitsInFlight <= 1) this.#discarded.clear();
    if (this.#idEnd - this.#idNext < 16_384 && this.#spareIds.length === 0 && !this.#reserving) {
      this.#reserving = this.#reserveIds().finally(() => {
        this.#reserving = null;
      });
    }
    for (const leased of result.ready) {
      if (this.#ahead.size > 0 && this.#aheadLeased(leased)) continue;
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

  /** A commit tells the state of each run it wrote: a run no longer running starts no new step here. */
  #noteRunStates(states: Record<string, RunState>): void {
    for (const runId in states) {
      if (states[runId] === 'running') {
        this.#halted.delete(runId);
      } else if (!this.#halted.has(runId)) {
        this.#halted.add(runId);
        // Its waiting parents' children are handed back: their joins would never fill here.
        for (const [id, join] of this.#joins) if (join.node.runId === runId) this.#joins.delete(id);
        const state = states[runId];
        if (state === 'paused' || state === 'cancelled') this.#log.info({ runId, state }, `The run is ${state}; this worker starts no new step of it.`);
      }
    }
  }

  /**
   * Throws a speculative node away: it does not run if it has not started, and when it ends its outcome is
   * dropped (see #step). Writes of it already sent are rejected by the store and not counted as fencing.
   */
  #discard(node: WindowNode): void {
    if (node.discarded) return;
    node.discarded = true;
    this.#discarded.add(node.id);
    node.unconfirmed?.created.resolve(false);
    // Its result is not the stored node's (another input may have the same key): never hand it to a combine.
    node.result = undefined;
    this.#keyedResults.delete(`${node.runId}\u0000${node.key}`);
    this.#forgetParent(node.id);
  }

  /** Whether a speculative node, or the speculative node it was born of, was found to be a duplicate. */
  #isDiscarded(node: WindowNode): boolean {
    if (node.discarded) return true;
    if (node.parentId === null || !this.#discarded.has(node.parentId)) return false;
    this.#discard(node);
    return true;
  }

  /** Prunes finished subtrees of the runs this worker serves, so a long run's store stays bounded. */
  async #compact(): Promise<void> {
    if (!this.#store.compact) return;
    for (const runId of this.#runIds ?? [...this.#served]) {
      const { deleted, pruned } = await this.#store.compact(runId);
      this.#log.debug({ runId, deleted, pruned }, 'Compacted finished subtrees.');
      // A run that ended has nothing more to prune once compacted.
      if (!this.#runIds && this.#halted.has(runId)) this.#served.delete(runId);
    }
  }

  // ---------------------------------------------------------------- one step

  async #markAlone(node: WindowNode | null): Promise<void> {
    try {
      await this.#store.markAlone?.(this.#id, node ? { id: node.id, epoch: node.epoch } : null);
    } catch (error) {
      // Without the mark a crash in this step blames nobody: the node stays a suspect and runs alone again.
      this.#log.warn({ err: error }, 'Could not record the suspect this worker runs alone.');
    }
  }

  /** Runs one step of the node; false when it did not start because its group is full (it waits there). */
  async #step(node: WindowNode): Promise<boolean> {
    const task = this.#task;
    const limits = task.limits;
    if (this.#gates && !node.admitted) {
      try {
        if (node.group === undefined) node.group = task.groupOf(node.validated ? node.input : await this.#input(node));
        if (!this.#enterGroup(node)) return false;
      } catch (thrown) {
        // A bad input fails in the step as it always does; a bad group() or groups() dead-letters the node.
        if (node.validated) {
          const error = this.#errorEntry(node.attempts, describeThrown(thrown));
          this.#push(this.#stepOp(node, { type: 'dead', error }, node.attempts, [], []));
          return true;
        }
        node.group = null;
      }
    }
    if (node.suspect && node.attempts >= limits.maxAttempts) {
      const error = this.#errorEntry(node.attempts, {
        message: `The step crashed its worker process on ${limits.maxAttempts} attempts (a poison pill); it is not run again.`,
        code: 'CRASHED',
        stack: null,
      });
      this.#push(this.#stepOp(node, { type: 'dead', error }, limits.maxAttempts, [], []));
      return true;
    }
    const attempt = node.attempts + 1;
    if (node.suspect) {
      this.#flight.mark(node);
      // In the store before the step starts: a worker on another host that takes this lease back once it
      // expires charges the attempt (the flight recorder is seen only on this host).
      await this.#markAlone(node);
    }
    const started = this.#o.metrics ? performance.now() : 0;
    const span = this.#tracing
      ? startSpan(node.phase === 'combine' ? SPAN.combine : SPAN.step, contextFromTraceparent(node.traceparent, node.runId), {
          [ATTR.runId]: node.runId,
          [ATTR.nodeId]: node.id,
          [ATTR.nodeKey]: node.key,
          [ATTR.depth]: node.depth,
          [ATTR.attempt]: attempt,
        })
      : undefined;
    const step = new Step(this.#host, node, attempt, span);
    let outcome: StepOutcome;
    let attempts = attempt;
    let deadline: NodeJS.Timeout | undefined;
    let waitingFor: string | null = null;
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
        // The worker's heartbeat keeps the process up while it runs; a step left behind by a dead worker must not.
        deadline.unref();
        work = Promise.race([work, expired]);
      }
      outcome = work instanceof Promise ? await work : work;
    } catch (thrown) {
      outcome = this.#failure(node, attempt, thrown);
      if (thrown instanceof WaitingForSignal) waitingFor = thrown.signalName;
      if ((outcome.type === 'dead' && (thrown as RlmError)?.code === 'INVALID_INPUT' && node.phase === 'run') || outcome.type === 'release') attempts = node.attempts;
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
    // Done with it, committed or not: a crash from here on (in the commit, say) is not the node's fault.
    if (node.suspect) await this.#markAlone(null);
    if (span) endSpan(span);
    if (this.#o.metrics) {
      this.#o.metrics.stepDuration.observe((performance.now() - started) / 1000);
      this.#o.metrics.steps.inc({ outcome: outcome.type });
    }
    if (outcome.type === 'park') attempts = node.attempts;
    // Stopping at once: a failure now is most likely the abort of our own shutdown. The node stays leased and
    // the release hands it back uncounted, as a crash would.
    if (this.#aborting && (outcome.type === 'retry' || outcome.type === 'dead')) return true;
    // A speculative node whose key existed: nothing of it is written, and its children never run.
    if (node.discarded) return true;
    const op = this.#stepOp(node, outcome, attempts, step.children, step.emits);
    const ahead = this.#ahead.get(node.id);
    if (ahead) {
      if (ahead.leasedEpoch !== null) {
        // The store made the node ready and leased it here while the combine ran: an ordinary outcome now.
        op.epoch = ahead.leasedEpoch;
        this.#ahead.delete(node.id);
      } else if (outcome.type === 'done') {
        op.ifReady = true;
        ahead.op = op;
      } else {
        // A failed combine is not written ahead: the store makes the node ready, and it runs again, counted.
        this.#ahead.delete(node.id);
        return true;
      }
    }
    const pushed = this.#push(op);
    if (waitingFor !== null) this.#wakeIfSent(node, waitingFor, pushed);
    if (outcome.type === 'done') this.#recordForJoin(node, step.value);
    else if (outcome.type === 'wait') this.#openJoin(node, step.children, step.born.length);
    if (this.#task.keyed && this.#task.waits) this.#rememberKeyed(node, outcome, step);
    // Born-leased children may run before their parent's group commits, always in a later position of the
    // same or a later group; a commit that rejects the parent rejects them too, since their rows never existed.
    if (outcome.type === 'done' || outcome.type === 'wait') {
      for (const child of step.born) {
        if (this.#task.keyed) {
          child.unconfirmed = { op, created: new Deferred<boolean>() };
          this.#unconfirmed.set(child.id, child);
        }
        this.#window.push(child);
      }
    }
    return true;
  }

  /**
   * A signal sent between the step's look and its park found nothing parked to wake: once the park commits, the
   * node goes back to the frontier if the signal is there now.
   */
  #wakeIfSent(node: WindowNode, name: string, committed: Promise<CommitResult>): void {
    committed
      .then(async (result) => {
        if (result.rejected.includes(node.id)) return;
        const payload = await this.#store.getSignal(node.runId, name);
        // Sending it again delivers nothing new: it wakes what waits for it.
        if (payload !== undefined) await this.#store.sendSignal(node.runId, name, payload);
      })
      .catch((error: unknown) => {
        if (!this.#fatal) this.#die(error);
      });
  }

  #stepOp(node: WindowNode, outcome: StepOutcome, attempts: number, children: NewNode[], emits: Payload[]): StepOp {
    return { kind: 'step', runId: node.runId, nodeId: node.id, epoch: node.epoch, outcome, attempts, children, emits, waits: this.#task.waits, passDead: this.#task.passDead };
  }

  /** Keeps a keyed node's result, and a waiting keyed parent's child keys, for the combines that need them. */
  #rememberKeyed(node: WindowNode, outcome: StepOutcome, step: Step): void {
    if (outcome.type === 'done') {
      const bytes = payloadBytes(outcome.result);
      // A speculative node's result counts once its key is known to be new (see #afterCommit).
      if (node.unconfirmed) node.result = { value: step.value ?? null, bytes };
      else this.#remember(node, step.value ?? null, bytes);
    } else if (outcome.type === 'wait' && node.spawned === 0) {
      // A key listed twice is one child: the store returns it once.
      const ids = [...new Set(step.children.map((child) => `${node.runId}\u0000${child.key}`))];
      const pending = new Set<string>();
      for (const id of ids) {
        if (this.#keyedResults.has(id)) continue;
        pending.add(id);
        const parents = this.#waitingOn.get(id);
        if (parents) parents.push(node.id);
        else this.#waitingOn.set(id, [node.id]);
      }
      // What an entry holds besides the payloads: the node, its decoded input, the ids and their index entries.
      this.#keyedChildren.set(node.id, { ids, pending, node }, payloadBytes(node.encodedInput) + payloadBytes(node.encodedContext) + 400 + ids.length * 160);
    }
  }

  /** A keyed node's result, known to be stored (or to be, with its group): parents waiting on it may combine. */
  #remember(node: WindowNode, value: unknown, bytes: number): void {
    const id = `${node.runId}\u0000${node.key}`;
    this.#keyedResults.set(id, value, bytes);
    const parents = this.#waitingOn.get(id);
    if (!parents) return;
    this.#waitingOn.delete(id);
    for (const parentId of parents) {
      const entry = this.#keyedChildren.get(parentId);
      if (!entry) continue;
      entry.pending.delete(id);
      if (entry.pending.size > 0) continue;
      const results = this.#takeRemembered(parentId);
      if (!results) continue;
      const parent = entry.node;
      this.#joins.delete(parent.id);
      parent.phase = 'combine';
      parent.attempts = 0;
      parent.suspect = false;
      parent.childResults = results;
      this.#ahead.set(parent.id, { op: null, leasedEpoch: null });
      this.#window.push(parent);
    }
  }

  /** Forgets a waiting keyed parent; returns its children's results in order if every one is remembered. */
  #takeRemembered(parentId: number): unknown[] | undefined {
    const entry = this.#keyedChildren.get(parentId);
    if (!entry) return undefined;
    this.#forgetParent(parentId);
    const results: unknown[] = [];
    for (const id of entry.ids) {
      // Forgotten meanwhile (the map is bounded): the store has it.
      if (!this.#keyedResults.has(id)) return undefined;
      results.push(this.#keyedResults.get(id));
    }
    return results;
  }

  #forgetParent(parentId: number): void {
    const entry = this.#keyedChildren.get(parentId);
    if (!entry) return;
    this.#keyedChildren.delete(parentId);
    this.#unlinkParent(parentId, entry);
  }

  #unlinkParent(parentId: number, entry: WaitingParent): void {
    for (const id of entry.pending) {
      const parents = this.#waitingOn.get(id);
      if (!parents) continue;
      const at = parents.indexOf(parentId);
      if (at >= 0) parents.splice(at, 1);
      if (parents.length === 0) this.#waitingOn.delete(id);
    }
  }

  /**
   * After a commit: each combine run ahead whose op was in it either stood (the node is done) or was rejected
   * (the node was not ready). A rejected one whose node the store leased here since goes again as an ordinary
   * outcome; otherwise the store makes the node ready in its own time. Results remembered may include the
   * rejected combine's: forget them all rather than guess.
   */
  #settleAhead(ops: readonly CommitOp[], rejected: Set<number> | undefined): void {
    for (const op of ops) {
      if (op.kind !== 'step' || !op.ifReady) continue;
      const ahead = this.#ahead.get(op.nodeId);
      if (!ahead || ahead.op !== op) continue;
      this.#ahead.delete(op.nodeId);
      if (!rejected?.has(op.nodeId)) continue;
      this.#aheadRejected.add(op.nodeId);
      if (ahead.leasedEpoch !== null) this.#push({ ...op, epoch: ahead.leasedEpoch, ifReady: false });
      else this.#keyedResults.clear();
    }
  }

  /** The store leased a node whose combine runs ahead here: the combine keeps going under that lease. */
  #aheadLeased(leased: LeasedNode): boolean {
    const ahead = this.#ahead.get(leased.id);
    if (!ahead) return false;
    this.#joins.delete(leased.id);
    if (ahead.op === null) {
      ahead.leasedEpoch = leased.epoch;
    } else if (this.#ops.includes(ahead.op)) {
      ahead.op.epoch = leased.epoch;
      ahead.op.ifReady = false;
      this.#ahead.delete(leased.id);
    } else {
      // Sent already as ifReady, which will be rejected: #settleAhead sends it again under this lease.
      ahead.leasedEpoch = leased.epoch;
    }
    return true;
  }

  /** A finished child whose parent waits here: keep its result for the parent's combine. */
  #recordForJoin(node: WindowNode, value: unknown): void {
    if (node.parentId === null) return;
    const join = this.#joins.get(node.parentId);
    if (!join) return;
    if (join.results[node.ord] === undefined) join.remaining--;
    join.results[node.ord] = value ?? null;
    // Keyed children are unconfirmed until the group commits; a combine must not see a duplicate's result.
    if (join.remaining > 0 || this.#task.keyed) return;
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
    // The handler's own timer, uncounted: not a failure (a charged one is, at the time it asks for).
    if (thrown instanceof RetryLater && !thrown.charge) return { type: 'release', availableAt: thrown.at };
    // Held for a person, uncounted: the handler's own gate, or a reservation past the run's cost budget.
    if (thrown instanceof NeedsApproval) return { type: 'park', reason: `gate: ${thrown.message}`, pauseRun: false };
    if (thrown instanceof CostBudgetError) return { type: 'park', reason: thrown.message, pauseRun: true };
    if (thrown instanceof WaitingForSignal) return { type: 'park', reason: signalWaitReason(thrown.signalName), pauseRun: false };
    const described = describeThrown(thrown);
    const code = (thrown as RlmError)?.code;
    this.#o.metrics?.errors.inc({ code: described.code ?? 'HANDLER' });
    const error = this.#errorEntry(attempt, described);
    if (thrown instanceof StoreIoError || thrown instanceof StoreCorruptError) throw thrown;
    if (thrown instanceof RetryLater && attempt < this.#task.limits.maxAttempts) return { type: 'retry', error, availableAt: thrown.at };
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
    const remembered = this.#task.keyed ? this.#takeRemembered(node.id) : undefined;
    if (remembered) return remembered;
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

  /** The hashes of the keys this worker has spawned or claimed in a run (see #knownKeys). */
  #keysOf(runId: string): Set<number> {
    let known = this.#knownKeys.get(runId);
    // Bounded: past it, forgetting costs only speculative runs of children whose keys existed.
    if (!known || known.size >= KNOWN_KEYS_MAX) {
      known = new Set();
      this.#knownKeys.set(runId, known);
    }
    return known;
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
      if (spec.notBefore !== undefined) {
        const at = spec.notBefore instanceof Date ? spec.notBefore.getTime() : spec.notBefore;
        if (typeof at !== 'number' || !Number.isFinite(at)) {
          return dead(new RlmError(`Child ${ord} of node ${parent.id}: notBefore must be a Date or epoch ms, got ${String(spec.notBefore)}.`, 'INVALID_INPUT'));
        }
        if (at > Date.now()) row.availableAt = at;
      }
      if (depth > task.limits.maxDepth) {
        const error = new RlmError(`Child at depth ${depth} is deeper than limits.maxDepth (${task.limits.maxDepth}).`, 'DEPTH');
        return dead(error, task.depthPolicy === 'park' ? 'parked' : 'dead');
      }
      if (row.keyed) {
        const known = this.#keysOf(parent.runId);
        const hash = keyHash(row.key);
        // Spawned or claimed here before: it exists, or will once its group commits. The store links it.
        if (known.has(hash)) {
          row.state = 'pending';
          row.known = true;
          return row;
        }
        known.add(hash);
      }
      if (
        this.#stopping ||
        row.availableAt !== undefined ||
        this.#window.size + born.length >= this.#room() ||
        (this.#budgeted.size > 0 && this.#budgeted.has(parent.runId))
      ) {
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

  /** A speculative node runs no effect, and is charged no cost, before its key is known to be new. */
  async #confirmed(node: WindowNode): Promise<void> {
    if (!node.unconfirmed) return;
    const { op, created } = node.unconfirmed;
    while (this.#ops.includes(op)) await this.#commit();
    if (!(await created.promise)) throw new RlmError(`Node ${node.id} was a duplicate of key ${JSON.stringify(node.key)}; its step is discarded.`, 'STALE_LEASE');
  }

  async #charge(node: WindowNode, name: string, kind: 'reserve' | 'settle', amount: number): Promise<number> {
    await this.#confirmed(node);
    const charged = await this.#store.chargeCost({ runId: node.runId, nodeId: node.id, nodeKey: node.key, name, kind, amount });
    if (!charged.granted) throw new CostBudgetError(amount, charged.spent, charged.budget ?? 0);
    return charged.amount;
  }

  async #effect<T>(node: WindowNode, name: string, fn: (idempotencyKey: string) => Promise<T> | T): Promise<T> {
    // A duplicate's effect would run twice.
    await this.#confirmed(node);
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
    while (this.#inflight > 0 && Date.now() < deadline && !this.#aborting) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#sleep(), new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(1, deadline - Date.now()))))]);
      clearTimeout(timer);
      if (this.#fatal) return;
    }
    if (this.#inflight > 0) this.abortNow();
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

/** Results of keyed nodes, and waiting keyed parents, a worker remembers for combines: at most this many, each. */
const KEYED_MEMORY = { entries: 1 << 15, bytes: 16 * 2 ** 20 };

/** What a stored payload takes, roughly, in memory: its length and an entry's overhead. */
function payloadBytes(payload: Payload | null): number {
  return (payload?.length ?? 0) + 48;
}

/** Keys remembered per run by a worker: about 40 MB of hashes at most. */
const KNOWN_KEYS_MAX = 1 << 22;

/** FNV-1a of a key, in 30 bits (a small integer to V8, so a Set of them stays compact). */
function keyHash(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return hash & 0x3fffffff;
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
  /** Charges the node's run (Store.chargeCost); returns the amount charged, journaled or new. */
  charge(node: WindowNode, name: string, kind: 'reserve' | 'settle', amount: number): Promise<number>;
  /** The payload of the node's run's signal, if it came. */
  signal(node: WindowNode, name: string): Promise<Payload | undefined>;
}

/** One attempt at a node: the `ctx` its handler sees, and what it produces. */
class Step implements TaskContext {
  readonly runId: string;
  readonly nodeId: number;
  readonly key: string;
  readonly depth: number;
  readonly attempt: number;
  readonly context: Json;
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
  /** Cost charges of this step so far (they name its journal entries), and what it reserved since it last spent. */
  #charges = 0;
  #reserved = 0;

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
  }

  /** The run's trace: the span's, or (without an SDK) the one its traceparent or its run id names. */
  get traceId(): string {
    return this.#span ? this.#span.spanContext().traceId : traceIdOf(this.#node.traceparent, this.runId);
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

  get approved(): boolean {
    return this.#node.fanoutApproved;
  }

  park(reason: string): never {
    if (typeof reason !== 'string' || reason.trim() === '') throw new RlmError('ctx.park(reason) needs a reason: a non-empty string a person reads in `rlm inspect`.', 'HANDLER');
    throw new NeedsApproval(reason);
  }

  async waitFor<T = Json>(name: string): Promise<T> {
    if (typeof name !== 'string' || name === '' || name.length > 1024) throw new NonRetryableError('ctx.waitFor(name) takes a signal name: a non-empty string of at most 1024 characters.');
    const payload = await this.#host.signal(this.#node, name);
    if (payload === undefined) throw new WaitingForSignal(name);
    return decode(payload) as T;
  }

  async reserve(amount: number): Promise<void> {
    this.#reserved += await this.#chargeCost('reserve', amount);
  }

  async spend(amount: number): Promise<void> {
    const reserved = this.#reserved;
    this.#reserved = 0;
    await this.#chargeCost('settle', amount - reserved, amount);
  }

  async #chargeCost(kind: 'reserve' | 'settle', amount: number, given = amount): Promise<number> {
    const call = kind === 'reserve' ? 'reserve' : 'spend';
    if (this.#finished) throw new RlmError(`ctx.${call} was called after the step of node ${this.nodeId} ended.`, 'HANDLER');
    if (typeof given !== 'number' || !Number.isFinite(given) || given < 0) {
      throw new NonRetryableError(`ctx.${call}(amount) takes a finite number >= 0 in the run's cost units, got ${String(given)} (${typeof given}).`);
    }
    this.#charges++;
    return this.#host.charge(this.#node, `${COST_EFFECT_PREFIX}${this.#node.phase}:${this.#charges}`, kind, amount);
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
    return this.#span ? traceparentOfSpan(this.#span) : this.#node.traceparent;
  }
}
