/*
 * Memoised DAGs with real sharing, on both stores: a lattice whose interior keys each have two parents (large
 * enough that a cycle check walking each shared child's ancestors could not finish within the test's timeout),
 * and dependency cycles of length 1, 2 and longer, made by one worker and by two working one run at once.
 */
import pg from 'pg';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import lattice from '../../examples/lattice.js';
import { configureFailpoints } from '../../src/failpoints.js';
import { type ChildFailure, defineTask, type OpenEngineOptions, openEngine, type Store } from '../../src/index.js';
import { PostgresStore } from '../../src/store/postgres/index.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import type { Task } from '../../src/task.js';
import { binomialMod } from '../helpers/lattice.js';
import { describePostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';


/** A keyed graph from a table of key → child keys, combining the number of nodes it reached (failures count 0). */
function graph(name: string, edges: Record<string, string[]>, options: { deadChildren?: 'wait' | 'pass' } = {}): Task<{ id: string }, number> {
  return defineTask<{ id: string }, number>({
    name,
    key: ({ id }) => id,
    deadChildren: options.deadChildren ?? 'wait',
    run: ({ id }) => {
      const children = edges[id] ?? [];
      return children.length === 0 ? { result: 1 } : { children: children.map((child) => ({ input: { id: child } })) };
    },
    combine: (_input, results: Array<number | ChildFailure>) => results.reduce<number>((sum, r) => sum + (typeof r === 'number' ? r : 0), 1),
  });
}

interface Place {
  name: string;
  /** A store on the shared place; each call opens another, as another process would. */
  open(): Store;
  /** The lattice's side for this store. */
  side: number;
}

function dagSuite(place: Place): void {
  const p = place;
  const engines: { close(): Promise<void> }[] = [];
  const open = async (options: Omit<OpenEngineOptions, 'store'> = {}) => {
    const engine = await openEngine({ store: p.open(), ...options });
    engines.push(engine);
    return engine;
  };
  afterAll(async () => {
    await Promise.all(engines.map((engine) => engine.close().catch(() => undefined)));
  });

  it('computes a lattice whose interior keys are shared by two parents, running each key once', async () => {
    const side = p.side;
    const runs = new Map<string, number>();
    const combines = new Map<string, number>();
    const counting: Task<{ n: number; m: number; i?: number; j?: number }, number> = {
      ...lattice,
      run(input, ctx) {
        runs.set(ctx.key, (runs.get(ctx.key) ?? 0) + 1);
        return lattice.run(input, ctx);
      },
      combine(input, paths, ctx) {
        combines.set(ctx.key, (combines.get(ctx.key) ?? 0) + 1);
        return (lattice.combine as NonNullable<typeof lattice.combine>)(input, paths, ctx);
      },
    };
    const engine = await open();
    const outcome = await (await engine.start(counting, { n: side, m: side })).done;
    expect(outcome.state).toBe('completed');
    expect(outcome.result).toBe(binomialMod(2 * side - 2, side - 1));
    expect(outcome.counts).toEqual({ pending: 0, running: 0, waiting: 0, done: side * side, dead: 0, parked: 0 });
    expect(runs.size).toBe(side * side);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    // Every node but the far corner combines, once, whether the store or the worker found it ready.
    expect(combines.size).toBe(side * side - 1);
    expect([...combines.values()].every((n) => n === 1)).toBe(true);
  });

  it('dead-letters the node that closes a cycle of length 1, 2 or 7 with CYCLE, naming the cycle', async () => {
    const engine = await open();
    const cases: [string, Record<string, string[]>, string, RegExp][] = [
      ['self', { a: ['b'], b: ['x', 'b'] }, 'b', /"b" → "b"/],
      ['two', { a: ['b', 'x'], b: ['c'], c: ['b', 'x'] }, 'c', /"b" → "c" → "b"/],
      // Through shared nodes of a DAG: x is reached twice; the cycle b → … → h → b is found once.
      ['long', { a: ['b', 'x'], x: ['d'], b: ['c'], c: ['d'], d: ['e'], e: ['f'], f: ['g'], g: ['h'], h: ['b'] }, 'h', /"b" → "c" → "d" → "e" → "f" → "g" → "h" → "b"/],
    ];
    for (const [name, edges, closer, cycle] of cases) {
      const out = await (await engine.start(graph(`cycle-${name}`, edges), { id: 'a' })).done;
      expect(out.state, name).toBe('failed');
      const store = p.open();
      const dead = await store.listNodes(out.runId, { state: 'dead' });
      expect(
        dead.map((node) => node.key),
        name,
      ).toEqual([closer]);
      const error = dead[0]?.errors.at(-1);
      expect(error?.code).toBe('CYCLE');
      expect(error?.message).toMatch(cycle);
    }
  });

  it("passes the node that closes a cycle to its parents' combine under deadChildren 'pass'", async () => {
    const engine = await open();
    // a → b → c → b: c closes the cycle; b and a combine without it.
    const out = await (await engine.start(graph('cycle-pass', { a: ['b', 'x'], b: ['c', 'y'], c: ['b', 'z'] }, { deadChildren: 'pass' }), { id: 'a' })).done;
    expect(out.state).toBe('completed');
    // a (1) + x (1) + b (1 + y (1) + c, failed: 0); z is lost with its parent c.
    expect(out.result).toBe(4);
    expect(out.counts).toMatchObject({ done: 5, dead: 1, waiting: 0 });
  });

  it('finds cycles whose edges two workers created at once, and finishes everything else', async () => {
    // Ten chains hang off the root; chain k's last node lists chain k's first: ten cycles, each closed by its
    // last node. Small windows send children to the shared frontier, so both engines take part.
    const edges: Record<string, string[]> = { root: [] };
    for (let k = 0; k < 10; k++) {
      (edges.root as string[]).push(`c${k}.0`);
      for (let i = 0; i < 20; i++) edges[`c${k}.${i}`] = i === 19 ? [`c${k}.0`, `leaf${k}`] : [`c${k}.${i + 1}`, `leaf${k}.${i}`];
    }
    const task = graph('cycle-two-workers', edges, { deadChildren: 'pass' });
    const options = { windowSize: 4, claimBatch: 2, commitEverySteps: 4, commitEveryMs: 2, concurrency: 2, pollMs: 5 };
    const [first, second] = [await open(options), await open(options)];
    const runId = await first.create(task, { id: 'root' });
    const handles = [await first.resume(task, runId), await second.resume(task, runId)];
    const outcomes = await Promise.all(handles.map((handle) => handle.done));
    for (const outcome of outcomes) expect(outcome.state).toBe('completed');
    expect(handles.every((handle) => handle.stats().steps > 0)).toBe(true);
    const store = p.open();
    const dead = await store.listNodes(runId, { state: 'dead' });
    expect(dead.map((node) => node.key).sort()).toEqual(Array.from({ length: 10 }, (_, k) => `c${k}.19`).sort());
    expect(dead.every((node) => node.errors.at(-1)?.code === 'CYCLE')).toBe(true);
    // The root and, per chain, 19 chain nodes and their 19 leaves; a closer counts 0 and its leaf is lost with it.
    expect(outcomes[0]?.result).toBe(1 + 10 * (19 + 19));
  });
}

/** Every store a suite opened, closed after it. */
const opened: Store[] = [];
afterAll(async () => {
  await Promise.all(opened.map((store) => store.close().catch(() => undefined)));
});
function keep<S extends Store>(store: S): S {
  opened.push(store);
  return store;
}

describe('memoised DAGs on SQLite', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());
  dagSuite({ name: 'sqlite', side: 150, open: () => keep(new SqliteStore({ path: tmp.db })) });

  it("lets a speculative child's effect go when the commit that would confirm its key fails", async () => {
    // The children run before the root's commit says their keys are new; their effects wait for that verdict.
    // The commit fails: each waiting effect must end (the worker is dead), not wait for good.
    const settled: string[] = [];
    const task = defineTask<{ id: string }, number>({
      name: 'verdict-lost',
      key: ({ id }) => id,
      run: async ({ id }, ctx) => {
        if (id === 'root') return { children: ['a', 'b', 'c'].map((child) => ({ input: { id: child } })) };
        try {
          return { result: await ctx.effect('call', () => 1) };
        } finally {
          settled.push(id);
        }
      },
      combine: (_input, results) => results.length,
    });
    const engine = await openEngine({ store: keep(new SqliteStore({ path: join(tmp.dir, 'verdict.db') })), commitEverySteps: 100, commitEveryMs: 1_000, concurrency: 4 });
    configureFailpoints('commit.beforeCommit=throw(SQLITE_IOERR)@1');
    try {
      const handle = await engine.start(task, { id: 'root' });
      await expect(handle.done).rejects.toMatchObject({ code: 'STORE_IO' });
      await vi.waitFor(() => expect(settled.sort()).toEqual(['a', 'b', 'c']));
    } finally {
      configureFailpoints(undefined);
      await engine.close().catch(() => undefined);
    }
  });
});

describePostgres('memoised DAGs on PostgreSQL', (url) => {
  const schema = `rlm_dag_${process.pid}_${Date.now().toString(36)}`;
  afterAll(async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await client.end();
    }
  });
  dagSuite({ name: 'postgres', side: 100, open: () => keep(new PostgresStore({ connectionString: url, schema })) });
});
