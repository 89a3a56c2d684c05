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

export type NodeState = 'pending' | 'running' | 'waiting' | 'done' | 'dead' | 'parked';
export type NodePhase = 'run' | 'combine';
export type RunState = 'running' | 'paused' | 'completed' | 'failed' | 'cancelled';

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
  pauseReason: string | null;
  rootId: number;
  counts: StateCounts;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
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
  /** For a child born `done` or `waiting`: its step's result and attempt count. */
  result?: Payload | null;
  attempts?: number;
  traceparent: string | null;
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
  /** Handed back unfinished (graceful stop): pending again, the attempt not counted. */
  | { type: 'release' };

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
}

/** The task code that works on a run: its version and a hash of its functions (run, combine, key, migrate). */
export interface RunCode {
  version: number;
  hash: string;
  /** The task's `deadChildren: 'pass'` (see NewRun.passDead): recorded with the code, not compared. */
  passDead?: boolean;
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
  listRuns(limit?: number): Promise<RunRecord[]>;
  /** Pauses, resumes or cancels a run; `from` makes it conditional. Returns whether it changed. */
  setRunState(runId: string, state: RunState, options?: { from?: readonly RunState[]; reason?: string | null }): Promise<boolean>;
  /** Recomputes a run's state from its counters: completed, failed, or running again. */
  settleRun(runId: string): Promise<RunRecord | undefined>;
  /**
   * Records `code` as the task code working on a run and returns the code recorded before (null when none), in
   * one step: a worker compares the two to warn about code that changed while its `version` stayed the same.
   */
  recordRunCode(runId: string, code: RunCode): Promise<RunCode | null>;

  registerWorker(info: WorkerInfo, leaseMs: number): Promise<void>;
  /** Extends the worker's leases. False when the worker was declared dead: it must drop everything it holds. */
  heartbeat(workerId: string, leaseMs: number): Promise<boolean>;
  listWorkers(): Promise<WorkerRecord[]>;
  /**
   * Declares workers dead and takes their running nodes back (pending, epoch + 1, suspect). Only a worker
   * still `alive` whose lease ended before `expiredBefore`, or that is named in `deadIds`, is taken. A node in
   * `blame` (still leased under that epoch) killed its worker: one attempt is counted against it.
   * Returns the number of nodes taken back.
   */
  takeBack(options: { deadIds?: readonly string[]; expiredBefore?: number; blame?: readonly { id: number; epoch: number }[] }): Promise<number>;
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
  depthHistogram(runId: string): Promise<Array<{ depth: number; count: number }>>;

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
  /** Dead nodes back to pending with a fresh attempt budget; returns how many. */
  redrive(runId: string, nodeIds: readonly number[] | 'all'): Promise<number>;
  /** Removes dead nodes from the queue for good (they stay dead, marked dropped); returns how many. */
  dropDead(runId: string, nodeIds: readonly number[] | 'all'): Promise<number>;
  /** Parked nodes: approve (pending again, fan-out allowed) or reject (dead). Returns how many. */
  decideParked(runId: string, nodeIds: readonly number[] | 'all', decision: 'approve' | 'reject'): Promise<number>;
}
