/*
 * The engine on PostgreSQL: examples/tree.ts through one engine, and through three engines working one run at
 * once (three stores on one schema, as three processes would have). Needs RLM_TEST_DATABASE_URL; the store
 * suite (test/store/postgres.test.ts) reports when it is missing.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import tree from '../../examples/tree.js';
import { openEngine } from '../../src/index.js';
import { PostgresStore } from '../../src/store/postgres/index.js';
import type { Task } from '../../src/task.js';
import { pgQuery } from '../helpers/postgres.js';

const url = process.env.RLM_TEST_DATABASE_URL;
const prefix = `rlm_engine_${process.pid}_${Date.now().toString(36)}`;
const schemas: string[] = [];
const stores: PostgresStore[] = [];

function storeOn(schema: string): PostgresStore {
  const store = new PostgresStore({ connectionString: url as string, schema });
  stores.push(store);
  return store;
}

function freshSchema(): string {
  const schema = `${prefix}_${schemas.length}`;
  schemas.push(schema);
  return schema;
}

afterAll(async () => {
  await Promise.all(stores.map((store) => store.close().catch(() => undefined)));
  if (!url || schemas.length === 0) return;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
});

interface TreeInput {
  fanout: number;
  depth: number;
}

/** examples/tree.ts, counting how often each node's run and combine phases execute. */
function countingTree(): { task: Task<TreeInput, number>; runs: Map<number, number>; combines: Map<number, number> } {
  const runs = new Map<number, number>();
  const combines = new Map<number, number>();
  const task: Task<TreeInput, number> = {
    ...tree,
    run(input, ctx) {
      runs.set(ctx.nodeId, (runs.get(ctx.nodeId) ?? 0) + 1);
      return tree.run(input, ctx);
    },
    combine(input, results, ctx) {
      combines.set(ctx.nodeId, (combines.get(ctx.nodeId) ?? 0) + 1);
      return (tree.combine as NonNullable<typeof tree.combine>)(input, results, ctx);
    },
  };
  return { task, runs, combines };
}

describe.skipIf(!url)('the engine on PostgreSQL', () => {
  it('computes examples/tree.ts {fanout: 5, depth: 4} = 781', async () => {
    const store = storeOn(freshSchema());
    const engine = await openEngine({ store });
    try {
      const run = await engine.start(tree, { fanout: 5, depth: 4 });
      const outcome = await run.done;
      expect(outcome).toMatchObject({ state: 'completed', result: 781, stoppedBy: 'finished' });
      expect(outcome.counts).toEqual({ pending: 0, running: 0, waiting: 0, done: 781, dead: 0, parked: 0 });
      expect(await store.recount(run.runId)).toEqual(outcome.counts);
    } finally {
      await engine.close();
    }
  });

  it('three engines on one run: the exact result, every node done exactly once', async () => {
    const schema = freshSchema();
    const { task, runs, combines } = countingTree();
    // A small window sends most children to the shared frontier, so all three engines get work.
    const options = { windowSize: 8, claimBatch: 4, commitEverySteps: 16, commitEveryMs: 5, concurrency: 4, pollMs: 10 };
    const engines = await Promise.all([1, 2, 3].map(() => openEngine({ store: storeOn(schema), ...options })));
    try {
      const runId = await (engines[0] as (typeof engines)[number]).create(task, { fanout: 5, depth: 4 });
      const handles = await Promise.all(engines.map((engine) => engine.resume(task, runId)));
      const outcomes = await Promise.all(handles.map((handle) => handle.done));
      for (const outcome of outcomes) expect(outcome).toMatchObject({ state: 'completed', result: 781 });
      const steps = handles.map((handle) => handle.stats().steps);
      expect(steps.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
      expect(handles.reduce((sum, handle) => sum + handle.stats().fenced, 0)).toBe(0);
      expect(runs.size).toBe(781);
      expect([...runs.values()].every((n) => n === 1)).toBe(true);
      expect(combines.size).toBe(156);
      expect([...combines.values()].every((n) => n === 1)).toBe(true);
      const store = stores[stores.length - 1] as PostgresStore;
      const run = await store.getRun(runId);
      expect(run?.counts).toEqual({ pending: 0, running: 0, waiting: 0, done: 781, dead: 0, parked: 0 });
      expect(await store.recount(runId)).toEqual(run?.counts);
    } finally {
      await Promise.all(engines.map((engine) => engine.close()));
    }
  });

  it('keeps msgpack values (BigInt, Date, Map, Buffer) across two engines, stored as text-marked bytes', async () => {
    const schema = freshSchema();
    const task: Task<{ n: bigint; depth: number }, { sum: bigint; at: Date; parts: Map<bigint, Buffer> }> = {
      name: 'msgpack-tree',
      codec: 'msgpack',
      key: (input) => `${input.n}`,
      run: ({ n, depth }, ctx) => {
        ctx.emit({ n, at: new Date(Number(n)) });
        if (depth === 0) return { result: { sum: n, at: new Date(Number(n)), parts: new Map([[n, Buffer.from([Number(n % 256n)])]]) } };
        return { children: [1n, 2n, 3n].map((i) => ({ input: { n: n * 4n + i, depth: depth - 1 } })) };
      },
      combine: ({ n }, results) => {
        const ok = results as { sum: bigint; at: Date; parts: Map<bigint, Buffer> }[];
        return {
          sum: ok.reduce((total, r) => total + r.sum, n),
          at: new Date(Math.max(...ok.map((r) => r.at.getTime()))),
          parts: new Map(ok.flatMap((r) => [...r.parts])),
        };
      },
    };
    const options = { windowSize: 4, claimBatch: 2, commitEverySteps: 4, commitEveryMs: 5, concurrency: 2, pollMs: 10 };
    const engines = await Promise.all([1, 2].map(() => openEngine({ store: storeOn(schema), ...options })));
    try {
      const runId = await (engines[0] as (typeof engines)[number]).create(task, { n: 1n, depth: 3 });
      const outcomes = await Promise.all((await Promise.all(engines.map((engine) => engine.resume(task, runId)))).map((handle) => handle.done));
      const sizes = [1, 3, 9, 27];
      for (const outcome of outcomes) {
        expect(outcome.state).toBe('completed');
        const result = outcome.result as { sum: bigint; at: Date; parts: Map<bigint, Buffer> };
        expect(typeof result.sum).toBe('bigint');
        expect(result.at).toBeInstanceOf(Date);
        expect(result.parts.size).toBe(27);
        expect([...result.parts.values()].every((b) => Buffer.isBuffer(b))).toBe(true);
      }
      expect(outcomes[0]?.counts.done).toBe(sizes.reduce((a, b) => a + b, 0));
      const records: unknown[] = [];
      for await (const item of (engines[0] as (typeof engines)[number]).results(runId)) records.push(item.record);
      expect(records).toHaveLength(40);
      expect((records[0] as { at: Date }).at).toBeInstanceOf(Date);
      const [row] = (await pgQuery<{ result: string }>(url as string, `SELECT result FROM "${schema}".rlm_runs WHERE id = $1`, [runId])) as { result: string }[];
      // Its checksum (8 hex digits), '~', then base64 of the bytes: 0xC1 0x01 encode as 'wQ'.
      expect(row?.result).toMatch(/^[0-9a-f]{8}~wQ/);
    } finally {
      await Promise.all(engines.map((engine) => engine.close()));
    }
  });
});
