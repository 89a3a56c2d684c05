/*
 * The Store interface: the one persistence boundary. The engine speaks rlm's language to it, never SQL.
 * Every implementation passes test/store/conformance.ts.
 *
 * Payloads (inputs, contexts, results, emitted records, effect values) cross this boundary already encoded
 * (see Payload): the store keeps them as given, text as text and bytes as bytes, and never parses them.
 *
 * Node states:
 * - pending: on the frontier, runnable once `availableAt` has passed (a retry waits out its backoff here).
 * - running: leased to a worker under an epoch. Children are often born running, leased to the worker that
 *   spawned them, so most nodes never touch the pending index.
 * - waiting: ran and spawned children; waits for them to finish before its combine phase.
 * - done: has its result. Terminal.
 * - dead: in the dead-letter queue, with its error history. Terminal until redriven.
 * - parked: held for a person (fan-out alarm, depth overflow, node budget) until approved or rejected.
 *
 * Lease lifecycle: a node is leased by `claimNodes` (pending → running, epoch + 1) or born leased by the commit
 * that created it. The worker's heartbeat extends every lease it holds at once (leases belong to workers). A
 * worker that stops heartbeating, or whose process is gone, has its nodes taken back (running → pending,
 * epoch + 1, marked suspect). Every write on a leased node names the epoch it was leased under; a write whose
 * epoch has moved on is rejected, never applied.
 */
import type { DoctorReport } from './audit.js';

export type NodeState = 'pending' | 'running' | 'waiting' | 'done' | 'dead' | 'parked';
export type NodePhase = 'run' | 'combine';
export type RunState = 'running' | 'paused' | 'completed' | 'failed' | 'cancelled';

/**
 * Pause reasons of a person's pause begin with this (`rlm pause` and the dashboard's pause button). Only an
 * explicit resume lifts such a pause: approving parked nodes, resuming a run (`rlm run --run ID`) or restarting a
 * worker never do.
 */
export const PERSON_PAUSE = 'paused by a person';

export function isPersonPause(reason: string | null | undefined): boolean {
  return reason?.startsWith(PERSON_PAUSE) === true;
}

/** How long the row of a worker that stopped or died is kept (for `rlm workers` and post-mortems), in ms. */
export const WORKER_RETENTION_MS = 24 * 60 * 60 * 1000;

export const NODE_STATES: readonly NodeState[] = ['pending', 'running', 'waiting', 'done', 'dead', 'parked'];

export function isTerminal(state: NodeState): boolean {
  return state === 'done' || state === 'dead';
}

export type StateCounts = Record<NodeState, number>;

/**
 * An encoded value: JSON text (the default codec), or bytes (a binary codec; rlm's msgpack payloads begin
 * with the byte 0xC1, which begins no msgpack value and no UTF-8 text). A store gives back the form it was
 * given: a string payload comes back as the same string, bytes as the same bytes (a Uint8Array, often a Buffer).
 * A string payload is always JSON text, so a store may mark bytes it keeps in a text column by a first
 * character JSON never starts with.
 */
export type Payload = string | Uint8Array;

export interface NewRun {
  id: string;
  task: string;
  taskVersion: number;
  /** Encoded root input and context. */
  input: Payload;
  context: Payload | null;
  rootKey: string;
  /** The root's key came from the task's key function: descendants with that key are the root itself. */
  rootKeyed: boolean;
  rootPriority: number;
  /** Tie-break order of the frontier. */
  order: 'dfs' | 'bfs';
  /** Most nodes the run may create; past it children are parked and the run pauses. */
  nodeBudget: number | null;
  /**
   * The task's `deadChildren: 'pass'`: a child dead-lettered outside a commit (a person's reject, a cancelled
   * subtree) counts as finished for the parents waiting on it, as it does in commits.
   */
  passDead: boolean;
  traceparent: string | null;
  /** The task's `estimate(input)`: how many nodes the run will have in all, when the task can tell. */
  estimate?: number | null;
  /** Most cost (in the user's units) the run's steps may reserve; null: none. */
  costBudget?: number | null;
}

export interface RunRecord {
  id: string;
  task: string;
  taskVersion: number;
  state: RunState;
  input: Payload;
  result: Payload | null;
  order: 'dfs' | 'bfs';
  nodeBudget: number | null;
  nodeCount: number;
  /** Most cost the run's steps may reserve (null: unbounded), and what they reserved and spent so far. */
  costBudget: number | null;
  costSpent: number;
  pauseReason: string | null;
  rootId: number;
  counts: StateCounts;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
  /** Nodes the run is expected to have in all (the task's `estimate`), or null when its size is unknown. */
  estimate: number | null;
  /** The worker that last joined the run (recorded with its code) and when, or null before any did. */
  lastWorker: { id: string; at: number } | null;
}

/** One attempt's failure, kept in a node's error history. */
export interface ErrorEntry {
  attempt: number;
  message: string;
  code: string | null;
  stack: string | null;
  at: number;
  worker: string;
}

/** A node leased to a worker: what the engine needs to run it. */
export interface LeasedNode {
  id: number;
  runId: string;
  parentId: number | null;
  key: string;
  depth: number;
  priority: number;
  version: number;
  input: Payload;
  context: Payload | null;
  phase: NodePhase;
  /** Attempts counted so far: finished ones, and crashes of a worker that ran the node alone. */
  attempts: number;
  epoch: number;
  /** Taken back from a worker that died while holding it: it may have crashed that worker. */
  suspect: boolean;
  /** The step may spawn past `maxChildren` (a person approved the fan-out). */
  /** A person approved the node's park (a fan-out alarm, or its handler's gate, `ctx.approved`): lifted for good. */
  fanoutApproved: boolean;
  /** Children an earlier attempt persisted in chunks: a re-run skips that many. */
  spawned: number;
  traceparent: string | null;
}

/** A child row written by a commit. */
export interface NewNode {
  /** Allocated by `allocateIds`; a keyed child that already exists in the run is not created. */
  id: number;
  parentId: number;
  /** Position among the parent's children; combine sees results in this order. */
  ord: number;
  key: string;
  /** True when `key` came from the task's key function: the store dedupes on it within the run. */
  keyed: boolean;
  depth: number;
  priority: number;
  version: number;
  input: Payload;
  context: Payload | null;
  /**
   * `running` is born leased to the committing worker under epoch 1; `dead` and `parked` carry `error`.
   * `done` and `waiting` are children whose own step finished before the commit that creates them: the row
   * is written once, in its final state, and their step op is marked `merged`.
   */
  state: 'pending' | 'running' | 'dead' | 'parked' | 'done' | 'waiting';
  error: ErrorEntry | null;
  /** A pending child's not-before time (epoch ms): no worker claims it earlier. */
  availableAt?: number;
  /** For a child born `done` or `waiting`: its step's result and attempt count. */
  result?: Payload | null;
  attempts?: number;
  traceparent: string | null;
  /** A keyed child whose key the worker has seen in the run: most likely a duplicate, so a store may look it up first. */
  known?: boolean;
}

export type StepOutcome =
  /** Finished with a result (a traversal node, a leaf, or a combine phase). */
  | { type: 'done'; result: Payload | null }
  /** Spawned children and waits for them before its combine phase. */
  | { type: 'wait'; result: Payload | null }
  /** Failed; runs again once `availableAt` (epoch ms) has passed. */
  | { type: 'retry'; error: ErrorEntry; availableAt: number }
  /** Goes to the dead-letter queue. */
  | { type: 'dead'; error: ErrorEntry }
  /** Held for a person; `pauseRun` pauses the whole run (the fan-out alarm). */
  | { type: 'park'; reason: string; pauseRun: boolean }
  /**
   * Handed back unfinished (graceful stop, or a handler's uncharged RetryLater): pending again, the attempt not
   * counted; claimable from `availableAt` (epoch ms) when given.
   */
  | { type: 'release'; availableAt?: number };

/** The finished step of a leased node. */
export interface StepOp {
  kind: 'step';
  runId: string;
  nodeId: number;
  epoch: number;
  outcome: StepOutcome;
  /** The node's attempt count after this step. */
  attempts: number;
  children: NewNode[];
  emits: Payload[];
  /** The task has `combine`: parents count their unfinished children. */
  waits: boolean;
  /** Dead children count as finished for their waiting parents (`deadChildren: 'pass'`). */
  passDead: boolean;
  /**
   * The node was created earlier in this same commit, already in its final state: nothing to update. The op
   * stands only if that row was created (its parent's op was not rejected); its children and emits follow.
   */
  merged?: boolean;
  /**
   * A combine the worker ran before the store made its node ready: the node is waiting under `epoch`, and the
   * op stands only if every child it waits on has finished by this point of the commit (earlier ops count).
   * Then the node is done in this same commit and its own parents count it, so a wave of combines up a DAG
   * commits in one group. Otherwise the op is rejected and the node is made ready the ordinary way.
   */
  ifReady?: boolean;
}

/** Part of a large fan-out, persisted before the step ends; the node stays leased. */
export interface SpawnOp {
  kind: 'spawn';
  runId: string;
  nodeId: number;
  epoch: number;
  children: NewNode[];
  /** Children persisted so far, including these: a re-run skips that many. */
  spawned: number;
  waits: boolean;
  passDead: boolean;
}

/** A journaled effect result. */
export interface EffectOp {
  kind: 'effect';
  runId: string;
  nodeId: number;
  nodeKey: string;
  epoch: number;
  name: string;
  value: Payload;
}

export type CommitOp = StepOp | SpawnOp | EffectOp;

export interface CommitResult {
  /** Nodes whose ops were fenced out: their lease moved on. Nothing of those ops was applied. */
  rejected: number[];
  /** Waiting parents whose last child finished in this commit, leased to the committing worker for combine. */
  ready: LeasedNode[];
  /** Runs that left the `running` state in this commit. */
  finishedRuns: string[];
  /** Keyed children that existed already in their run, so were not created (their parents share them). */
  duplicates: number[];
  /** Monotonic sequence number of this commit in the store. */
  seq: number;
  /**
   * Pending nodes (the shared frontier) of each run the commit wrote, after it, where the store knows them at no
   * cost. A worker with peers shares its children through the frontier only while it runs low.
   */
  frontier?: Record<string, number>;
  /**
   * The state of each run the commit wrote, after it (read under the commit's own lock on the run, so at no extra
   * cost): a worker learns within one group that a run was paused or cancelled, and starts no new step of it.
   */
  runStates?: Record<string, RunState>;
}

/** The task code that works on a run: its version and a hash of its functions (run, combine, key, migrate). */
export interface RunCode {
  version: number;
  hash: string;
  /** The task's `deadChildren: 'pass'` (see NewRun.passDead): recorded with the code, not compared. */
  passDead?: boolean;
  /** The worker recording the code: kept as the run's last worker (RunRecord.lastWorker). */
  workerId?: string;
}

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  /** Process start time from the OS, so a reused pid is not mistaken for the same process. */
  pidStart: string;
  task: string;
  version: number;
}

export interface WorkerRecord extends WorkerInfo {
  state: 'alive' | 'stopped' | 'dead';
  leaseUntil: number;
  heartbeatAt: number;
}

/** Which runs `listRuns` and `countRuns` see. */
export interface RunFilter {
  state?: RunState;
  /** Runs to skip, newest first (paging). */
  offset?: number;
}

/** Nodes one worker holds leased in one run. */
export interface WorkerLeases {
  workerId: string;
  runId: string;
  nodes: number;
}

export interface ClaimFilter {
  task: string;
  /** Nodes written by a newer task version are never claimed. */
  maxVersion: number;
  /** Only these runs; all runs of the task when omitted. */
  runIds?: readonly string[];
}

export interface NodeRecord {
  id: number;
  runId: string;
  parentId: number | null;
  ord: number;
  key: string;
  depth: number;
  priority: number;
  version: number;
  state: NodeState;
  phase: NodePhase;
  input: Payload | null;
  context: Payload | null;
  result: Payload | null;
  attempts: number;
  epoch: number;
  owner: string | null;
  pendingChildren: number;
  availableAt: number;
  parkReason: string | null;
  errors: ErrorEntry[];
  traceparent: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface EmitRecord {
  seq: number;
  nodeId: number;
  record: Payload;
}

export interface EffectRecord {
  name: string;
  value: Payload;
  nodeId: number;
  at: number;
}

export interface StoreCapabilities {
  /** Several processes may write at once (PostgreSQL yes; SQLite serialises them through its file lock). */
  readonly concurrentWriters: boolean;
  /** New work wakes idle workers without polling (LISTEN/NOTIFY). */
  readonly notifications: boolean;
  /**
   * Commits are applied one after another in the order they were called, whatever their timing (the SQLite
   * store thread): a worker sends its next group before the previous one is acknowledged.
   */
  readonly orderedCommits?: boolean;
}

/** The one persistence boundary. Every implementation passes test/store/conformance.ts. */
/** A node's charge to its run's cost budget (see Store.chargeCost). */
export interface CostCharge {
  runId: string;
  nodeId: number;
  nodeKey: string;
  /** The journal entry's name: which reservation or settlement of the node this is. */
  name: string;
  kind: 'reserve' | 'settle';
  amount: number;
}

/** What a worker asks of a group's shared capacity (see Store.acquireGroup). */
export interface GroupRequest {
  runId: string;
  group: string;
  workerId: string;
  /** Steps of the group at once across the run's workers; null: unbounded. */
  concurrency: number | null;
  /** Steps of the group started per second across the run's workers; null: unbounded. */
  perSecond: number | null;
  /** Tokens the bucket holds at most. */
  burst: number;
  /** Slots the worker wants to hold from now on (ignored without `concurrency`). */
  slots: number;
  /** Of those, how many run a step now. */
  running: number;
  /** Tokens the worker wants now (ignored without `perSecond`). */
  tokens: number;
  leaseMs: number;
}

export interface GroupGrant {
  /** Slots the worker holds from now on (with no `concurrency`, what it asked for). */
  slots: number;
  /** Tokens granted, already spent from the bucket. */
  tokens: number;
  /** With `perSecond`, when tokens were asked for: how long until the bucket holds a whole token (0: it does). */
  nextTokenInMs: number | null;
}

export interface Store {
  readonly capabilities: StoreCapabilities;
  /** A description safe to print: no password. */
  readonly description: string;
  /** Creates or upgrades the schema. Safe to call from several processes at once. */
  migrate(): Promise<void>;
  close(): Promise<void>;

  /** Reserves `count` consecutive node ids; returns the first. */
  allocateIds(count: number): Promise<number>;

  createRun(run: NewRun): Promise<RunRecord>;
  getRun(runId: string): Promise<RunRecord | undefined>;
  /** Runs, newest first: up to `limit` (default 100), skipping `filter.offset`, of `filter.state` when given. */
  listRuns(limit?: number, filter?: RunFilter): Promise<RunRecord[]>;
  /** How many runs `listRuns` would page through with this filter. */
  countRuns(filter?: RunFilter): Promise<number>;
  /** Pauses, resumes or cancels a run; `from` makes it conditional. Returns whether it changed. */
  setRunState(runId: string, state: RunState, options?: { from?: readonly RunState[]; reason?: string | null }): Promise<boolean>;
  /**
   * Sets a run's node budget (null: none). Raising it lets parked nodes run once approved; children past the old
   * budget that were parked stay parked until then. Returns the run's node count.
   */
  setNodeBudget(runId: string, budget: number | null): Promise<number>;
  /** Recomputes a run's state from its counters: completed, failed, or running again. */
  settleRun(runId: string): Promise<RunRecord | undefined>;
  /**
   * Records `code` as the task code working on a run and returns the code recorded before (null when none), in
   * one step: a worker compares the two to warn about code that changed while its `version` stayed the same.
   */
  recordRunCode(runId: string, code: RunCode): Promise<RunCode | null>;
  /** Records the task's estimate of the run's node count (null: unknown), for progress readers without the task. */
  setRunEstimate(runId: string, estimate: number | null): Promise<void>;
  /** Sets a run's cost budget (null: none). Nodes parked by the old one stay parked until approved. */
  setCostBudget(runId: string, budget: number | null): Promise<void>;
  /**
   * Charges a node's cost to its run, once per node key and name, atomically with its journal entry (an effect
   * row under `name` holding `{ "cost": amount }`): a step that runs again gets the journaled charge back and
   * is not charged twice. A `reserve` that would take the run past its budget is refused and not journaled; a
   * `settle` (what a step really spent, as a correction of its reservations; it may be negative) always goes in.
   */
  chargeCost(charge: CostCharge): Promise<{ granted: boolean; amount: number; spent: number; budget: number | null }>;
  /**
   * Delivers a named signal to a run: kept, so a step that waits for it later gets it at once, and every node
   * parked waiting for it (`signalWaitReason(name)`) goes back to the frontier, its run out of a pause for parked
   * nodes. Once per name: the same payload again only wakes what waits for it (`sent` false); another is refused.
   */
  sendSignal(runId: string, name: string, payload: Payload): Promise<{ sent: boolean; woke: number }>;
  /** A signal's payload, if it was sent. */
  getSignal(runId: string, name: string): Promise<Payload | undefined>;
  /** The cost charged to each node of a subtree (by the effects journal), summed; at most one read per node. */
  subtreeCost(nodeId: number): Promise<number>;

  registerWorker(info: WorkerInfo, leaseMs: number): Promise<void>;
  /** Extends the worker's leases. False when the worker was declared dead: it must drop everything it holds. */
  heartbeat(workerId: string, leaseMs: number): Promise<boolean>;
  /**
   * Workers in the store, newest first; `alive` lists only live ones (what a heartbeat needs, bounded by the
   * workers running now). Rows of workers gone for more than WORKER_RETENTION_MS are pruned at registration.
   */
  listWorkers(options?: { alive?: boolean }): Promise<WorkerRecord[]>;
  /** Running nodes per worker and run: what each worker holds leased now. */
  workerLeases(): Promise<WorkerLeases[]>;
  /**
   * Declares workers dead and takes their running nodes back (pending, epoch + 1, suspect). Only a worker
   * still `alive` whose lease ended before `expiredBefore`, or that is named in `deadIds`, is taken. A node in
   * `blame` (still leased under that epoch) killed its worker: one attempt is counted against it.
   * Returns the number of nodes taken back.
   */
  takeBack(options: { deadIds?: readonly string[]; expiredBefore?: number; blame?: readonly { id: number; epoch: number }[] }): Promise<number>;
  /**
   * Records which node the worker runs alone now (a suspect, under its epoch), or none. Written before the step
   * starts: when the worker's process dies in that step, whoever takes its leases back (by a dead pid on this
   * host, or by lease expiry from any host) charges that node one attempt in `takeBack`.
   */
  markAlone?(workerId: string, node: { id: number; epoch: number } | null): Promise<void>;
  /** Graceful stop: hands every node the worker holds back to the frontier without counting an attempt. */
  releaseWorker(workerId: string, nodes?: readonly { id: number; epoch: number }[]): Promise<void>;

  /**
   * Resolves when new work may have appeared (LISTEN/NOTIFY) or after `timeoutMs`, whichever is first.
   * Only stores with `capabilities.notifications`; others are polled.
   */
  waitForWork?(timeoutMs: number): Promise<void>;
  /** Leases up to `limit` runnable frontier nodes to `workerId` (epoch + 1), best first. */
  claimNodes(workerId: string, filter: ClaimFilter, limit: number): Promise<LeasedNode[]>;
  /** Applies ops in order in one transaction. Fenced ops whose epoch moved on are rejected, never applied. */
  commit(workerId: string, ops: readonly CommitOp[]): Promise<CommitResult>;

  getEffect(runId: string, nodeKey: string, name: string): Promise<EffectRecord | undefined>;
  /** Results of a node's children in spawn order (for combine), with their keys and states. */
  childResults(nodeId: string | number): Promise<Array<{ key: string; state: NodeState; result: Payload | null; error: string | null }>>;

  getNode(nodeId: number): Promise<NodeRecord | undefined>;
  /** Children of a node (first parent or shared), in spawn order. */
  listChildren(nodeId: number, limit?: number, offset?: number): Promise<NodeRecord[]>;
  listNodes(runId: string, filter: { state?: NodeState; limit?: number; afterId?: number }): Promise<NodeRecord[]>;
  listEffects(nodeId: number): Promise<EffectRecord[]>;
  readEmits(runId: string, afterSeq: number, limit: number): Promise<EmitRecord[]>;
  /** Counts of the subtree under a node, by state. */
  subtreeCounts(nodeId: number): Promise<StateCounts>;
  /**
   * The subtree's counts when it has at most `maxNodes` nodes, or null when it has more: reads at most
   * `maxNodes + 1` nodes, so a caller with a time budget (the dashboard's tree) can tell small subtrees at once.
   */
  subtreeCountsUpTo(nodeId: number, maxNodes: number): Promise<StateCounts | null>;
  depthHistogram(runId: string): Promise<Array<{ depth: number; count: number }>>;
  /** The run's durable timers: how many pending nodes wait for a time still to come, and the earliest one. */
  nextWake(runId: string): Promise<{ at: number; nodes: number } | null>;

  /**
   * Leases this worker's share of a group's capacity, atomically across every worker of the run: the group's
   * step slots (`concurrency`, held under a lease of `leaseMs` that the worker renews and that lapses when it
   * dies) and tokens of its bucket (`perSecond`, up to `burst` at once), which are spent as they are granted.
   * `slots` is the total the worker wants to hold from now on (0 lets go of its lease); tokens are granted only
   * for slots it holds and does not use (`running`). `nextTokenInMs` says when to ask again.
   */
  acquireGroup(request: GroupRequest): Promise<GroupGrant>;

  /**
   * Prunes what no unfinished node needs: finished subtrees of unkeyed nodes under a finished parent are
   * deleted (the run's counters keep their totals), and finished keyed nodes lose their input and context but
   * keep key and result, so dedupe and memoisation still hold. Emitted records stay.
   */
  compact?(runId: string): Promise<{ deleted: number; pruned: number }>;
  /**
   * Cancels the unfinished part of a subtree: every node under `nodeId` (itself included) that is not done
   * goes to the dead-letter queue with code CANCELLED, its leases fenced. `dlq retry --subtree` redrives it.
   */
  cancelSubtree?(runId: string, nodeId: number): Promise<number>;
  /**
   * Deletes a run and everything it owns (nodes, edges, effects, emitted records). Refuses a run whose nodes are
   * leased by live workers (RunBusyError) unless `force`. Returns the number of nodes deleted.
   */
  deleteRun(runId: string, options?: { force?: boolean }): Promise<number>;
  /** Deletes every finished run (completed, failed or cancelled) that finished before `finishedBefore` (epoch ms). Returns their ids. */
  purgeRuns(finishedBefore: number): Promise<string[]>;
  /**
   * Starts a run again from its root input under the same id: its nodes, edges, effects and emitted records are
   * deleted and a fresh root is created; the run is running again. Refuses live leases as deleteRun does.
   */
  restartRun(runId: string, options?: { force?: boolean }): Promise<RunRecord>;
  /** Dead nodes back to pending with a fresh attempt budget; returns how many. */
  redrive(runId: string, nodeIds: readonly number[] | 'all'): Promise<number>;
  /**
   * Checks a run's stored state once per resume, O(run), while the run goes on (it must not hold up the store's
   * other calls): its counters against a recount of its rows, its columns against their constraints (on SQLite,
   * the file's own consistency check, which covers those). Values are not read: every read checks its value's
   * checksum. Rejects with StoreCorruptError saying what does not add up.
   */
  verifyRun?(runId: string): Promise<void>;
  /** Checks the whole store (`rlm doctor`): every checksum, constraint and counter; reports what it found. */
  doctor?(): Promise<DoctorReport>;
  /**
   * Removes dead nodes from the queue for good: they stay dead, marked dropped, and leave the run's dead count
   * (so its exit code and status). A dead node whose parent waits on it under deadChildren 'wait' is refused
   * (RefusedError): its parent's combine would never run. Under 'pass' the parent has its ChildFailure already.
   * Returns how many were dropped.
   */
  dropDead(runId: string, nodeIds: readonly number[] | 'all'): Promise<number>;
  /** Parked nodes: approve (pending again, fan-out allowed) or reject (dead). Returns how many. */
  decideParked(runId: string, nodeIds: readonly number[] | 'all', decision: 'approve' | 'reject'): Promise<number>;
}
