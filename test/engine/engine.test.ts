import { seal } from '../../src/store/checksum.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTask, type Engine, NonRetryableError, openEngine, RetryLater } from '../../src/index.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { RunRecord } from '../../src/store/store.js';
import { tempDir } from '../helpers/temp.js';

const fast = { leaseMs: 2_000, heartbeatMs: 200, pollMs: 10 };

const tree = defineTask<{ fanout: number; depth: number }, number>({
  name: 'tree',
  run({ fanout, depth }) {
    if (depth === 0) return { result: 1 };
    return { children: Array.from({ length: fanout }, () => ({ input: { fanout, depth: depth - 1 } })) };
  },
  combine: (_input, counts) => 1 + (counts as number[]).reduce((a, b) => a + b, 0),
});

describe('engine on SQLite', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteStore;
  let engine: Engine;

  beforeEach(async () => {
    tmp = tempDir();
    store = new SqliteStore({ path: tmp.db });
    engine = await openEngine({ store, ...fast });
  });

  afterEach(async () => {
    await engine.close();
    await store.close();
    tmp.cleanup();
  });

  it('computes a tree by combine and leaves every node done exactly once', async () => {
    const run = await engine.start(tree, { fanout: 4, depth: 5 });
    const out = await run.done;
    expect(out.state).toBe('completed');
    expect(out.result).toBe(1365);
    expect(out.counts).toEqual({ pending: 0, running: 0, waiting: 0, done: 1365, dead: 0, parked: 0 });
    expect(store.recount(run.runId)).toEqual(out.counts);
  });

  it('keeps the task’s estimate with the run, sets it on resume when the task gained one, and refuses a bad one', async () => {
    const sized = { ...tree, estimate: ({ fanout, depth }: { fanout: number; depth: number }) => (fanout ** (depth + 1) - 1) / (fanout - 1) };
    const run = await engine.start(sized, { fanout: 3, depth: 2 });
    await run.done;
    expect((await engine.getRun(run.runId)).estimate).toBe(13);
    const unsized = await engine.create(tree, { fanout: 2, depth: 2 });
    expect((await engine.getRun(unsized)).estimate).toBeNull();
    await (await engine.resume(sized, unsized)).done;
    expect((await engine.getRun(unsized)).estimate).toBe(7);
    await expect(engine.start({ ...tree, estimate: () => Number.NaN }, { fanout: 2, depth: 1 })).rejects.toThrow(/estimate\(\) of tree to return a finite number >= 1/);
    await expect(
      engine.start(
        {
          ...tree,
          estimate: () => {
            throw new Error('no size');
          },
        },
        { fanout: 2, depth: 1 },
      ),
    ).rejects.toMatchObject({ code: 'CONFIG', message: expect.stringContaining('estimate() of tree threw: no size') });
    // estimate() sees only an input the schema accepted: a bad root input dead-letters with the schema's issues.
    const checked = defineTask<{ n: number }, number>({
      name: 'checked',
      input: z.object({ n: z.number() }),
      estimate: ({ n }) => n.toFixed(0).length,
      run: ({ n }) => ({ result: n }),
    });
    const bad = await engine.start(checked, { m: 1 } as never);
    expect((await bad.done).counts.dead).toBe(1);
    expect((await engine.getRun(bad.runId)).estimate).toBeNull();
    await (await engine.resume(checked, bad.runId)).done;
  });

  it('keeps timers (heartbeats, progress) firing while synchronous handlers run, and memory bounded by a group', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    try {
      const out = await (await engine.start(tree, { fanout: 10, depth: 4 })).done;
      expect(out.result).toBe(11111);
      // Without a turn of the event loop per group commit, no interval callback would run until the end.
      expect(ticks).toBeGreaterThan(2);
    } finally {
      clearInterval(timer);
    }
  });

  it('gives the same result with per-step commits, breadth-first order and a tiny window', async () => {
    const bfs = defineTask({ ...tree, name: 'tree-bfs', order: 'bfs' as const });
    const other = await openEngine({ store, ...fast, commitEverySteps: 1, windowSize: 3, concurrency: 3 });
    try {
      const out = await (await other.start(bfs, { fanout: 3, depth: 5 })).done;
      expect(out.result).toBe(364);
      expect(out.counts.done).toBe(364);
    } finally {
      await other.close();
    }
  });

  it('runs a traversal whose emitted records stream in commit order', async () => {
    const walk = defineTask<{ path: string; depth: number }>({
      name: 'walk',
      run({ path, depth }, ctx) {
        ctx.emit({ path });
        if (depth === 0) return {};
        return { children: [0, 1, 2].map((i) => ({ input: { path: `${path}/${i}`, depth: depth - 1 } })) };
      },
    });
    const run = await engine.start(walk, { path: '', depth: 3 });
    const out = await run.done;
    expect(out.state).toBe('completed');
    const records: unknown[] = [];
    for await (const item of engine.results(run.runId)) records.push(item.record);
    expect(records).toHaveLength(40);
    expect(new Set(records.map((r) => (r as { path: string }).path)).size).toBe(40);
  });

  it('memoises a DAG: a shared key runs once and completes every parent waiting on it', async () => {
    let calls = 0;
    const fib = defineTask<{ n: number }, number>({
      name: 'fib',
      key: ({ n }) => String(n),
      run({ n }) {
        calls++;
        if (n < 2) return { result: n };
        return { children: [{ input: { n: n - 1 } }, { input: { n: n - 2 } }] };
      },
      combine: (_input, [a, b]) => (a as number) + (b as number),
    });
    const out = await (await engine.start(fib, { n: 30 })).done;
    expect(out.result).toBe(832040);
    expect(calls).toBe(31);
    expect(out.counts.done).toBe(31);
  });

  it('combines a keyed parent from what it really has: its new children, and a key it lists twice once', async () => {
    const task = defineTask<{ n: number }, unknown>({
      name: 'twice',
      key: ({ n }) => String(n),
      run({ n }) {
        if (n === 0) return { children: [{ input: { n: 1 } }, { input: { n: 1 } }, { input: { n: 2 } }] };
        if (n === 3) return { children: [{ input: { n: 4 } }, { input: { n: 5 } }] };
        return { result: n * 10 };
      },
      combine: (_input, results) => results,
    });
    const listedTwice = await (await engine.start(task, { n: 0 })).done;
    expect(listedTwice.result).toEqual([10, 20]);
    const allNew = await (await engine.start(task, { n: 3 })).done;
    expect(allNew.result).toEqual([40, 50]);
  });

  it('reports a dependency cycle instead of hanging on it', async () => {
    const cyclic = defineTask<{ n: number }, number>({
      name: 'cyclic',
      key: ({ n }) => String(n % 3),
      run({ n }) {
        return { children: [{ input: { n: n + 1 } }] };
      },
      combine: () => 1,
    });
    const out = await (await engine.start(cyclic, { n: 0 })).done;
    expect(out.state).toBe('failed');
    const dead = await store.listNodes(out.runId, { state: 'dead' });
    expect(dead).toHaveLength(1);
    expect(dead[0]?.errors.at(-1)?.code).toBe('CYCLE');
  });

  it('retries a failing step with backoff, then succeeds', async () => {
    const attempts = new Map<number, number>();
    const flaky = defineTask<{ i: number }, number>({
      name: 'flaky',
      limits: { maxAttempts: 3, backoffMs: 5, maxBackoffMs: 10 },
      run({ i }, ctx) {
        attempts.set(i, ctx.attempt);
        if (i > 0 && ctx.attempt < 3) throw new Error(`flake ${i}`);
        return i === 0 ? { children: [1, 2, 3].map((j) => ({ input: { i: j } })) } : { result: i };
      },
      combine: (_input, results) => (results as number[]).reduce((a, b) => a + b, 0),
    });
    const run = await engine.start(flaky, { i: 0 });
    const out = await run.done;
    expect(out.result).toBe(6);
    expect([...attempts.values()].slice(1)).toEqual([3, 3, 3]);
    const children = await store.listChildren(run.runId === '' ? 0 : (await engine.getRun(run.runId)).rootId);
    expect(children.map((c) => c.errors.length)).toEqual([2, 2, 2]);
  });

  it('sends a node to the dead-letter queue after maxAttempts and lets its siblings finish', async () => {
    const poison = defineTask<{ i: number }, number>({
      name: 'poison',
      limits: { maxAttempts: 2, backoffMs: 1, maxBackoffMs: 2 },
      run({ i }) {
        if (i === 2) throw new Error('always fails');
        return i === 0 ? { children: [1, 2, 3].map((j) => ({ input: { i: j } })) } : { result: i };
      },
    });
    const out = await (await engine.start(poison, { i: 0 })).done;
    expect(out.state).toBe('completed');
    expect(out.counts.dead).toBe(1);
    expect(out.counts.done).toBe(3);
    const [dead] = await store.listNodes(out.runId, { state: 'dead' });
    expect(dead?.attempts).toBe(2);
    expect(dead?.errors.map((e) => e.message)).toEqual(['always fails', 'always fails']);
  });


  it('keeps each group to its concurrency and rate while other groups go on', async () => {
    const running = new Map<string, number>();
    const most = new Map<string, number>();
    const starts: number[] = [];
    const grouped = defineTask<{ host?: string; i: number }, number>({
      name: 'grouped',
      group: ({ host }) => host,
      groups: (host) => (host === 'slow.example' ? { concurrency: 2 } : host === 'rated.example' ? { perSecond: 20 } : { concurrency: 100 }),
      async run({ host, i }) {
        if (host === undefined) {
          const hosts = ['slow.example', 'rated.example', 'fast.example'];
          return { children: Array.from({ length: 60 }, (_, n) => ({ input: { host: hosts[n % 3] as string, i: n } })) };
        }
        if (host === 'rated.example') starts.push(Date.now());
        running.set(host, (running.get(host) ?? 0) + 1);
        most.set(host, Math.max(most.get(host) ?? 0, running.get(host) as number));
        await new Promise((resolve) => setTimeout(resolve, 5));
        running.set(host, (running.get(host) as number) - 1);
        return { result: i };
      },
      combine: (_input, results) => (results as number[]).reduce((a, b) => a + b, 0),
    });
    const out = await (await engine.start(grouped, { i: -1 })).done;
    expect(out).toMatchObject({ state: 'completed', result: (59 * 60) / 2 });
    expect(most.get('slow.example')).toBe(2);
    expect(most.get('fast.example')).toBeGreaterThan(2);
    // A bucket of 20 a second with a burst of 1: at most 21 starts in any one second.
    expect(starts).toHaveLength(20);
    for (const [n, at] of starts.entries()) expect(starts.filter((t) => t >= at && t < at + 1_000).length, `from start ${n}`).toBeLessThanOrEqual(21);
    expect((starts.at(-1) as number) - (starts[0] as number)).toBeGreaterThanOrEqual(19 * 50 - 50);
    const children = await store.listChildren((await engine.getRun(out.runId)).rootId);
    expect(children.every((c) => c.attempts === 1 && c.errors.length === 0)).toBe(true);
  });

  it('dead-letters a node whose group() throws, and refuses bad group limits', async () => {
    const bad = defineTask<{ i: number }, number>({
      name: 'bad-group',
      group: ({ i }) => {
        if (i === 2) throw new Error('no host in this URL');
        return 'one';
      },
      groups: { concurrency: 1 },
      run: ({ i }) => (i === 0 ? { children: [{ input: { i: 1 } }, { input: { i: 2 } }] } : { result: i }),
    });
    const out = await (await engine.start(bad, { i: 0 })).done;
    expect(out.counts).toMatchObject({ done: 2, dead: 1 });
    const [dead] = await store.listNodes(out.runId, { state: 'dead' });
    expect(dead?.errors[0]).toMatchObject({ code: 'INVALID_INPUT' });
    expect(dead?.errors[0]?.message).toContain('group() of bad-group threw: no host in this URL');
    const limits = (groups: unknown) => defineTask({ name: 'limits', group: () => 'g', groups: groups as { concurrency: number }, run: () => ({ result: 1 }) });
    await expect(engine.start(limits({ concurrency: 0 }), {})).rejects.toThrow('Expected `groups of limits.concurrency` to be an integer >= 1, got `0`');
    await expect(engine.start(limits({ perSecond: -1 }), {})).rejects.toThrow('perSecond` to be a number > 0');
    await expect(engine.start(limits({ rate: 5 }), {})).rejects.toThrow('unknown field `rate`');
    await expect(engine.start(defineTask({ name: 'nogroup', groups: { concurrency: 1 }, run: () => ({ result: 1 }) }), {})).rejects.toThrow('has no `group`');
  });

  it('defers a step uncharged with RetryLater, charges it when asked, and dead-letters a bad notBefore at spawn', async () => {
    const runs = new Map<number, number>();
    const deferring = defineTask<{ i: number }, number>({
      name: 'deferring',
      limits: { maxAttempts: 2 },
      run({ i }) {
        const n = (runs.get(i) ?? 0) + 1;
        runs.set(i, n);
        if (i === 0) return { children: [{ input: { i: 1 } }, { input: { i: 2 } }, { input: { i: 3 }, notBefore: Number.NaN }] };
        // Child 1 defers itself five times without being charged; child 2 asks to be charged and so dies at maxAttempts.
        if (i === 1 && n <= 5) throw new RetryLater(5, { reason: 'rate limited' });
        if (i === 2) throw new RetryLater(new Date(Date.now() + 5), { charge: true, reason: 'quota' });
        return { result: i };
      },
      deadChildren: 'pass',
      combine: (_input, results) => results.reduce<number>((sum, r) => sum + (typeof r === 'number' ? r : 0), 0),
    });
    const out = await (await engine.start(deferring, { i: 0 })).done;
    expect(out).toMatchObject({ state: 'completed', result: 1 });
    expect(runs.get(1)).toBe(6);
    expect(runs.get(2)).toBe(2);
    expect(runs.has(3)).toBe(false);
    const children = await store.listChildren((await engine.getRun(out.runId)).rootId);
    expect(children.map((c) => [c.state, c.attempts])).toEqual([['done', 1], ['dead', 2], ['dead', 0]]);
    expect(children[0]?.errors).toEqual([]);
    expect(children[1]?.errors.map((e) => e.code)).toEqual(['RETRY_LATER', 'RETRY_LATER']);
    expect(children[2]?.errors[0]).toMatchObject({ code: 'INVALID_INPUT' });
    expect(children[2]?.errors[0]?.message).toContain('notBefore must be a Date or epoch ms');
  });
  it('dead-letters a non-retryable error at once, and a dead child blocks its waiting parent until redriven', async () => {
    let fixed = false;
    const task = defineTask<{ i: number }, number>({
      name: 'blocking',
      limits: { maxAttempts: 5 },
      run({ i }) {
        if (i === 1 && !fixed) throw new NonRetryableError('bad page');
        return i === 0 ? { children: [{ input: { i: 1 } }, { input: { i: 2 } }] } : { result: i };
      },
      combine: (_input, results) => (results as number[]).reduce((a, b) => a + b, 0),
    });
    const first = await (await engine.start(task, { i: 0 })).done;
    expect(first.state).toBe('failed');
    expect(first.counts).toMatchObject({ dead: 1, waiting: 1, done: 1 });
    const [dead] = await store.listNodes(first.runId, { state: 'dead' });
    expect(dead?.attempts).toBe(1);
    fixed = true;
    expect(await store.redrive(first.runId, 'all')).toBe(1);
    const second = await (await engine.resume(task, first.runId)).done;
    expect(second.state).toBe('completed');
    expect(second.result).toBe(3);
  });

  it('passes a dead child to combine as a failure when deadChildren is pass', async () => {
    const task = defineTask<{ i: number }, unknown>({
      name: 'pass-dead',
      deadChildren: 'pass',
      run({ i }) {
        if (i === 1) throw new NonRetryableError('gone');
        return i === 0 ? { children: [{ input: { i: 1 } }, { input: { i: 2 } }] } : { result: i };
      },
      combine: (_input, results) => results,
    });
    const out = await (await engine.start(task, { i: 0 })).done;
    expect(out.state).toBe('completed');
    expect(out.result).toEqual([{ failed: true, key: 'root/0', error: 'gone' }, 2]);
  });

  it('dead-letters invalid input at spawn without retrying, and the parent goes on', async () => {
    const task = defineTask({
      name: 'validated',
      input: z.object({ n: z.number().int().nonnegative() }),
      run({ n }) {
        return n === 0 ? { children: [{ input: { n: 1 } }, { input: { n: -5 } }, { input: { n: 'x' } as never }] } : { result: n };
      },
    });
    const out = await (await engine.start(task, { n: 0 })).done;
    expect(out.counts).toMatchObject({ done: 2, dead: 2 });
    const dead = await store.listNodes(out.runId, { state: 'dead' });
    expect(dead.map((d) => d.attempts)).toEqual([0, 0]);
    expect(dead.every((d) => d.errors[0]?.code === 'INVALID_INPUT')).toBe(true);
  });

  it('dead-letters a non-serialisable result with the path of the bad value', async () => {
    const task = defineTask({
      name: 'bigint',
      run: () => ({ result: { nested: [1, { value: 10n }] } }),
    });
    const out = await (await engine.start(task, {})).done;
    expect(out.counts.dead).toBe(1);
    const [dead] = await store.listNodes(out.runId, { state: 'dead' });
    expect(dead?.errors[0]?.code).toBe('NOT_SERIALIZABLE');
    expect(dead?.errors[0]?.message).toContain('$.nested[1].value');
    expect(dead?.attempts).toBe(1);
  });

  it('enforces maxDepth by dead-lettering or parking the deeper child', async () => {
    const chain = (depthPolicy: 'dlq' | 'park') =>
      defineTask<{ d: number }>({ name: `chain-${depthPolicy}`, depthPolicy, limits: { maxDepth: 3 }, run: ({ d }) => ({ children: [{ input: { d: d + 1 } }] }) });
    const dlq = await (await engine.start(chain('dlq'), { d: 0 })).done;
    expect(dlq.counts).toMatchObject({ done: 4, dead: 1 });
    const park = await (await engine.start(chain('park'), { d: 0 })).done;
    expect(park.counts).toMatchObject({ done: 4, parked: 1 });
    expect(park.state).toBe('paused');
  });

  it('raises the fan-out alarm: parks the node, pauses the run, and continues once approved', async () => {
    const task = defineTask<{ root: boolean }>({
      name: 'fanout',
      limits: { maxChildren: 10 },
      run: ({ root }) => (root ? { children: Array.from({ length: 50 }, () => ({ input: { root: false } })) } : {}),
    });
    const first = await (await engine.start(task, { root: true })).done;
    expect(first.state).toBe('paused');
    expect(first.pauseReason).toContain('fan-out');
    expect(first.counts).toMatchObject({ parked: 1, done: 0 });
    expect(await store.decideParked(first.runId, 'all', 'approve')).toBe(1);
    const second = await (await engine.resume(task, first.runId)).done;
    expect(second.state).toBe('completed');
    expect(second.counts.done).toBe(51);
  });

  it('persists a huge async-iterable fan-out in chunks once approved', async () => {
    const task = defineTask<{ root: boolean }>({
      name: 'stream',
      limits: { maxChildren: 100 },
      run: ({ root }) => {
        if (!root) return {};
        async function* children() {
          for (let i = 0; i < 5_000; i++) yield { input: { root: false } };
        }
        return { children: children() };
      },
    });
    const first = await (await engine.start(task, { root: true })).done;
    expect(first.state).toBe('paused');
    await store.decideParked(first.runId, 'all', 'approve');
    const engine2 = await openEngine({ store, ...fast, spawnChunk: 700 });
    try {
      const second = await (await engine2.resume(task, first.runId)).done;
      expect(second.counts.done).toBe(5_001);
    } finally {
      await engine2.close();
    }
  });

  it("a worker of many runs hands a paused run's nodes back at once and goes on with the others; resumed, both end exact", async () => {
    const slow = defineTask<{ fanout: number; depth: number }, number>({
      name: 'slow-many',
      async run({ fanout, depth }) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        if (depth === 0) return { result: 1 };
        return { children: Array.from({ length: fanout }, () => ({ input: { fanout, depth: depth - 1 } })) };
      },
      combine: (_input, counts) => 1 + (counts as number[]).reduce((a, b) => a + b, 0),
    });
    const until = async (runId: string, ok: (run: RunRecord) => boolean): Promise<RunRecord> => {
      for (;;) {
        const run = await engine.getRun(runId);
        if (ok(run)) return run;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    await engine.create(slow, { fanout: 4, depth: 5 }, { runId: 'a' });
    await engine.create(slow, { fanout: 4, depth: 6 }, { runId: 'b' });
    const worker = engine.work(slow);
    await until('a', (run) => run.counts.done > 50);
    expect(await store.setRunState('a', 'paused', { from: ['running'], reason: 'paused by a person (`rlm pause`)' })).toBe(true);
    // Acknowledged: nothing of run a is leased any more, while the worker is still busy with run b.
    const acknowledged = await until('a', (run) => run.counts.running === 0);
    expect(acknowledged.state).toBe('paused');
    const b = await engine.getRun('b');
    expect(b.state).toBe('running');
    await until('b', (run) => run.counts.done > b.counts.done + 100);
    expect((await engine.getRun('a')).counts).toEqual(acknowledged.counts);
    expect(await store.setRunState('a', 'running', { from: ['paused'] })).toBe(true);
    const [a, bEnd] = await Promise.all([until('a', (run) => run.state === 'completed'), until('b', (run) => run.state === 'completed')]);
    worker.stop();
    await worker.done;
    expect(a.result).toBe('1365');
    expect(bEnd.result).toBe('5461');
    expect(store.recount('a')).toEqual(a.counts);
  });

  it('pauses a run at its node budget', async () => {
    const out = await (await engine.start(tree, { fanout: 3, depth: 4 }, { nodeBudget: 20 })).done;
    expect(out.state).toBe('paused');
    expect(out.pauseReason).toContain('budget');
    const run = await engine.getRun(out.runId);
    expect(run.nodeCount).toBeGreaterThanOrEqual(20);
    expect(out.counts.parked).toBeGreaterThan(0);
  });

  it('fails an attempt at its deadline even when the handler ignores the signal, and discards the late result', async () => {
    let aborted = false;
    const task = defineTask({
      name: 'slow',
      limits: { timeoutMs: 50, maxAttempts: 2, backoffMs: 1 },
      async run(_input, ctx) {
        ctx.signal.addEventListener('abort', () => (aborted = true));
        await new Promise((resolve) => setTimeout(resolve, 200));
        ctx.emit({ late: true });
        return { result: 'late' };
      },
    });
    const out = await (await engine.start(task, {})).done;
    expect(aborted).toBe(true);
    expect(out.counts.dead).toBe(1);
    const [dead] = await store.listNodes(out.runId, { state: 'dead' });
    expect(dead?.errors.map((e) => e.code)).toEqual(['TIMEOUT', 'TIMEOUT']);
    expect(dead?.result).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(await store.readEmits(out.runId, 0, 10)).toEqual([]);
  });

  it('journals an effect: a retried step gets the journaled value and fn is not called again', async () => {
    const calls: string[] = [];
    const task = defineTask({
      name: 'charge',
      limits: { maxAttempts: 3, backoffMs: 1 },
      async run(_input, ctx) {
        const receipt = await ctx.effect('charge', (key) => {
          calls.push(key);
          return { receipt: `r-${calls.length}` };
        });
        if (ctx.attempt === 1) throw new Error('crash after charging');
        return { result: receipt };
      },
    });
    const out = await (await engine.start(task, {}, { runId: 'pay-1' })).done;
    expect(out.result).toEqual({ receipt: 'r-1' });
    expect(calls).toEqual(['pay-1:root:charge']);
  });

  it('journals the effects of children born in this worker: a retry gets the journaled values, fn is not called again', async () => {
    const calls: string[] = [];
    const task = defineTask<{ leaf?: number }, number>({
      name: 'born-effects',
      limits: { maxAttempts: 3, backoffMs: 1 },
      async run(input, ctx) {
        if (input.leaf === undefined) return { children: [0, 1, 2].map((leaf) => ({ input: { leaf } })) };
        const a = await ctx.effect('a', () => {
          calls.push(`${ctx.key} a`);
          return 10 + (input.leaf as number);
        });
        const b = await ctx.effect('b', () => {
          calls.push(`${ctx.key} b`);
          return 100;
        });
        if (input.leaf === 1 && ctx.attempt === 1) throw new Error('crash after the effects');
        return { result: a + b };
      },
      combine: (_input, results) => results.reduce<number>((sum, n) => sum + (typeof n === 'number' ? n : 0), 0),
    });
    const out = await (await engine.start(task, {})).done;
    expect(out.state).toBe('completed');
    expect(out.result).toBe(10 + 11 + 12 + 300);
    expect(calls.sort()).toEqual(['root/0 a', 'root/0 b', 'root/1 a', 'root/1 b', 'root/2 a', 'root/2 b']);
  });

  it('migrates inputs stored by an older version before validating them', async () => {
    const v1 = defineTask<{ href: string }>({ name: 'versioned', version: 1, run: () => ({ children: [{ input: { href: 'a' } }] }) });
    const tmpStore = store;
    const runId = await engine.create(v1, { href: 'root' });
    const v2 = defineTask<{ url: string }, string>({
      name: 'versioned',
      version: 2,
      input: z.object({ url: z.string() }),
      migrate: { 1: (old) => ({ url: (old as { href: string }).href }) },
      run: ({ url }) => ({ result: url }),
    });
    const out = await (await engine.resume(v2, runId)).done;
    expect(out.result).toBe('root');
    expect((await tmpStore.getNode((await engine.getRun(runId)).rootId))?.version).toBe(1);
  });

  it('never re-runs a done node when a finished run is resumed', async () => {
    let calls = 0;
    const task = defineTask({ ...tree, name: 'counted', run: (input: { fanout: number; depth: number }, ctx) => {
        calls++;
        return tree.run(input, ctx);
      },
    });
    const run = await engine.start(task, { fanout: 3, depth: 3 });
    await run.done;
    const before = calls;
    const again = await (await engine.resume(task, run.runId)).done;
    expect(again.result).toBe(40);
    expect(calls).toBe(before);
  });

  it('rejects bad options and bad tasks with actionable errors', async () => {
    await expect(openEngine({ store, concurrency: 0 })).rejects.toThrow('Expected `concurrency` to be an integer >= 1, got `0`');
    await expect(openEngine({ store, heartbeatMs: 5_000, leaseMs: 1_000 })).rejects.toThrow('leases would expire between heartbeats');
    await expect(engine.start({ name: 'x' } as never, {})).rejects.toThrow('`run` must be a function');
    await expect(engine.start(defineTask({ name: 'y', limits: { maxAttempts: 0 }, run: () => ({}) }), {})).rejects.toThrow('maxAttempts');
    await expect(engine.resume(tree, 'no-such-run')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('engine on SQLite: damaged rows and subtree operations', () => {
  it('dead-letters a stored row that cannot be decoded, and the engine goes on working', async () => {
    const tmp = tempDir();
    const store = new SqliteStore({ path: tmp.db });
    const engine = await openEngine({ store, ...fast });
    try {
      const runId = await engine.create(tree, { fanout: 2, depth: 2 });
      const db = (store as unknown as { db: { prepare(sql: string): { run(...a: unknown[]): unknown } } }).db;
      // Sealed with a valid checksum: written so (by an older codec, say), not damaged on disk.
      db.prepare('UPDATE rlm_nodes SET input = ? WHERE run_id = ?').run(seal('{not json'), runId);
      const out = await (await engine.resume(tree, runId)).done;
      expect(out.state).toBe('failed');
      const [dead] = await store.listNodes(runId, { state: 'dead' });
      expect(dead?.errors[0]?.code).toBe('INVALID_INPUT');
      expect(dead?.errors[0]?.message).toContain('cannot be decoded');
      expect(dead?.attempts).toBe(0);
      const next = await (await engine.start(tree, { fanout: 2, depth: 2 })).done;
      expect(next.result).toBe(7);
    } finally {
      await engine.close();
      await store.close();
      tmp.cleanup();
    }
  });

  it('cancels the unfinished part of a subtree into the DLQ and redrives it as one operation', async () => {
    const tmp = tempDir();
    const store = new SqliteStore({ path: tmp.db });
    const engine = await openEngine({ store, ...fast });
    try {
      const runId = await engine.create(tree, { fanout: 3, depth: 3 });
      const rootId = (await engine.getRun(runId)).rootId;
      expect(await store.cancelSubtree(runId, rootId)).toBe(1);
      const cancelled = await engine.getRun(runId);
      expect(cancelled.state).toBe('failed');
      expect(cancelled.counts.dead).toBe(1);
      expect(await store.redrive(runId, [rootId])).toBe(1);
      const out = await (await engine.resume(tree, runId)).done;
      expect(out.result).toBe(40);
    } finally {
      await engine.close();
      await store.close();
      tmp.cleanup();
    }
  });
});
