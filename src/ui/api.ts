/*
 * The dashboard's API: what the page reads and the actions it takes, over the Store interface only, so the
 * dashboard works against every store the engine does (SQLite file or PostgreSQL).
 *
 * - Rates are not stored anywhere: a sampler reads the runs' counters every second and keeps a small ring of
 *   samples per run, from which the live rate and the frontier chart are computed.
 * - Reads that scan (a depth histogram, a subtree's counts) are cached for a while that grows with what they
 *   cost, so a page polling every second cannot keep a large store busy.
 */
import { NotFoundError, RlmError } from '../engine/errors.js';
import { payloadView } from '../engine/json-view.js';
import { estimatedProgress } from '../observe/progress.js';
import { redactUrl } from '../store/open.js';
import type { NodeRecord, Payload, RunRecord, StateCounts, Store } from '../store/store.js';

/**
 * Hides connection-string passwords anywhere in a text. redactUrl expects the text to start with the URL; a
 * driver's error message may carry it in the middle.
 */
export function redact(text: string): string {
  return redactUrl(text.replace(/\b[a-z][\w+.-]*:\/\/[^\s'"`<>]+/gi, (url) => redactUrl(url)));
}

/** An error the API answers with: an HTTP status and a message for the page. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** One reading of a run's counters. */
interface Sample {
  t: number;
  done: number;
  frontier: number;
}

export type GateAction = 'pause' | 'resume';
export type NodeAction = 'retry' | 'drop' | 'approve' | 'reject';

const SAMPLES_PER_RUN = 300;
const RUNS_SAMPLED = 100;
/** Longest payload (input, context, result, effect value) sent whole; longer ones are cut, with a note. */
const PAYLOAD_CHARS = 100_000;
const LIST_ROWS = 100;
/** Children per page of the tree. */
export const CHILDREN_PAGE = 100;
const MAX_NODE_IDS = 1_000;
/** Time the children endpoint spends on subtree counts; the rest are fetched one by one by the page. */
const SUBTREE_BUDGET_MS = 150;
/**
 * Largest subtree the children endpoint counts itself: a bigger one would hold the answer (and, on SQLite, the
 * process) for as long as its walk takes, so the page asks for it on its own once the rows are shown.
 */
const INLINE_SUBTREE_NODES = 5_000;
/** Largest run whose depth histogram (a scan of all its nodes) the run endpoint computes itself. */
const INLINE_HISTOGRAM_NODES = 100_000;

/** A value cached for a time that grows with what it cost to compute (20×, at least `minMs`). */
class CostCache<K, V> {
  readonly #entries = new Map<K, { value: V; until: number }>();
  /** Computations under way: a second caller waits for the first one's walk instead of starting its own. */
  readonly #pending = new Map<K, Promise<V>>();
  constructor(
    readonly minMs: number,
    readonly maxEntries: number,
  ) {}

  peek(key: K): V | undefined {
    const entry = this.#entries.get(key);
    return entry && entry.until > Date.now() ? entry.value : undefined;
  }

  async get(key: K, compute: () => Promise<V>): Promise<V> {
    const cached = this.peek(key);
    if (cached !== undefined) return cached;
    const pending = this.#pending.get(key);
    if (pending) return pending;
    const started = Date.now();
    const promise = compute().then(
      (value) => {
        this.put(key, value, Date.now() - started);
        return value;
      },
      (error: unknown) => {
        this.#pending.delete(key);
        throw error;
      },
    );
    this.#pending.set(key, promise);
    return promise;
  }

  /** Keeps `value` for 20× the `costMs` it took (at least `minMs`). */
  put(key: K, value: V, costMs: number): void {
    this.#pending.delete(key);
    if (this.#entries.size >= this.maxEntries) this.#entries.clear();
    this.#entries.set(key, { value, until: Date.now() + Math.max(this.minMs, 20 * costMs) });
  }

  clear(): void {
    this.#entries.clear();
    this.#pending.clear();
  }
}

export function parseRunId(text: string): string {
  let id: string;
  try {
    id = decodeURIComponent(text);
  } catch {
    throw new ApiError(400, `\`${text.slice(0, 80)}\` is not a valid run id (bad URL encoding).`);
  }
  if (id.length === 0 || id.length > 256 || /[\u0000-\u001f\u007f]/.test(id)) {
    throw new ApiError(400, 'A run id is 1 to 256 printable characters.');
  }
  return id;
}

export function parseNodeId(value: unknown): number {
  const id = typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : value;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) {
    throw new ApiError(400, `\`${String(value).slice(0, 40)}\` is not a node id; node ids are positive integers.`);
  }
  return id;
}

/** A stored payload as the page shows it: parsed JSON, or the text cut short when it is very long. */
function payload(stored: Payload | null): unknown {
  if (stored === null) return null;
  if (typeof stored !== 'string') {
    // Binary (msgpack): shown as tagged JSON, cut like text when long.
    const text = JSON.stringify(payloadView(stored));
    return text.length > PAYLOAD_CHARS ? `${text.slice(0, PAYLOAD_CHARS)}… (${text.length - PAYLOAD_CHARS} more characters not shown)` : JSON.parse(text);
  }
  const text = stored;
  if (text.length > PAYLOAD_CHARS) return `${text.slice(0, PAYLOAD_CHARS)}… (${text.length - PAYLOAD_CHARS} more characters not shown)`;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function iso(ms: number | null): string | null {
  return ms ? new Date(ms).toISOString() : null;
}

function frontierOf(counts: StateCounts): number {
  return counts.pending + counts.running;
}

function treeRow(node: NodeRecord, subtree: StateCounts | null) {
  return { id: node.id, key: node.key, state: node.state, phase: node.phase, depth: node.depth, attempts: node.attempts, pendingChildren: node.pendingChildren, subtree };
}

export class DashboardApi {
  readonly #store: Store;
  readonly #sampleMs: number;
  readonly #samples = new Map<string, Sample[]>();
  readonly #histograms: CostCache<string, Array<{ depth: number; count: number }>>;
  readonly #subtrees: CostCache<number, StateCounts>;
  #storeError: string | null = null;

  constructor(store: Store, sampleMs: number) {
    this.#store = store;
    this.#sampleMs = sampleMs;
    this.#histograms = new CostCache(Math.max(2_000, 2 * sampleMs), 1_000);
    this.#subtrees = new CostCache(Math.max(5_000, 5 * sampleMs), 10_000);
  }

  /** Reads every recent run's counters once: the sampler calls this every `sampleMs`. */
  async sample(): Promise<RunRecord[]> {
    try {
      const runs = await this.#store.listRuns(RUNS_SAMPLED);
      this.#storeError = null;
      const seen = new Set<string>();
      for (const run of runs) {
        seen.add(run.id);
        this.#record(run);
      }
      for (const id of this.#samples.keys()) if (!seen.has(id)) this.#samples.delete(id);
      return runs;
    } catch (error) {
      this.#storeError = redact((error as Error).message);
      throw error;
    }
  }

  #record(run: RunRecord): void {
    let ring = this.#samples.get(run.id);
    if (!ring) this.#samples.set(run.id, (ring = []));
    const now = Date.now();
    const last = ring[ring.length - 1];
    // Two readings closer than half a period say nothing new about the rate (the page and the sampler both read).
    if (last && now - last.t < this.#sampleMs / 2) return;
    ring.push({ t: now, done: run.counts.done, frontier: frontierOf(run.counts) });
    if (ring.length > SAMPLES_PER_RUN) ring.splice(0, ring.length - SAMPLES_PER_RUN);
  }

  /** Nodes done per second over the last few samples; null until two samples exist. */
  #rate(run: RunRecord): number | null {
    if (run.state === 'completed' || run.state === 'failed' || run.state === 'cancelled') return 0;
    const ring = this.#samples.get(run.id);
    const last = ring?.[ring.length - 1];
    if (!ring || !last || ring.length < 2) return null;
    let first = ring[0] as Sample;
    for (let i = ring.length - 2; i >= 0; i--) {
      first = ring[i] as Sample;
      if (last.t - first.t >= 5 * this.#sampleMs) break;
    }
    const seconds = (last.t - first.t) / 1000;
    return seconds > 0 ? Math.max(0, Math.round((last.done - first.done) / seconds)) : null;
  }

  /** `growing`, `shrinking` or `steady`: the frontier's mean over the last ten samples against the ten before. */
  #trend(runId: string): 'growing' | 'shrinking' | 'steady' | null {
    const ring = this.#samples.get(runId) ?? [];
    if (ring.length < 4) return null;
    const half = Math.min(10, Math.floor(ring.length / 2));
    const mean = (from: number) => ring.slice(from, from + half).reduce((a, b) => a + b.frontier, 0) / half;
    const before = mean(ring.length - 2 * half);
    const change = mean(ring.length - half) - before;
    if (Math.abs(change) < Math.max(5, before / 5)) return 'steady';
    return change > 0 ? 'growing' : 'shrinking';
  }

  #summary(run: RunRecord) {
    const elapsed = ((run.finishedAt ?? Date.now()) - run.createdAt) / 1000;
    const rate = this.#rate(run);
    const averageRate = elapsed > 0 ? Math.round(run.counts.done / elapsed) : 0;
    const progress = estimatedProgress(run, rate);
    return {
      id: run.id,
      task: run.task,
      taskVersion: run.taskVersion,
      state: run.state,
      pauseReason: run.pauseReason === null ? null : redact(run.pauseReason),
      counts: run.counts,
      nodes: run.nodeCount,
      frontier: frontierOf(run.counts),
      frontierTrend: this.#trend(run.id),
      rate,
      averageRate,
      estimate: progress.estimate,
      percent: progress.percent,
      etaSeconds: progress.etaSeconds,
      pastEstimate: progress.pastEstimate,
      costBudget: run.costBudget,
      costSpent: run.costSpent,
      createdAt: iso(run.createdAt),
      updatedAt: iso(run.updatedAt),
      finishedAt: iso(run.finishedAt),
    };
  }

  async #run(runId: string): Promise<RunRecord> {
    const run = await this.#store.getRun(runId);
    if (!run) throw new ApiError(404, `No run ${runId} in this store.`);
    return run;
  }

  async #node(runId: string, nodeId: number): Promise<NodeRecord> {
    const node = await this.#store.getNode(nodeId);
    if (!node || node.runId !== runId) throw new ApiError(404, `No node ${nodeId} in run ${runId}.`);
    return node;
  }

  /** The runs list, newest first. */
  async overview() {
    let runs: RunRecord[] = [];
    try {
      runs = await this.sample();
    } catch {
      // The message is in storeError; the page shows it and keeps polling.
    }
    return { store: redact(this.#store.description), storeError: this.#storeError, sampleMs: this.#sampleMs, runs: runs.map((run) => this.#summary(run)) };
  }

  /** One run: counts, live rate, chart series, depth histogram, the head of its DLQ and of its parked nodes. */
  async run(runId: string) {
    const run = await this.#run(runId);
    this.#record(run);
    // A big run's histogram scans every node: the page asks for it apart, after the tree, so the scan never holds
    // the run's first paint.
    const [depthHistogram, dead, parked] = await Promise.all([
      run.nodeCount <= INLINE_HISTOGRAM_NODES ? this.depths(runId) : (this.#histograms.peek(runId) ?? null),
      run.counts.dead > 0 ? this.#store.listNodes(runId, { state: 'dead', limit: LIST_ROWS + 1 }) : [],
      run.counts.parked > 0 ? this.#store.listNodes(runId, { state: 'parked', limit: LIST_ROWS + 1 }) : [],
    ]);
    const ring = this.#samples.get(runId) ?? [];
    // Each point's rate is over the last three sample periods: group commits make single periods jumpy.
    let from = 0;
    const series = ring.map((sample, i) => {
      while (from < i - 1 && sample.t - (ring[from] as Sample).t > 3 * this.#sampleMs) from++;
      const previous = i > 0 ? (ring[from] as Sample) : undefined;
      const seconds = previous ? (sample.t - previous.t) / 1000 : 0;
      return { t: sample.t, frontier: sample.frontier, rate: previous && seconds > 0 ? Math.max(0, (sample.done - previous.done) / seconds) : null };
    });
    return {
      run: { ...this.#summary(run), rootId: run.rootId, order: run.order, nodeBudget: run.nodeBudget, result: run.state === 'completed' ? payload(run.result) : null },
      series,
      depthHistogram,
      dlq: {
        // Dropped nodes stay dead but leave the queue, so the queue can be shorter than counts.dead.
        more: dead.length > LIST_ROWS,
        nodes: dead.slice(0, LIST_ROWS).map((n) => {
          const last = n.errors[n.errors.length - 1];
          return { id: n.id, key: n.key, depth: n.depth, attempts: n.attempts, error: last ? redact(last.message) : null, code: last?.code ?? null, at: iso(last?.at ?? n.updatedAt) };
        }),
      },
      parked: { more: parked.length > LIST_ROWS, nodes: parked.slice(0, LIST_ROWS).map((n) => ({ id: n.id, key: n.key, depth: n.depth, reason: n.parkReason })) },
    };
  }

  /** The run's nodes per depth (cached for 20× what the scan cost). */
  depths(runId: string): Promise<Array<{ depth: number; count: number }>> {
    return this.#histograms.get(runId, () => this.#store.depthHistogram(runId));
  }

  /** A page of a node's children with their states, and their subtree counts as far as the time budget allows. */
  async children(runId: string, nodeId: number, offset: number, limit: number) {
    await this.#node(runId, nodeId);
    const page = Math.min(Math.max(limit, 1), 500);
    const rows = await this.#store.listChildren(nodeId, page + 1, offset);
    const children = rows.slice(0, page);
    const deadline = Date.now() + SUBTREE_BUDGET_MS;
    const out = [];
    for (const child of children) {
      const subtree = this.#subtrees.peek(child.id) ?? (Date.now() < deadline ? await this.#smallSubtree(child.id) : null);
      out.push(treeRow(child, subtree));
    }
    return { nodeId, offset, children: out, more: rows.length > page };
  }

  #subtree(nodeId: number): Promise<StateCounts> {
    return this.#subtrees.get(nodeId, () => this.#store.subtreeCounts(nodeId));
  }

  /** A subtree's counts if it is small enough to count now; null for a big one (the page asks for it apart). */
  async #smallSubtree(nodeId: number): Promise<StateCounts | null> {
    const started = Date.now();
    const counts = await this.#store.subtreeCountsUpTo(nodeId, INLINE_SUBTREE_NODES);
    if (counts) this.#subtrees.put(nodeId, counts, Date.now() - started);
    return counts;
  }

  /** The root's subtree is the whole run, whose counters the store keeps: no need to walk it. */
  async #subtreeOf(node: NodeRecord): Promise<StateCounts> {
    if (node.parentId === null) return (await this.#run(node.runId)).counts;
    return this.#subtree(node.id);
  }

  /** A node's row in the tree, with its subtree counts (the tree's root, or one the children page left out). */
  async treeNode(runId: string, nodeId: number) {
    const node = await this.#node(runId, nodeId);
    return treeRow(node, await this.#subtreeOf(node));
  }

  /** Everything about one node: input, context, result, attempts, error history, effects, subtree counts. */
  async node(runId: string, nodeId: number) {
    const node = await this.#node(runId, nodeId);
    const [effects, subtree] = await Promise.all([this.#store.listEffects(nodeId), this.#subtreeOf(node)]);
    return {
      id: node.id,
      runId: node.runId,
      key: node.key,
      parentId: node.parentId,
      depth: node.depth,
      state: node.state,
      phase: node.phase,
      attempts: node.attempts,
      epoch: node.epoch,
      owner: node.owner,
      version: node.version,
      priority: node.priority,
      pendingChildren: node.pendingChildren,
      parkReason: node.parkReason,
      availableAt: iso(node.availableAt),
      createdAt: iso(node.createdAt),
      updatedAt: iso(node.updatedAt),
      traceparent: node.traceparent,
      input: payload(node.input),
      context: payload(node.context),
      result: payload(node.result),
      // A handler's error may quote a connection string; its password is not the dashboard's to show.
      errors: node.errors.map((e) => ({ ...e, message: redact(e.message), stack: e.stack === null ? null : redact(e.stack), at: iso(e.at) })),
      effects: effects.map((e) => ({ name: e.name, value: payload(e.value), at: iso(e.at) })),
      subtree,
    };
  }

  /** Pause or resume a run. */
  async gate(runId: string, action: GateAction) {
    const run = await this.#run(runId);
    if (action === 'pause') {
      const changed = await this.#store.setRunState(runId, 'paused', { from: ['running'], reason: 'paused by a person (dashboard)' });
      if (!changed) throw new ApiError(409, `Run ${runId} is ${run.state}, not running; only a running run can be paused.`);
      return { changed: 1, message: `Run ${runId} paused; workers finish their steps in flight and stop claiming its nodes.` };
    }
    const changed = await this.#store.setRunState(runId, 'running', { from: ['paused'] });
    if (!changed) throw new ApiError(409, `Run ${runId} is ${run.state}, not paused.`);
    // Parked nodes and nothing else to run: the run is paused again, for them.
    await this.#store.settleRun(runId);
    return { changed: 1, message: `Run ${runId} may run again: a worker of its task picks it up (\`rlm worker\`, or \`rlm run <module> --run ${runId}\`).` };
  }

  /** Retry or drop dead nodes, approve or reject parked ones: named nodes, or `all` of the run's. */
  async act(runId: string, action: NodeAction, body: unknown) {
    await this.#run(runId);
    const wanted = action === 'retry' || action === 'drop' ? 'dead' : 'parked';
    const targets = await this.#targets(runId, body, wanted, action);
    let changed: number;
    switch (action) {
      case 'retry':
        changed = await this.#store.redrive(runId, targets);
        break;
      case 'drop':
        changed = await this.#store.dropDead(runId, targets);
        break;
      default:
        changed = await this.#store.decideParked(runId, targets, action);
    }
    this.#subtrees.clear();
    this.#histograms.clear();
    const messages: Record<NodeAction, string> = {
      retry: `${changed} node(s) sent back to the frontier; a worker of the run's task picks them up.`,
      drop: `${changed} node(s) dropped from the dead-letter queue.`,
      approve: `${changed} parked node(s) approved.`,
      reject: `${changed} parked node(s) rejected into the dead-letter queue.`,
    };
    return { changed, message: messages[action] };
  }

  /** Validates an action's body: `{ "nodes": [ids] }` of nodes of this run in the right state, or `{ "all": true }`. */
  async #targets(runId: string, body: unknown, wanted: 'dead' | 'parked', action: NodeAction): Promise<number[] | 'all'> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'Expected a JSON object: { "nodes": [ids] } or { "all": true }.');
    const { nodes, all } = body as { nodes?: unknown; all?: unknown };
    if (all === true && nodes === undefined) return 'all';
    if (!Array.isArray(nodes) || nodes.length === 0 || nodes.length > MAX_NODE_IDS || all !== undefined) {
      throw new ApiError(400, `Expected \`nodes\` to be an array of 1 to ${MAX_NODE_IDS} node ids, or \`all\` to be true (not both).`);
    }
    const ids = [...new Set(nodes.map(parseNodeId))];
    for (const id of ids) {
      const node = await this.#node(runId, id);
      if (node.state !== wanted) throw new ApiError(409, `Node ${id} is ${node.state}, not ${wanted}; nothing was changed (${action} applies to ${wanted} nodes).`);
    }
    return ids;
  }
}

/** The HTTP status an error maps to, and a message safe to show (no connection-string password). */
export function errorResponse(error: unknown): { status: number; message: string } {
  if (error instanceof ApiError) return { status: error.status, message: redact(error.message) };
  if (error instanceof NotFoundError) return { status: 404, message: redact(error.message) };
  if (error instanceof RlmError) {
    const unavailable = error.code === 'STORE_UNAVAILABLE' || error.code === 'STORE_IO';
    return { status: unavailable ? 503 : 400, message: redact(error.message) };
  }
  return { status: 500, message: `Unexpected error: ${redact((error as Error)?.message ?? String(error))}` };
}

