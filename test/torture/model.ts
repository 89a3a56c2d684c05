/**
 * A stateful model test of the Store API (TORTURE.md §8.4.3) with fast-check: random sequences of claims,
 * heartbeats, completions, failures, effects, stale (zombie) commits, take-backs of dead and expired workers,
 * graceful releases, crashes, reopened stores and redrives run against a real store and a small model of what
 * the store must hold. After every command the store's projection of the run (state, epoch, owner, attempts of
 * every node, and the run's counters) must equal the model's, and every stale write must be fenced.
 *
 * The same model runs against SQLite and PostgreSQL; fast-check prints the seed and the shrunk command list of a
 * failure, which `--episode` of the suite replays.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { CommitOp, NewNode, Store, StepOutcome } from '../../src/store/store.js';
import { newRun } from '../helpers/new-run.js';

type State = 'pending' | 'running' | 'done' | 'dead';

interface ModelNode {
  id: number;
  state: State;
  epoch: number;
  owner: string | null;
  attempts: number;
}

interface ModelWorker {
  id: string;
  /** Registered and not declared dead or stopped in the store. */
  alive: boolean;
  /** Its last heartbeat set a lease that has ended already. */
  expired: boolean;
  /** What the worker believes it holds: node → the epoch it was leased under. */
  held: Map<number, number>;
}

export interface Model {
  runId: string;
  nodes: Map<number, ModelNode>;
  workers: ModelWorker[];
  /** Workers whose process crashed: still registered (and maybe expired) in the store until taken back. */
  ghosts: ModelWorker[];
  effects: Map<string, string>;
}

export interface Real {
  store: Store;
  reopen(): Promise<void>;
  /** Counts of what was checked, for the report. */
  stats: { commands: number; fenced: number };
}

const TASK = 'model';

function orderedPending(model: Model): ModelNode[] {
  // dfs order: the store sorts by priority (all 0 here), then order_key = -id: the newest first.
  return [...model.nodes.values()].filter((n) => n.state === 'pending').sort((a, b) => b.id - a.id);
}

async function project(model: Model, real: Real, after: string): Promise<void> {
  const rows = await real.store.listNodes(model.runId, { limit: 10_000 });
  const seen = new Set<number>();
  for (const row of rows) {
    seen.add(row.id);
    const want = model.nodes.get(row.id);
    if (!want) throw new Error(`after ${after}: the store has node ${row.id} the model does not`);
    const got = { state: row.state, epoch: row.epoch, owner: row.owner, attempts: row.attempts };
    const exp = { state: want.state, epoch: want.epoch, owner: want.owner, attempts: want.attempts };
    if (JSON.stringify(got) !== JSON.stringify(exp)) throw new Error(`after ${after}: node ${row.id} is ${JSON.stringify(got)}, model ${JSON.stringify(exp)}`);
  }
  for (const id of model.nodes.keys()) if (!seen.has(id)) throw new Error(`after ${after}: node ${id} is missing from the store`);
  const run = await real.store.getRun(model.runId);
  const counts: Record<string, number> = { pending: 0, running: 0, waiting: 0, done: 0, dead: 0, parked: 0 };
  for (const n of model.nodes.values()) counts[n.state] = (counts[n.state] ?? 0) + 1;
  if (JSON.stringify(run?.counts) !== JSON.stringify(counts)) throw new Error(`after ${after}: run counters ${JSON.stringify(run?.counts)}, model ${JSON.stringify(counts)}`);
}

function pickHeld(w: ModelWorker, pick: number): [number, number] | undefined {
  const held = [...w.held.entries()];
  return held.length === 0 ? undefined : held[pick % held.length];
}

function errorEntry(attempt: number) {
  return { attempt, message: 'model failure', code: 'MODEL', stack: null, at: Date.now(), worker: 'model' };
}

/** Fenced iff the node is not running under that epoch any more. */
function fenced(model: Model, nodeId: number, epoch: number): boolean {
  const n = model.nodes.get(nodeId);
  return n?.state !== 'running' || n.epoch !== epoch;
}

abstract class Cmd implements fc.AsyncCommand<Model, Real> {
  check(_model: Readonly<Model>): boolean {
    return true;
  }
  abstract apply(model: Model, real: Real): Promise<void>;
  abstract toString(): string;
  async run(model: Model, real: Real): Promise<void> {
    real.stats.commands++;
    await this.apply(model, real);
    await project(model, real, this.toString());
  }
}

class Claim extends Cmd {
  constructor(
    readonly w: number,
    readonly limit: number,
  ) {
    super();
  }
  async apply(model: Model, real: Real) {
    const w = model.workers[this.w] as ModelWorker;
    const leased = await real.store.claimNodes(w.id, { task: TASK, maxVersion: 1, runIds: [model.runId] }, this.limit);
    const want = w.alive ? orderedPending(model).slice(0, this.limit) : [];
    const got = leased.map((l) => l.id).sort((a, b) => a - b);
    const exp = want.map((n) => n.id).sort((a, b) => a - b);
    if (JSON.stringify(got) !== JSON.stringify(exp)) throw new Error(`${this}: claimed ${got}, model ${exp}`);
    for (const n of want) {
      n.state = 'running';
      n.epoch++;
      n.owner = w.id;
      w.held.set(n.id, n.epoch);
    }
    for (const l of leased) if (l.epoch !== model.nodes.get(l.id)?.epoch) throw new Error(`${this}: node ${l.id} leased under epoch ${l.epoch}`);
  }
  toString() {
    return `Claim(w${this.w}, ${this.limit})`;
  }
}

/** A heartbeat; an expiring one sets a lease that has ended already (the clock moved past it). */
class Heartbeat extends Cmd {
  constructor(
    readonly w: number,
    readonly expire: boolean,
  ) {
    super();
  }
  async apply(model: Model, real: Real) {
    const w = model.workers[this.w] as ModelWorker;
    const alive = await real.store.heartbeat(w.id, this.expire ? -60_000 : 60_000);
    if (alive !== w.alive) throw new Error(`${this}: heartbeat says ${alive}, model ${w.alive}`);
    if (alive) w.expired = this.expire;
  }
  toString() {
    return `Heartbeat(w${this.w}${this.expire ? ', lease already over' : ''})`;
  }
}

/** A step commit: done (with 0–3 children, pending or born leased), retry or dead. */
class Finish extends Cmd {
  constructor(
    readonly w: number,
    readonly pick: number,
    readonly outcome: 'done' | 'retry' | 'dead',
    readonly children: number,
    readonly born: boolean,
    readonly stale: boolean,
  ) {
    super();
  }
  async apply(model: Model, real: Real) {
    const w = model.workers[this.w] as ModelWorker;
    const held = pickHeld(w, this.pick);
    if (!held) return;
    const [nodeId, heldEpoch] = held;
    // A stale commit names an epoch the node had before: a zombie from an earlier lease.
    const epoch = this.stale ? heldEpoch - 1 : heldEpoch;
    const node = model.nodes.get(nodeId) as ModelNode;
    const children: NewNode[] = [];
    if (this.outcome === 'done' && this.children > 0) {
      const first = await real.store.allocateIds(this.children);
      for (let i = 0; i < this.children; i++) {
        children.push({
          id: first + i,
          parentId: nodeId,
          ord: i,
          key: `${nodeId}/${i}`,
          keyed: false,
          depth: 1,
          priority: 0,
          version: 1,
          input: '{}',
          context: null,
          state: this.born ? 'running' : 'pending',
          error: null,
          traceparent: null,
        });
      }
    }
    const outcome: StepOutcome =
      this.outcome === 'done'
        ? { type: 'done', result: String(nodeId) }
        : this.outcome === 'retry'
          ? { type: 'retry', error: errorEntry(node.attempts + 1), availableAt: 0 }
          : { type: 'dead', error: errorEntry(node.attempts + 1) };
    const op: CommitOp = { kind: 'step', runId: model.runId, nodeId, epoch, outcome, attempts: node.attempts + 1, children, emits: [], waits: false, passDead: false };
    const result = await real.store.commit(w.id, [op]);
    const shouldFence = fenced(model, nodeId, epoch);
    const wasFenced = result.rejected.includes(nodeId);
    if (wasFenced !== shouldFence) throw new Error(`${this}: ${wasFenced ? 'fenced' : 'applied'}, model says ${shouldFence ? 'fenced' : 'applied'}`);
    w.held.delete(nodeId);
    if (wasFenced) {
      real.stats.fenced++;
      return;
    }
    node.attempts++;
    node.owner = null;
    node.state = this.outcome === 'done' ? 'done' : this.outcome === 'retry' ? 'pending' : 'dead';
    for (const c of children) {
      model.nodes.set(c.id, { id: c.id, state: this.born ? 'running' : 'pending', epoch: this.born ? 1 : 0, owner: this.born ? w.id : null, attempts: 0 });
      if (this.born) w.held.set(c.id, 1);
    }
  }
  toString() {
    return `Finish(w${this.w}, #${this.pick}, ${this.outcome}, ${this.children}${this.born ? ' born' : ''}${this.stale ? ', stale epoch' : ''})`;
  }
}

class Effect extends Cmd {
  constructor(
    readonly w: number,
    readonly pick: number,
    readonly value: string,
  ) {
    super();
  }
  async apply(model: Model, real: Real) {
    const w = model.workers[this.w] as ModelWorker;
    const held = pickHeld(w, this.pick);
    if (!held) return;
    const [nodeId, epoch] = held;
    const key = `k${nodeId}`;
    const result = await real.store.commit(w.id, [{ kind: 'effect', runId: model.runId, nodeId, nodeKey: key, epoch, name: 'e', value: JSON.stringify(this.value) }]);
    const shouldFence = fenced(model, nodeId, epoch);
    if (result.rejected.includes(nodeId) !== shouldFence) throw new Error(`${this}: fencing disagrees with the model`);
    if (shouldFence) real.stats.fenced++;
    else if (!model.effects.has(key)) model.effects.set(key, JSON.stringify(this.value));
    const stored = await real.store.getEffect(model.runId, key, 'e');
    if ((stored?.value ?? null) !== (model.effects.get(key) ?? null)) throw new Error(`${this}: journal holds ${stored?.value}, model ${model.effects.get(key)}`);
  }
  toString() {
    return `Effect(w${this.w}, #${this.pick}, ${JSON.stringify(this.value)})`;
  }
}

/** The worker is declared dead (its process is gone, or its lease expired): its nodes go back, epoch + 1. */
class TakeBack extends Cmd {
  constructor(
    readonly w: number,
    readonly expired: boolean,
  ) {
    super();
  }
  async apply(model: Model, real: Real) {
    const victims = this.expired
      ? [...model.workers, ...model.ghosts].filter((w) => w.alive && w.expired)
      : [model.workers[this.w] as ModelWorker].filter((w) => w.alive);
    if (this.expired) await real.store.takeBack({ expiredBefore: Date.now(), deadIds: [] });
    else await real.store.takeBack({ deadIds: victims.map((w) => w.id) });
    for (const w of victims) {
      w.alive = false;
      for (const n of model.nodes.values()) {
        if (n.state === 'running' && n.owner === w.id) {
          n.state = 'pending';
          n.owner = null;
          n.epoch++;
        }
      }
    }
  }
  toString() {
    return this.expired ? 'TakeBack(expired leases)' : `TakeBack(w${this.w} dead)`;
  }
}

/** Graceful stop: every node the worker holds goes back without an attempt counted. */
class Release extends Cmd {
  constructor(readonly w: number) {
    super();
  }
  async apply(model: Model, real: Real) {
    const w = model.workers[this.w] as ModelWorker;
    await real.store.releaseWorker(w.id);
    for (const n of model.nodes.values()) {
      if (n.state === 'running' && n.owner === w.id) {
        n.state = 'pending';
        n.owner = null;
        n.epoch++;
      }
    }
    w.alive = false;
    w.held.clear();
  }
  toString() {
    return `Release(w${this.w})`;
  }
}

/** The worker's process dies: its memory is gone, its leases stay in the store; a new process takes the slot. */
class Crash extends Cmd {
  constructor(readonly w: number) {
    super();
  }
  async apply(model: Model, real: Real) {
    const fresh: ModelWorker = { id: `w${this.w}-${randomUUID().slice(0, 8)}`, alive: true, expired: false, held: new Map() };
    await register(real.store, fresh.id);
    model.ghosts.push(model.workers[this.w] as ModelWorker);
    model.workers[this.w] = fresh;
  }
  toString() {
    return `Crash(w${this.w})`;
  }
}

class Reopen extends Cmd {
  async apply(_model: Model, real: Real) {
    await real.reopen();
  }
  toString() {
    return 'Reopen';
  }
}

class Redrive extends Cmd {
  async apply(model: Model, real: Real) {
    const n = await real.store.redrive(model.runId, 'all');
    const dead = [...model.nodes.values()].filter((x) => x.state === 'dead');
    if (n !== dead.length) throw new Error(`${this}: redrove ${n}, model has ${dead.length} dead`);
    for (const x of dead) {
      x.state = 'pending';
      x.attempts = 0;
    }
  }
  toString() {
    return 'Redrive';
  }
}

async function register(store: Store, id: string): Promise<void> {
  await store.registerWorker({ id, host: 'model-host', pid: 1, pidStart: 'model', task: TASK, version: 1 }, 60_000);
}

const commands = [
  fc.tuple(fc.nat(2), fc.integer({ min: 1, max: 4 })).map(([w, l]) => new Claim(w, l)),
  fc.tuple(fc.nat(2), fc.boolean()).map(([w, e]) => new Heartbeat(w, e)),
  fc
    .tuple(fc.nat(2), fc.nat(), fc.constantFrom('done', 'done', 'done', 'retry', 'dead') as fc.Arbitrary<'done' | 'retry' | 'dead'>, fc.nat(3), fc.boolean(), fc.boolean())
    .map(([w, p, o, c, b, s]) => new Finish(w, p, o, c, b, s)),
  fc.tuple(fc.nat(2), fc.nat(), fc.string({ maxLength: 6 })).map(([w, p, v]) => new Effect(w, p, v)),
  fc.tuple(fc.nat(2), fc.boolean()).map(([w, e]) => new TakeBack(w, e)),
  fc.nat(2).map((w) => new Release(w)),
  fc.nat(2).map((w) => new Crash(w)),
  fc.constant(new Reopen()),
  fc.constant(new Redrive()),
];

export interface ModelOptions {
  /** Opens the store under test (the same file or schema each time: reopen). */
  open: () => Promise<Store>;
  numRuns: number;
  seed: number;
  maxCommands?: number;
  /** Stop starting runs after this time (a budget, not an assertion). */
  deadline?: number;
}

/** Runs the model test; resolves with the number of runs, commands and fenced writes checked; throws fast-check's report. */
export async function modelTest(options: ModelOptions): Promise<{ runs: number; commands: number; fenced: number }> {
  let store = await options.open();
  await store.migrate();
  const stats = { commands: 0, fenced: 0 };
  let runs = 0;
  const real: Real = {
    get store() {
      return store;
    },
    async reopen() {
      await store.close();
      store = await options.open();
    },
    stats,
  };
  try {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: options.maxCommands ?? 40, size: 'large' }), async (cmds) => {
        if (options.deadline && Date.now() > options.deadline) return;
        runs++;
        const runId = `m-${randomUUID()}`;
        await store.createRun(newRun({ id: runId, task: TASK }));
        const run = await store.getRun(runId);
        const model: Model = {
          runId,
          nodes: new Map([[run?.rootId as number, { id: run?.rootId as number, state: 'pending', epoch: 0, owner: null, attempts: 0 }]]),
          workers: [],
          ghosts: [],
          effects: new Map(),
        };
        for (let i = 0; i < 3; i++) {
          const w: ModelWorker = { id: `w${i}-${randomUUID().slice(0, 8)}`, alive: true, expired: false, held: new Map() };
          await register(store, w.id);
          model.workers.push(w);
        }
        await fc.asyncModelRun(() => ({ model, real }), cmds);
      }),
      { numRuns: options.numRuns, seed: options.seed },
    );
  } finally {
    await store.close();
  }
  return { runs, ...stats };
}
