/*
 * One commit on PostgreSQL: the ops of a group, applied in order, in one transaction of a few round trips.
 *
 * 1. Read. One round trip locks what the commit decides on: the committing worker's row (FOR SHARE, so a
 *    take-back of this worker waits for the commit and then sees the children it created), the runs of the ops
 *    (FOR UPDATE, in id order: commits on one run are serialised, which makes keyed dedupe, shared children,
 *    node budgets, parents' counters and the detection of a stall exact), the nodes the ops name (FOR UPDATE, with their
 *    parents and shared-edge parents) and the rows behind the keys of keyed children.
 * 2. Apply. The ops run in order against that snapshot in memory, with the same rules as the SQLite store:
 *    fencing by epoch and state, born-leased children, dedupe, budgets, counters, readiness, settle.
 *    An op on a child created earlier in the same commit sees that child, because both live in memory.
 *    A run the commit leaves stalled (nothing pending or running, nodes waiting) is settled by the store after
 *    the write, once it has searched the run for dependency cycles (store/cycles.ts).
 * 3. Write. One statement writes everything: the node updates (each still guarded by the state and epoch it was
 *    read with), the new nodes, shared edges, emitted records, effects and run counters.
 * 4. Mark. The commit's marker row holds its result, so a worker whose connection drops during COMMIT finds out
 *    whether it happened; NOTIFY wakes idle workers when pending nodes appeared.
 */
import { failpoints } from '../../failpoints.js';
import type { CommitOp, CommitResult, ErrorEntry, LeasedNode, NewNode, NodeState, RunState, StateCounts, StepOp } from '../store.js';
import { countsFromRow, emptyCounts, leasedFromRow, payloadOf, settledState, storableError, textOf, textOfOptional } from './rows.js';
import type { Tables } from './schema.js';
import type { Row, Transaction } from './session.js';

/** What a commit may change on a node that existed before it. */
interface Changes {
  state: NodeState;
  phase: 'run' | 'combine';
  result: string | null;
  attempts: number;
  owner: string | null;
  suspect: boolean;
  availableAt: number;
  parkReason: string | null;
  spawned: number;
}

/** A row this commit creates, in its final state. */
interface NewRow {
  id: number;
  run_id: string;
  parent_id: number;
  ord: number;
  key: string;
  keyed: boolean;
  depth: number;
  priority: number;
  order_key: number;
  version: number;
  state: NodeState;
  phase: 'run' | 'combine';
  input: string;
  context: string | null;
  result: string | null;
  attempts: number;
  epoch: number;
  owner: string | null;
  suspect: boolean;
  pending_children: number;
  spawned: number;
  available_at: number;
  park_reason: string | null;
  errors: ErrorEntry[] | null;
  traceparent: string | null;
}

/** A node as this commit sees it: read from the store, or created by an earlier op of the commit. */
interface NodeView {
  id: number;
  runId: string;
  parentId: number | null;
  state: NodeState;
  /** NaN when the node was read only as a parent (never fenced then). */
  epoch: number;
  /** pending_children as read; for a new node, its row holds the live value. */
  pending: number;
  /** Read FOR UPDATE as an op's node: its update is guarded by the state and epoch it was read with. */
  locked: boolean;
  readState: NodeState;
  readEpoch: number;
  /** Parents through shared edges that existed before this commit. */
  edgeParents: number[];
  row: NewRow | null;
  changes: Partial<Changes>;
  errorsAdd: ErrorEntry[];
  epochInc: number;
  pendingDelta: number;
  ready: boolean;
}

interface RunView {
  id: string;
  state: RunState;
  order: 'dfs' | 'bfs';
  budget: number | null;
  count: number;
  created: number;
  rootId: number;
  rootState: NodeState | null;
  pauseReason: string | null;
  counts: StateCounts;
  /** What the commit writes of the run's state: nothing, a pause, or a settled end (with result and finish time). */
  write: 'keep' | 'pause' | 'settle';
}

const runKey = (runId: string, key: string) => `${runId}\u0000${key}`;

export class PgCommit {
  readonly #tx: Transaction;
  readonly #t: Tables;
  readonly #workerId: string;
  readonly #ops: readonly CommitOp[];
  readonly #now = Date.now();
  readonly #rejected: number[] = [];
  readonly #rejectedSet = new Set<number>();
  readonly #duplicates: number[] = [];
  readonly #nodes = new Map<number, NodeView>();
  readonly #runs = new Map<string, RunView>();
  /** Keyed nodes stored before this commit, by run and key. */
  readonly #storedKeys = new Map<string, number>();
  /** Keyed nodes created by this commit. */
  readonly #newKeys = new Map<string, number>();
  readonly #inserted: NewRow[] = [];
  readonly #insertedIds = new Set<number>();
  readonly #edges: { parent_id: number; child_id: number; ord: number }[] = [];
  readonly #edgeSet = new Set<string>();
  /** Child id → parents linked by this commit. */
  readonly #newEdgeParents = new Map<number, Set<number>>();
  readonly #emits: { run_id: string; node_id: number; record: string; i: number }[] = [];
  readonly #effects: { run_id: string; node_key: string; name: string; node_id: number; value: string; at: number }[] = [];
  readonly #effectKeys = new Set<string>();
  readonly #deltas = new Map<string, StateCounts>();
  readonly #decrements = new Map<number, number>();
  readonly #touched = new Set<number>();
  readonly #pauseRuns = new Map<string, string>();
  /** Runs this commit left with nothing pending or running and nodes waiting. */
  readonly #stalled: { runId: string; wasRunning: boolean }[] = [];

  constructor(options: { tx: Transaction; tables: Tables; workerId: string; ops: readonly CommitOp[] }) {
    this.#tx = options.tx;
    this.#t = options.tables;
    this.#workerId = options.workerId;
    this.#ops = options.ops;
  }

  /** Runs the commit inside the open transaction; returns its result without `seq` and the runs to notify. */
  async run(): Promise<{ result: Omit<CommitResult, 'seq'>; notify: string[]; stalled: { runId: string; wasRunning: boolean }[] }> {
    await this.#read();
    for (const op of this.#ops) this.#apply(op);
    const ready = this.#finish();
    const finishedRuns = this.#settle();
    const readyExisting = await this.#write();
    const leased = ready.map((entry) => (typeof entry === 'number' ? readyExisting.get(entry) : entry)).filter((node): node is LeasedNode => node !== undefined);
    const notify = [...this.#deltas].filter(([, counts]) => counts.pending > 0).map(([runId]) => runId);
    const frontier: Record<string, number> = {};
    for (const runId of this.#deltas.keys()) frontier[runId] = this.#run(runId).counts.pending;
    // Read under this commit's lock on each run: a worker learns of a pause or a cancel within one group.
    const runStates: Record<string, RunState> = {};
    for (const [runId, run] of this.#runs) runStates[runId] = run.state;
    return { result: { rejected: this.#rejected, ready: leased, finishedRuns, duplicates: this.#duplicates, frontier, runStates }, notify, stalled: this.#stalled };
  }

  // ------------------------------------------------------------------ read

  async #read(): Promise<void> {
    const tx = this.#tx;
    const t = this.#t;
    const runIds = [...new Set(this.#ops.map((op) => op.runId))].sort();
    // A merged op's node is created by this commit: there is nothing stored to read for it.
    const targets = [...new Set(this.#ops.filter((op) => op.kind !== 'step' || !op.merged).map((op) => op.nodeId))].filter((id) => Number.isSafeInteger(id));
    const keyed = new Map<string, { runId: string; key: string }>();
    for (const op of this.#ops) {
      if (op.kind === 'effect') continue;
      for (const child of op.children) if (child.keyed) keyed.set(runKey(op.runId, child.key), { runId: op.runId, key: child.key });
    }
    const statements = [`SELECT 1 FROM ${t.workers} WHERE id = ${tx.literal(this.#workerId)} FOR SHARE`];
    const at = { runs: -1, targets: -1, keyed: -1 };
    if (runIds.length > 0) {
      at.runs = statements.push(
        `SELECT r.id, r.state, r.frontier_order, r.node_budget, r.node_count, r.root_id, r.pause_reason,
                r.n_pending, r.n_running, r.n_waiting, r.n_done, r.n_dead, r.n_parked,
                (SELECT s.state FROM ${t.nodes} s WHERE s.id = r.root_id) AS root_state
           FROM ${t.runs} r WHERE r.id IN (${runIds.map((id) => tx.literal(id)).join(', ')}) ORDER BY r.id FOR UPDATE OF r`,
      ) - 1;
    }
    if (targets.length > 0) {
      // Locked in id order, waiting: a lock can be held for reasons other than a new owner (a claim whose
      // snapshot predates this node's lease locks the row it then finds no longer pending, until it ends), so
      // skipping locked rows would reject live leases. The epoch and state read here decide, never a lock.
      // Parents are looked up one by one through the primary key (subqueries, never a join): a join lets the
      // planner hash the whole node table while its statistics still describe a much smaller one.
      at.targets = statements.push(
        `SELECT n.id, n.run_id, n.parent_id, n.state, n.epoch, n.pending_children,
                (SELECT json_build_array(p.state, p.pending_children) FROM ${t.nodes} p WHERE p.id = n.parent_id) AS parent,
                CASE WHEN n.keyed THEN (SELECT json_agg(json_build_array(e.parent_id, q.state, q.pending_children))
                                          FROM ${t.edges} e JOIN ${t.nodes} q ON q.id = e.parent_id WHERE e.child_id = n.id) END AS edge_parents
           FROM ${t.nodes} n
          WHERE n.id = ANY('{${targets.join(',')}}'::bigint[]) ORDER BY n.id FOR UPDATE OF n`,
      ) - 1;
    }
    if (keyed.size > 0) {
      const values = [...keyed.values()].map((k) => `(${tx.literal(k.runId)}, ${tx.literal(k.key)})`).join(', ');
      at.keyed = statements.push(
        // One index lookup per key (OFFSET 0 keeps the planner from turning this into a join over the table).
        `SELECT n.* FROM (VALUES ${values}) AS k(run_id, key) CROSS JOIN LATERAL (
           SELECT n.id, n.run_id, n.key, n.state, n.pending_children FROM ${t.nodes} n WHERE n.run_id = k.run_id AND n.key = k.key AND n.keyed OFFSET 0
         ) n`,
      ) - 1;
    }
    const results = await tx.begin(statements.map((sql) => ` ${sql};`).join(''));
    const rowsAt = (index: number): Row[] => (index < 0 ? [] : (results[index]?.rows ?? []));
    for (const row of rowsAt(at.runs)) {
      this.#runs.set(row.id as string, {
        id: row.id as string,
        state: row.state as RunState,
        order: row.frontier_order as 'dfs' | 'bfs',
        budget: (row.node_budget as number | null) ?? null,
        count: row.node_count as number,
        created: 0,
        rootId: row.root_id as number,
        rootState: (row.root_state as NodeState | null) ?? null,
        pauseReason: (row.pause_reason as string | null) ?? null,
        counts: countsFromRow(row),
        write: 'keep',
      });
    }
    const targetRows = rowsAt(at.targets);
    for (const row of targetRows) {
      const edges = (row.edge_parents as [number, NodeState, number][] | null) ?? [];
      this.#nodes.set(row.id as number, {
        ...this.#view(row.id as number, row.run_id as string, row.state as NodeState, row.pending_children as number),
        parentId: (row.parent_id as number | null) ?? null,
        epoch: row.epoch as number,
        readEpoch: row.epoch as number,
        locked: true,
        edgeParents: edges.map((edge) => edge[0]),
      });
    }
    // Parents are remembered after the nodes the ops name, so a parent that is itself an op's node keeps its full view.
    for (const row of targetRows) {
      const parent = row.parent as [NodeState, number] | null;
      if (row.parent_id !== null && parent !== null) this.#remember(row.parent_id as number, row.run_id as string, parent[0], parent[1]);
      for (const [id, state, pending] of (row.edge_parents as [number, NodeState, number][] | null) ?? []) this.#remember(id, row.run_id as string, state, pending);
    }
    for (const row of rowsAt(at.keyed)) {
      this.#storedKeys.set(runKey(row.run_id as string, row.key as string), row.id as number);
      this.#remember(row.id as number, row.run_id as string, row.state as NodeState, row.pending_children as number);
    }
  }

  #view(id: number, runId: string, state: NodeState, pending: number): NodeView {
    return {
      id,
      runId,
      parentId: null,
      state,
      epoch: Number.NaN,
      pending,
      locked: false,
      readState: state,
      readEpoch: Number.NaN,
      edgeParents: [],
      row: null,
      changes: {},
      errorsAdd: [],
      epochInc: 0,
      pendingDelta: 0,
      ready: false,
    };
  }

  /** Keeps a node read for its state and counter only (a parent, a shared child); a fuller view wins. */
  #remember(id: number, runId: string, state: NodeState, pending: number): void {
    if (!this.#nodes.has(id)) this.#nodes.set(id, this.#view(id, runId, state, pending));
  }

  // ------------------------------------------------------------------ apply

  #delta(runId: string, state: NodeState, n: number): void {
    let counts = this.#deltas.get(runId);
    if (!counts) {
      counts = emptyCounts();
      this.#deltas.set(runId, counts);
    }
    counts[state] += n;
  }

  #reject(nodeId: number): void {
    if (!this.#rejectedSet.has(nodeId)) {
      this.#rejectedSet.add(nodeId);
      this.#rejected.push(nodeId);
    }
  }

  /** The node if it is leased under `epoch` right now (as of the earlier ops of this commit). */
  #fenced(nodeId: number, epoch: number): NodeView | undefined {
    const node = this.#nodes.get(nodeId);
    if (!node || (!node.locked && !node.row)) return undefined;
    return node.state === 'running' && node.epoch === epoch ? node : undefined;
  }

  #change(node: NodeView, changes: Partial<Changes>): void {
    if (changes.state !== undefined) node.state = changes.state;
    const row = node.row;
    if (!row) {
      Object.assign(node.changes, changes);
      return;
    }
    if (changes.state !== undefined) row.state = changes.state;
    if (changes.phase !== undefined) row.phase = changes.phase;
    if ('result' in changes) row.result = changes.result ?? null;
    if (changes.attempts !== undefined) row.attempts = changes.attempts;
    if ('owner' in changes) row.owner = changes.owner ?? null;
    if (changes.suspect !== undefined) row.suspect = changes.suspect;
    if (changes.availableAt !== undefined) row.available_at = changes.availableAt;
    if ('parkReason' in changes) row.park_reason = changes.parkReason ?? null;
    if (changes.spawned !== undefined) row.spawned = changes.spawned;
  }

  #addError(node: NodeView, entry: ErrorEntry): void {
    const clean = storableError(entry);
    if (node.row) node.row.errors = [...(node.row.errors ?? []), clean];
    else node.errorsAdd.push(clean);
  }

  #bumpEpoch(node: NodeView): void {
    node.epoch += 1;
    if (node.row) node.row.epoch += 1;
    else node.epochInc += 1;
  }

  #addPending(node: NodeView, n: number): void {
    if (node.row) node.row.pending_children += n;
    else node.pendingDelta += n;
  }

  #pendingOf(node: NodeView): number {
    return node.row ? node.row.pending_children : node.pending + node.pendingDelta;
  }

  #apply(op: CommitOp): void {
    if (op.kind === 'effect') {
      if (!this.#fenced(op.nodeId, op.epoch)) {
        this.#reject(op.nodeId);
        return;
      }
      // The first writer wins: the journal keeps the value a retried step will read.
      const key = `${op.runId}\u0000${op.nodeKey}\u0000${op.name}`;
      if (!this.#effectKeys.has(key)) {
        this.#effectKeys.add(key);
        this.#effects.push({ run_id: op.runId, node_key: op.nodeKey, name: op.name, node_id: op.nodeId, value: textOf(op.value), at: this.#now });
      }
      return;
    }
    if (op.kind === 'spawn') {
      const node = this.#fenced(op.nodeId, op.epoch);
      if (!node) {
        this.#reject(op.nodeId);
        return;
      }
      this.#change(node, { spawned: op.spawned });
      if (failpoints.active) failpoints.hit('spawn.midChunk');
      this.#insertChildren(op.runId, node, op.children, op.waits, op.passDead);
      return;
    }
    const o = op.outcome;
    if (op.merged) {
      // Written in its final state by the insert earlier in this commit; it stands only if that insert happened.
      const node = this.#nodes.get(op.nodeId);
      if (!node || !this.#insertedIds.has(op.nodeId)) {
        this.#reject(op.nodeId);
        return;
      }
      if (op.children.length > 0) this.#insertChildren(op.runId, node, op.children, op.waits, op.passDead);
      if (o.type === 'wait' && op.children.length === 0) this.#touched.add(op.nodeId);
      for (const record of op.emits) this.#emits.push({ run_id: op.runId, node_id: op.nodeId, record: textOf(record), i: this.#emits.length });
      return;
    }
    if (op.ifReady) {
      this.#applyIfReady(op);
      return;
    }
    const node = this.#fenced(op.nodeId, op.epoch);
    if (!node) {
      this.#reject(op.nodeId);
      return;
    }
    let state: NodeState;
    switch (o.type) {
      case 'done':
        state = 'done';
        this.#change(node, { state, result: textOfOptional(o.result), attempts: op.attempts, owner: null, suspect: false });
        break;
      case 'wait':
        state = 'waiting';
        this.#change(node, { state, result: textOfOptional(o.result), attempts: op.attempts, owner: null, suspect: false });
        break;
      case 'retry':
        state = 'pending';
        this.#change(node, { state, attempts: op.attempts, owner: null, availableAt: o.availableAt });
        this.#addError(node, o.error);
        break;
      case 'dead':
        state = 'dead';
        this.#change(node, { state, attempts: op.attempts, owner: null });
        this.#addError(node, o.error);
        break;
      case 'park':
        state = 'parked';
        this.#change(node, { state, attempts: op.attempts, owner: null, parkReason: o.reason });
        break;
      case 'release':
        state = 'pending';
        this.#change(node, { state, owner: null, attempts: op.attempts, availableAt: o.availableAt ?? 0 });
        this.#bumpEpoch(node);
        break;
    }
    this.#delta(op.runId, 'running', -1);
    this.#delta(op.runId, state, 1);
    if (o.type === 'park' && o.pauseRun) this.#pauseRuns.set(op.runId, o.reason);
    if (op.children.length > 0) this.#insertChildren(op.runId, node, op.children, op.waits, op.passDead);
    if (o.type === 'wait' && op.children.length === 0) this.#touched.add(op.nodeId);
    for (const record of op.emits) this.#emits.push({ run_id: op.runId, node_id: op.nodeId, record: textOf(record), i: this.#emits.length });
    if (op.waits && (o.type === 'done' || (o.type === 'dead' && op.passDead))) this.#finished(node);
  }

  /** A combine run ahead of the store's readiness (StepOp.ifReady): done now if nothing it waits on is left. */
  #applyIfReady(op: StepOp): void {
    const o = op.outcome;
    const node = this.#nodes.get(op.nodeId);
    const left = node ? this.#pendingOf(node) - (this.#decrements.get(op.nodeId) ?? 0) : 1;
    if (o.type !== 'done' || !node || !(node.locked || node.row) || node.state !== 'waiting' || node.epoch !== op.epoch || left > 0) {
      this.#reject(op.nodeId);
      return;
    }
    this.#change(node, { state: 'done', phase: 'combine', result: textOfOptional(o.result), attempts: op.attempts, owner: null, suspect: false });
    this.#addPending(node, -this.#pendingOf(node));
    this.#decrements.delete(op.nodeId);
    this.#delta(op.runId, 'waiting', -1);
    this.#delta(op.runId, 'done', 1);
    for (const record of op.emits) this.#emits.push({ run_id: op.runId, node_id: op.nodeId, record: textOf(record), i: this.#emits.length });
    if (op.waits) this.#finished(node);
  }

  /** A node reached its end: each parent waiting on it has one unfinished child fewer. */
  #finished(node: NodeView): void {
    const parents = new Set(node.edgeParents);
    for (const parent of this.#newEdgeParents.get(node.id) ?? []) parents.add(parent);
    if (node.parentId !== null) this.#decrements.set(node.parentId, (this.#decrements.get(node.parentId) ?? 0) + 1);
    for (const parent of parents) this.#decrements.set(parent, (this.#decrements.get(parent) ?? 0) + 1);
  }

  #run(runId: string): RunView {
    const run = this.#runs.get(runId);
    if (!run) throw new Error(`Commit names run ${runId}, which is not in the store.`);
    return run;
  }

  #insertChildren(runId: string, parent: NodeView, children: readonly NewNode[], waits: boolean, passDead: boolean): void {
    const run = this.#run(runId);
    let unfinished = 0;
    for (const child of children) {
      let state: NodeState = child.state;
      let parkReason: string | null = null;
      // A child whose step ran already (born and finished within its parent's group) is kept as it is: parking
      // it now would leave its results, children and its parent's combine built on a node that never ran.
      if (run.budget !== null && run.count >= run.budget && (state === 'pending' || state === 'running')) {
        state = 'parked';
        parkReason = `node budget of ${run.budget} reached`;
        this.#pauseRuns.set(runId, parkReason);
      } else if (state === 'parked') {
        parkReason = child.error?.message ?? 'parked';
      }
      const existingId = child.keyed ? (this.#newKeys.get(runKey(runId, child.key)) ?? this.#storedKeys.get(runKey(runId, child.key))) : undefined;
      if (existingId === undefined) {
        const row: NewRow = {
          id: child.id,
          run_id: runId,
          parent_id: parent.id,
          ord: child.ord,
          key: child.key,
          keyed: child.keyed,
          depth: child.depth,
          priority: child.priority,
          order_key: run.order === 'dfs' ? -child.id : child.id,
          version: child.version,
          state,
          phase: 'run',
          input: textOf(child.input),
          context: textOfOptional(child.context),
          result: state === 'done' || state === 'waiting' ? textOfOptional(child.result) : null,
          attempts: child.attempts ?? 0,
          epoch: state === 'running' || state === 'done' || state === 'waiting' ? 1 : 0,
          owner: state === 'running' ? this.#workerId : null,
          suspect: false,
          pending_children: 0,
          spawned: 0,
          available_at: child.availableAt ?? 0,
          park_reason: parkReason,
          errors: child.error ? [storableError(child.error)] : null,
          traceparent: child.traceparent,
        };
        this.#nodes.set(child.id, { ...this.#view(child.id, runId, state, 0), parentId: parent.id, epoch: row.epoch, row });
        this.#inserted.push(row);
        this.#insertedIds.add(child.id);
        if (child.keyed) this.#newKeys.set(runKey(runId, child.key), child.id);
        run.count++;
        run.created++;
        this.#delta(runId, state, 1);
        if (state !== 'done' && !(state === 'dead' && passDead)) unfinished++;
        continue;
      }
      // A keyed child that exists already: this parent shares it (a memoised DAG).
      this.#duplicates.push(child.id);
      const existing = this.#nodes.get(existingId);
      if (!existing) throw new Error(`Keyed node ${existingId} was found but not read.`);
      // A key this parent lists twice is one child of it: counted and linked once, or it would wait forever
      // for a second completion that never comes.
      if (existing.parentId === parent.id || existing.edgeParents.includes(parent.id) || this.#edgeSet.has(`${parent.id}:${existing.id}`)) continue;
      this.#link(parent.id, existing.id, child.ord);
      if (waits && existing.state !== 'done' && !(existing.state === 'dead' && passDead)) unfinished++;
    }
    if (waits && unfinished > 0) this.#addPending(parent, unfinished);
    // Every child finished already (or was shared and done): the parent may be ready for its combine now.
    else if (waits) this.#touched.add(parent.id);
  }

  #link(parentId: number, childId: number, ord: number): void {
    const key = `${parentId}:${childId}`;
    if (this.#edgeSet.has(key)) return;
    this.#edgeSet.add(key);
    this.#edges.push({ parent_id: parentId, child_id: childId, ord });
    let parents = this.#newEdgeParents.get(childId);
    if (!parents) {
      parents = new Set();
      this.#newEdgeParents.set(childId, parents);
    }
    parents.add(parentId);
  }

  // ------------------------------------------------------------------ finish

  /** Applies the gathered decrements and leases the parents whose last child finished. */
  #finish(): (number | LeasedNode)[] {
    for (const [parentId, n] of this.#decrements) {
      const parent = this.#nodes.get(parentId);
      // A parent row that does not exist (removed outside rlm) has nothing to count.
      if (!parent) continue;
      this.#addPending(parent, -n);
      if (parent.state === 'waiting' && this.#pendingOf(parent) <= 0) this.#touched.add(parentId);
    }
    const ready: (number | LeasedNode)[] = [];
    for (const id of this.#touched) {
      const node = this.#nodes.get(id);
      if (node?.state !== 'waiting' || this.#pendingOf(node) > 0) continue;
      // The combine phase is a new step: it starts with a fresh attempt count.
      this.#change(node, { state: 'running', owner: this.#workerId, phase: 'combine', suspect: false, attempts: 0 });
      this.#bumpEpoch(node);
      node.ready = true;
      this.#delta(node.runId, 'waiting', -1);
      this.#delta(node.runId, 'running', 1);
      const row = node.row;
      ready.push(
        row
          ? {
              id: row.id,
              runId: row.run_id,
              parentId: row.parent_id,
              key: row.key,
              depth: row.depth,
              priority: row.priority,
              version: row.version,
              input: payloadOf(row.input, { table: 'rlm_nodes', column: 'input', row }) ?? 'null',
              context: payloadOf(row.context, { table: 'rlm_nodes', column: 'context', row }),
              phase: 'combine',
              attempts: row.attempts,
              epoch: row.epoch,
              suspect: false,
              fanoutApproved: false,
              spawned: row.spawned,
              traceparent: row.traceparent,
            }
          : id,
      );
    }
    return ready;
  }

  /** Counters, pauses and run ends, decided in memory under the run locks; returns the runs that left `running`. */
  #settle(): string[] {
    const finished: string[] = [];
    for (const [runId, delta] of this.#deltas) {
      const run = this.#run(runId);
      const before = run.state;
      for (const state of Object.keys(delta) as NodeState[]) run.counts[state] += delta[state];
      let state = run.state;
      let pauseReason = run.pauseReason;
      const reason = this.#pauseRuns.get(runId);
      if (reason !== undefined && state === 'running') {
        state = 'paused';
        pauseReason = reason;
        run.write = 'pause';
      }
      if (run.counts.pending + run.counts.running === 0 && run.counts.waiting > 0) {
        // Stalled with nodes waiting: the store searches for a dependency cycle after the write, then settles.
        this.#stalled.push({ runId, wasRunning: before === 'running' });
        run.state = state;
        run.pauseReason = pauseReason;
        continue;
      }
      const root = this.#nodes.get(run.rootId);
      const settled = settledState({ state, counts: run.counts, rootState: root?.state ?? run.rootState, pauseReason, reopen: false });
      if (settled.state !== state || settled.state === 'completed') {
        state = settled.state;
        pauseReason = state === 'paused' ? settled.pauseReason : null;
        run.write = 'settle';
      }
      run.state = state;
      run.pauseReason = pauseReason;
      if (before === 'running' && state !== 'running') finished.push(runId);
    }
    return finished;
  }

  // ------------------------------------------------------------------ write

  /** Writes everything in one statement; returns the stored parents that became ready, leased. */
  async #write(): Promise<Map<number, LeasedNode>> {
    const t = this.#t;
    const ctes: string[] = [];
    const params: unknown[] = [this.#now];
    const param = (value: unknown) => {
      params.push(JSON.stringify(value));
      return `$${params.length}::json`;
    };
    const updates: Row[] = [];
    for (const node of this.#nodes.values()) {
      if (node.row) continue;
      const c = node.changes;
      const changed = Object.keys(c).length > 0 || node.errorsAdd.length > 0 || node.epochInc !== 0 || node.pendingDelta !== 0 || node.ready;
      if (!changed) continue;
      updates.push({
        id: node.id,
        expect_state: node.locked ? node.readState : node.ready ? 'waiting' : null,
        expect_epoch: node.locked ? node.readEpoch : null,
        expect_pending: node.ready ? node.pending : null,
        state: c.state ?? null,
        phase: c.phase ?? null,
        result_set: 'result' in c,
        result: c.result ?? null,
        attempts: c.attempts ?? null,
        owner_set: 'owner' in c,
        owner: c.owner ?? null,
        suspect: c.suspect ?? null,
        available_at: c.availableAt ?? null,
        errors_add: node.errorsAdd.length > 0 ? node.errorsAdd : null,
        park_reason_set: 'parkReason' in c,
        park_reason: c.parkReason ?? null,
        epoch_inc: node.epochInc,
        spawned: c.spawned ?? null,
        pending_delta: node.pendingDelta,
        ready: node.ready,
      });
    }
    if (updates.length > 0) {
      ctes.push(`upd AS (
        UPDATE ${t.nodes} n SET
          state = COALESCE(v.state, n.state),
          phase = COALESCE(v.phase, n.phase),
          result = CASE WHEN v.result_set THEN v.result ELSE n.result END,
          attempts = COALESCE(v.attempts, n.attempts),
          owner = CASE WHEN v.owner_set THEN v.owner ELSE n.owner END,
          suspect = COALESCE(v.suspect, n.suspect),
          available_at = COALESCE(v.available_at, n.available_at),
          errors = CASE WHEN v.errors_add IS NULL THEN n.errors ELSE COALESCE(n.errors, '[]'::jsonb) || v.errors_add END,
          park_reason = CASE WHEN v.park_reason_set THEN v.park_reason ELSE n.park_reason END,
          epoch = n.epoch + v.epoch_inc,
          spawned = COALESCE(v.spawned, n.spawned),
          pending_children = n.pending_children + v.pending_delta,
          updated_at = $1
        FROM json_to_recordset(${param(updates)}) AS v(id bigint, expect_state text, expect_epoch integer, expect_pending integer, state text, phase text,
          result_set boolean, result text, attempts integer, owner_set boolean, owner text, suspect boolean, available_at bigint, errors_add jsonb,
          park_reason_set boolean, park_reason text, epoch_inc integer, spawned integer, pending_delta integer, ready boolean)
        WHERE n.id = v.id
          AND (v.expect_state IS NULL OR n.state = v.expect_state)
          AND (v.expect_epoch IS NULL OR n.epoch = v.expect_epoch)
          AND (v.expect_pending IS NULL OR n.pending_children = v.expect_pending)
        RETURNING n.id, v.ready, n.run_id, n.parent_id, n.key, n.depth, n.priority, n.version, n.phase, n.attempts, n.epoch, n.suspect,
          n.fanout_ok, n.spawned, CASE WHEN v.ready THEN n.input END AS input, CASE WHEN v.ready THEN n.context END AS context,
          CASE WHEN v.ready THEN n.traceparent END AS traceparent)`);
    }
    if (this.#inserted.length > 0) {
      // Only the columns that vary; json_to_recordset with a column list parses far less than a whole row type.
      ctes.push(`ins AS (
        INSERT INTO ${t.nodes} (id, run_id, parent_id, ord, key, keyed, depth, priority, order_key, version, state, phase, input, context, result,
          attempts, epoch, owner, suspect, pending_children, spawned, available_at, park_reason, errors, traceparent, created_at, updated_at)
        SELECT v.id, v.run_id, v.parent_id, v.ord, v.key, v.keyed, v.depth, v.priority, v.order_key, v.version, v.state, v.phase, v.input, v.context,
          v.result, v.attempts, v.epoch, v.owner, v.suspect, v.pending_children, v.spawned, v.available_at, v.park_reason, v.errors, v.traceparent, $1, $1
        FROM json_to_recordset(${param(this.#inserted)}) AS v(id bigint, run_id text, parent_id bigint, ord integer, key text, keyed boolean, depth integer,
          priority double precision, order_key bigint, version integer, state text, phase text, input text, context text, result text, attempts integer,
          epoch integer, owner text, suspect boolean, pending_children integer, spawned integer, available_at bigint, park_reason text, errors jsonb,
          traceparent text)
        RETURNING 1)`);
    }
    if (this.#edges.length > 0) {
      ctes.push(`edg AS (INSERT INTO ${t.edges} (parent_id, child_id, ord)
        SELECT parent_id, child_id, ord FROM json_to_recordset(${param(this.#edges)}) AS v(parent_id bigint, child_id bigint, ord integer)
        ON CONFLICT DO NOTHING RETURNING 1)`);
    }
    if (this.#emits.length > 0) {
      // Records of one run are written in commit order: the run lock orders commits, and `i` orders rows.
      ctes.push(`emt AS (INSERT INTO ${t.emits} (run_id, node_id, record)
        SELECT v.run_id, v.node_id, v.record FROM json_to_recordset(${param(this.#emits)}) AS v(run_id text, node_id bigint, record text, i integer)
        ORDER BY v.i RETURNING 1)`);
    }
    if (this.#effects.length > 0) {
      ctes.push(`eff AS (INSERT INTO ${t.effects} (run_id, node_key, name, node_id, value, at)
        SELECT run_id, node_key, name, node_id, value, at FROM json_to_recordset(${param(this.#effects)})
          AS v(run_id text, node_key text, name text, node_id bigint, value text, at bigint)
        ON CONFLICT DO NOTHING RETURNING 1)`);
    }
    const runs: Row[] = [];
    for (const [runId, d] of this.#deltas) {
      const run = this.#run(runId);
      const root = this.#nodes.get(run.rootId);
      const rootResult = root?.row ? { value: root.row.result } : root && 'result' in root.changes ? { value: root.changes.result ?? null } : undefined;
      runs.push({
        id: runId,
        d_pending: d.pending,
        d_running: d.running,
        d_waiting: d.waiting,
        d_done: d.done,
        d_dead: d.dead,
        d_parked: d.parked,
        created: run.created,
        write: run.write,
        state: run.state,
        pause_reason: run.pauseReason,
        root_result_known: rootResult !== undefined,
        root_result: rootResult?.value ?? null,
        finished_at: run.state === 'completed' || run.state === 'failed' ? this.#now : null,
      });
    }
    if (runs.length > 0) {
      // The state and what goes with it are written only when the run paused or settled, as the SQLite store does.
      ctes.push(`run AS (
        UPDATE ${t.runs} r SET
          n_pending = r.n_pending + v.d_pending, n_running = r.n_running + v.d_running, n_waiting = r.n_waiting + v.d_waiting,
          n_done = r.n_done + v.d_done, n_dead = r.n_dead + v.d_dead, n_parked = r.n_parked + v.d_parked,
          node_count = r.node_count + v.created,
          state = CASE WHEN v.write = 'keep' THEN r.state ELSE v.state END,
          pause_reason = CASE WHEN v.write = 'keep' THEN r.pause_reason ELSE v.pause_reason END,
          result = CASE WHEN v.write <> 'settle' THEN r.result
                        WHEN v.state <> 'completed' THEN NULL
                        WHEN v.root_result_known THEN v.root_result
                        ELSE (SELECT s.result FROM ${t.nodes} s WHERE s.id = r.root_id) END,
          finished_at = CASE WHEN v.write <> 'settle' THEN r.finished_at ELSE v.finished_at END,
          updated_at = $1
        FROM json_to_recordset(${param(runs)}) AS v(id text, d_pending bigint, d_running bigint, d_waiting bigint, d_done bigint, d_dead bigint,
          d_parked bigint, created bigint, write text, state text, pause_reason text, root_result_known boolean, root_result text, finished_at bigint)
        WHERE r.id = v.id RETURNING 1)`);
    }
    const readyExisting = new Map<number, LeasedNode>();
    if (ctes.length === 0) return readyExisting;
    // $1 (now) is typed here too, for a commit whose statement uses it nowhere else (effects only).
    const select = updates.length > 0 ? 'SELECT *, $1::bigint AS now FROM upd' : 'SELECT $1::bigint AS now WHERE false';
    const rows = await this.#tx.query(`WITH ${ctes.join(',\n')}\n${select}`, params);
    if (rows.length !== updates.length) {
      // Every updated row was read under a lock (or its run's lock) at the start of this commit; a mismatch
      // means something wrote to it outside rlm's protocol. Nothing is committed.
      throw new Error(`A commit found ${updates.length - rows.length} node(s) changed under it; the commit was rolled back.`);
    }
    for (const row of rows) {
      if (row.ready !== true) continue;
      readyExisting.set(row.id as number, leasedFromRow(row));
    }
    return readyExisting;
  }
}
