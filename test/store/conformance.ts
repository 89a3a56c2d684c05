/*
 * The one store conformance suite: every Store runs it (sqlite.test.ts, postgres.test.ts). It speaks only the
 * Store interface, so what it holds is the contract the engine relies on, whatever the backend.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newRun } from '../helpers/new-run.js';
import type {
  CommitOp,
  CommitResult,
  ErrorEntry,
  GroupGrant,
  GroupRequest,
  LeasedNode,
  NewNode,
  NewRun,
  Payload,
  RunRecord,
  StateCounts,
  StepOp,
  StepOutcome,
  Store,
} from '../../src/store/store.js';
import { signalWaitReason } from '../../src/store/charges.js';

export type ConformanceStore = Store & { recount?(runId: string): StateCounts | Promise<StateCounts> };

interface Held {
  id: number;
  runId: string;
  epoch: number;
  attempts?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function errorEntry(message: string, code: string | null = 'HANDLER', attempt = 1): ErrorEntry {
  return { attempt, message, code, stack: null, at: Date.now(), worker: 'test' };
}

function child(id: number, parentId: number, ord: number, overrides: Partial<NewNode> = {}): NewNode {
  return {
    id,
    parentId,
    ord,
    key: `${parentId}/${ord}`,
    keyed: false,
    depth: 1,
    priority: 0,
    version: 1,
    input: JSON.stringify({ ord }),
    context: null,
    state: 'running',
    error: null,
    traceparent: null,
    ...overrides,
  };
}

function keyedChild(id: number, parentId: number, ord: number, key: string, overrides: Partial<NewNode> = {}): NewNode {
  return child(id, parentId, ord, { key, keyed: true, input: JSON.stringify({ key }), ...overrides });
}

function step(node: Held, outcome: StepOutcome, extra: Partial<Omit<StepOp, 'kind' | 'runId' | 'nodeId' | 'epoch' | 'outcome'>> = {}): StepOp {
  return {
    kind: 'step',
    runId: node.runId,
    nodeId: node.id,
    epoch: node.epoch,
    outcome,
    attempts: (node.attempts ?? 0) + 1,
    children: [],
    emits: [],
    waits: false,
    passDead: false,
    ...extra,
  };
}

const done = (result: unknown = null): StepOutcome => ({ type: 'done', result: result === null ? null : JSON.stringify(result) });
const wait: StepOutcome = { type: 'wait', result: null };

/** A child born leased in a commit, as the engine holds it afterwards. */
const born = (node: NewNode, runId: string): Held => ({ id: node.id, runId, epoch: 1, attempts: 0 });

export function storeConformance(name: string, open: () => Promise<ConformanceStore>): void {
  describe(`${name}: store conformance`, () => {
    let store: ConformanceStore;
    let runIds: string[];

    beforeEach(async () => {
      store = await open();
      await store.migrate();
      runIds = [];
    });

    afterEach(async () => {
      try {
        // Every test ends with the run counters equal to a count of the rows.
        if (store.recount) {
          for (const runId of runIds) {
            const run = await store.getRun(runId);
            expect(run?.counts, `counters of run ${runId}`).toEqual(await store.recount(runId));
          }
        }
      } finally {
        await store.close();
      }
    });

    async function createRun(overrides: Partial<NewRun> = {}): Promise<RunRecord> {
      const run = await store.createRun(newRun({ task: `task-${randomUUID().slice(0, 8)}`, input: JSON.stringify({ root: true }), ...overrides }));
      runIds.push(run.id);
      return run;
    }

    async function worker(task: string, leaseMs = 60_000): Promise<string> {
      const id = `worker-${randomUUID().slice(0, 8)}`;
      await store.registerWorker({ id, host: 'conformance', pid: process.pid, pidStart: 'test', task, version: 1 }, leaseMs);
      return id;
    }

    async function claim(workerId: string, run: RunRecord, limit = 1, maxVersion = 1): Promise<LeasedNode[]> {
      return store.claimNodes(workerId, { task: run.task, maxVersion, runIds: [run.id] }, limit);
    }

    async function claimRoot(run: RunRecord): Promise<{ w: string; root: LeasedNode }> {
      const w = await worker(run.task);
      const [root] = await claim(w, run);
      if (!root) throw new Error('The root could not be claimed.');
      return { w, root };
    }

    async function ids(n: number): Promise<number[]> {
      const first = await store.allocateIds(n);
      return Array.from({ length: n }, (_, i) => first + i);
    }

    async function commit(workerId: string, ops: CommitOp[]): Promise<CommitResult> {
      return store.commit(workerId, ops);
    }

    describe('runs', () => {
      it('migrates again without harm and describes itself', async () => {
        await store.migrate();
        expect(typeof store.capabilities.concurrentWriters).toBe('boolean');
        expect(typeof store.capabilities.notifications).toBe('boolean');
        expect(store.description).toBeTypeOf('string');
        expect(store.description.length).toBeGreaterThan(0);
      });

      it('creates a run with one pending root', async () => {
        const run = await createRun({ rootKey: 'the-root', rootPriority: 3 });
        expect(run.state).toBe('running');
        expect(run.counts).toEqual({ pending: 1, running: 0, waiting: 0, done: 0, dead: 0, parked: 0 });
        expect(run.nodeCount).toBe(1);
        expect(run.result).toBeNull();
        const root = await store.getNode(run.rootId);
        expect(root).toMatchObject({ id: run.rootId, runId: run.id, parentId: null, key: 'the-root', depth: 0, priority: 3, state: 'pending', epoch: 0, attempts: 0 });
        expect((await store.listRuns()).map((r) => r.id)).toContain(run.id);
        expect(await store.getRun('no-such-run')).toBeUndefined();
      });

      it('refuses a second run with the same id', async () => {
        const run = await createRun();
        await expect(createRun({ id: run.id })).rejects.toMatchObject({ code: 'CONFIG' });
      });

      it('allocates consecutive, disjoint blocks of ids', async () => {
        const run = await createRun();
        const blocks = await Promise.all([100, 1, 50, 7, 100].map(async (n) => ({ first: await store.allocateIds(n), n })));
        const taken = new Set<number>([run.rootId]);
        for (const { first, n } of blocks) {
          expect(Number.isSafeInteger(first)).toBe(true);
          for (let id = first; id < first + n; id++) {
            expect(taken.has(id), `id ${id} handed out twice`).toBe(false);
            taken.add(id);
          }
        }
      });

      it('changes run state only from the states it is told', async () => {
        const run = await createRun();
        expect(await store.setRunState(run.id, 'running', { from: ['paused'] })).toBe(false);
        expect(await store.setRunState(run.id, 'paused', { from: ['running'], reason: 'by hand' })).toBe(true);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'paused', pauseReason: 'by hand' });
        expect(await store.setRunState(run.id, 'running')).toBe(true);
        expect((await store.getRun(run.id))?.state).toBe('running');
        await expect(store.setRunState('no-such-run', 'paused')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      });

      it('lists runs newest first, a page at a time, by state, and counts them', async () => {
        const before = { all: await store.countRuns(), paused: await store.countRuns({ state: 'paused' }) };
        const made: RunRecord[] = [];
        for (let i = 0; i < 3; i++) {
          made.push(await createRun());
          await sleep(3);
        }
        const [oldest, middle, newest] = made.map((run) => run.id);
        await store.setRunState(middle as string, 'paused');
        expect((await store.listRuns(3)).map((r) => r.id)).toEqual([newest, middle, oldest]);
        expect((await store.listRuns(1, { offset: 1 })).map((r) => r.id)).toEqual([middle]);
        expect((await store.listRuns(2, { offset: 2 })).map((r) => r.id)[0]).toBe(oldest);
        const paused = (await store.listRuns(1_000, { state: 'paused' })).map((r) => r.id);
        expect(paused).toContain(middle);
        expect(paused).not.toContain(newest);
        expect((await store.listRuns(1, { state: 'paused' }))[0]?.id).toBe(middle);
        expect(await store.countRuns()).toBe(before.all + 3);
        expect(await store.countRuns({ state: 'paused' })).toBe(before.paused + 1);
      });
    });

    describe('workers', () => {
      it('tells which worker holds how many running nodes of which run', async () => {
        const a = await createRun();
        const b = await createRun({ task: a.task });
        const w1 = await worker(a.task);
        const w2 = await worker(a.task);
        const [root] = await claim(w1, a);
        if (!root) throw new Error('The root could not be claimed.');
        const [c1, c2, c3] = await ids(3);
        await commit(w1, [step(root, wait, { waits: true, children: [child(c1 as number, root.id, 0), child(c2 as number, root.id, 1), child(c3 as number, root.id, 2, { state: 'pending' })] })]);
        await claim(w2, b);
        const mine = (await store.workerLeases()).filter((lease) => lease.workerId === w1 || lease.workerId === w2);
        expect(mine).toEqual(
          [
            { workerId: w1, runId: a.id, nodes: 2 },
            { workerId: w2, runId: b.id, nodes: 1 },
          ].sort((x, y) => (x.workerId < y.workerId ? -1 : 1)),
        );
        await store.releaseWorker(w1);
        expect((await store.workerLeases()).filter((lease) => lease.workerId === w1)).toEqual([]);
      });
    });

    describe('claims', () => {
      it('leases the root under a new epoch and moves the counters', async () => {
        const run = await createRun();
        const w = await worker(run.task);
        const claimed = await claim(w, run, 10);
        expect(claimed).toHaveLength(1);
        expect(claimed[0]).toMatchObject({ id: run.rootId, runId: run.id, parentId: null, epoch: 1, attempts: 0, suspect: false, phase: 'run', spawned: 0, fanoutApproved: false });
        expect(claimed[0]?.input).toBe(JSON.stringify({ root: true }));
        expect(await store.getNode(run.rootId)).toMatchObject({ state: 'running', owner: w, epoch: 1 });
        expect((await store.getRun(run.id))?.counts).toMatchObject({ pending: 0, running: 1 });
        expect(await claim(w, run)).toEqual([]);
      });

      it('leases nothing to an unknown or dead worker', async () => {
        const run = await createRun();
        expect(await claim('never-registered', run)).toEqual([]);
        const w = await worker(run.task);
        await store.takeBack({ deadIds: [w] });
        expect(await claim(w, run)).toEqual([]);
        expect((await store.listWorkers()).find((x) => x.id === w)?.state).toBe('dead');
      });

      it('never leases a node written by a newer task version', async () => {
        const run = await createRun({ taskVersion: 2 });
        const w = await worker(run.task);
        expect(await claim(w, run, 1, 1)).toEqual([]);
        expect(await claim(w, run, 1, 2)).toHaveLength(1);
      });

      it('leases only the task and runs it is asked for', async () => {
        const a1 = await createRun({ task: 'task-a' });
        const a2 = await createRun({ task: 'task-a' });
        const b = await createRun({ task: 'task-b' });
        const w = await worker('task-a');
        const onlyA2 = await store.claimNodes(w, { task: 'task-a', maxVersion: 1, runIds: [a2.id] }, 10);
        expect(onlyA2.map((n) => n.runId)).toEqual([a2.id]);
        const rest = await store.claimNodes(w, { task: 'task-a', maxVersion: 1 }, 10);
        expect(rest.map((n) => n.runId)).toEqual([a1.id]);
        const none = await store.claimNodes(w, { task: 'task-a', maxVersion: 1, runIds: [b.id] }, 10);
        expect(none).toEqual([]);
      });

      for (const order of ['dfs', 'bfs'] as const) {
        it(`orders the frontier by priority, then ${order === 'dfs' ? 'depth' : 'breadth'}-first`, async () => {
          const run = await createRun({ order });
          const { w, root } = await claimRoot(run);
          const [c0, c1, c2, c3] = await ids(4);
          const priorities = [0, 5, 0, 5];
          const children = [c0, c1, c2, c3].map((id, ord) => child(id as number, root.id, ord, { state: 'pending', priority: priorities[ord] as number }));
          await commit(w, [step(root, done(), { children })]);
          const expected = order === 'dfs' ? [c3, c1, c2, c0] : [c1, c3, c0, c2];
          const oneByOne: number[] = [];
          for (let i = 0; i < 4; i++) oneByOne.push(...(await claim(w, run)).map((n) => n.id));
          expect(oneByOne).toEqual(expected);
        });
      }

      it('returns a batch best first', async () => {
        const run = await createRun({ order: 'bfs' });
        const { w, root } = await claimRoot(run);
        const childIds = await ids(5);
        const children = childIds.map((id, ord) => child(id, root.id, ord, { state: 'pending', priority: ord === 2 ? 9 : 0 }));
        await commit(w, [step(root, done(), { children })]);
        const batch = await claim(w, run, 10);
        expect(batch.map((n) => n.id)).toEqual([childIds[2], childIds[0], childIds[1], childIds[3], childIds[4]]);
      });

      it('waits out the backoff of a retried node', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const result = await commit(w, [step(root, { type: 'retry', error: errorEntry('boom'), availableAt: Date.now() + 60_000 })]);
        expect(result.rejected).toEqual([]);
        expect(await claim(w, run)).toEqual([]);
        const node = await store.getNode(root.id);
        expect(node).toMatchObject({ state: 'pending', attempts: 1, owner: null });
        expect(node?.errors.map((e) => e.message)).toEqual(['boom']);

        const soon = await createRun();
        const { w: w2, root: root2 } = await claimRoot(soon);
        await commit(w2, [step(root2, { type: 'retry', error: errorEntry('again'), availableAt: Date.now() - 1 })]);
        const [again] = await claim(w2, soon);
        expect(again).toMatchObject({ id: root2.id, attempts: 1, epoch: 2, suspect: false });
      });

      it('keeps a released node and a not-before child asleep until their time, uncharged, and names the next wake', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        expect(await store.nextWake(run.id)).toBeNull();
        const [later, soon, now] = await ids(3);
        const wakeAt = Date.now() + 60_000;
        const children = [
          child(later as number, root.id, 0, { state: 'pending', availableAt: wakeAt }),
          child(soon as number, root.id, 1, { state: 'pending', availableAt: wakeAt + 1_000 }),
          child(now as number, root.id, 2, { state: 'pending' }),
        ];
        await commit(w, [step(root, wait, { children })]);
        expect(await store.nextWake(run.id)).toEqual({ at: wakeAt, nodes: 2 });
        const claimed = await claim(w, run, 10);
        expect(claimed.map((n) => n.id)).toEqual([now]);

        const held = claimed[0] as Held;
        await commit(w, [step(held, { type: 'release', availableAt: wakeAt - 30_000 }, { attempts: held.attempts ?? 0 })]);
        expect(await claim(w, run, 10)).toEqual([]);
        expect(await store.nextWake(run.id)).toEqual({ at: wakeAt - 30_000, nodes: 3 });
        const released = await store.getNode(now as number);
        expect(released).toMatchObject({ state: 'pending', attempts: 0, owner: null, errors: [] });
      });

      it('never leases one node to two workers', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const childIds = await ids(60);
        await commit(w, [step(root, done(), { children: childIds.map((id, ord) => child(id, root.id, ord, { state: 'pending' })) })]);
        const workers = await Promise.all([1, 2, 3, 4].map(() => worker(run.task)));
        const claimedBy = await Promise.all(
          workers.map(async (id) => {
            const mine: number[] = [];
            for (;;) {
              const batch = await claim(id, run, 7);
              if (batch.length === 0) return mine;
              mine.push(...batch.map((n) => n.id));
            }
          }),
        );
        const all = claimedBy.flat();
        expect(all).toHaveLength(60);
        expect(new Set(all).size).toBe(60);
        expect((await store.getRun(run.id))?.counts).toMatchObject({ pending: 0, running: 60, done: 1 });
      });
    });

    describe('commits', () => {
      it('creates born-leased children under epoch 1, owned by the committing worker', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b, c] = await ids(3);
        const result = await commit(w, [
          step(root, done('r'), { children: [child(a as number, root.id, 0), child(b as number, root.id, 1), child(c as number, root.id, 2, { state: 'pending' })] }),
        ]);
        expect(result).toMatchObject({ rejected: [], ready: [], duplicates: [] });
        expect(await store.getNode(a as number)).toMatchObject({ state: 'running', owner: w, epoch: 1, parentId: root.id, ord: 0, depth: 1 });
        expect(await store.getNode(c as number)).toMatchObject({ state: 'pending', owner: null, epoch: 0 });
        expect(await store.getNode(root.id)).toMatchObject({ state: 'done', result: JSON.stringify('r'), owner: null, attempts: 1 });
        expect(await store.getRun(run.id)).toMatchObject({ nodeCount: 4, counts: { pending: 1, running: 2, waiting: 0, done: 1, dead: 0, parked: 0 } });
        // The born children are held: only the pending one can be claimed.
        const other = await worker(run.task);
        expect((await claim(other, run, 10)).map((n) => n.id)).toEqual([c]);
      });

      it('applies ops in order: an op sees a child created earlier in the same commit, not one created later', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b] = await ids(2);
        const ca = child(a as number, root.id, 0);
        const cb = child(b as number, root.id, 1);
        const result = await commit(w, [
          step(born(cb, run.id), done(2)),
          step(root, done(), { children: [ca, cb] }),
          step(born(ca, run.id), done(1), { emits: [JSON.stringify('from a')] }),
        ]);
        expect(result.rejected).toEqual([b]);
        expect(await store.getNode(a as number)).toMatchObject({ state: 'done', result: '1' });
        expect(await store.getNode(b as number)).toMatchObject({ state: 'running', owner: w });
        expect((await store.readEmits(run.id, 0, 10)).map((e) => e.record)).toEqual([JSON.stringify('from a')]);
      });

      it('rejects a write under a stale epoch and applies nothing of it', async () => {
        const run = await createRun();
        const w1 = await worker(run.task);
        const [stale] = await claim(w1, run);
        if (!stale) throw new Error('no root');
        expect(await store.takeBack({ deadIds: [w1] })).toBe(1);
        const w2 = await worker(run.task);
        const [current] = await claim(w2, run);
        expect(current?.epoch).toBeGreaterThan(stale.epoch);
        const [a] = await ids(1);
        const ca = child(a as number, stale.id, 0);
        const result = await commit(w1, [
          { kind: 'effect', runId: run.id, nodeId: stale.id, nodeKey: 'root', epoch: stale.epoch, name: 'fetch', value: '"zombie"' },
          step(stale, done('zombie'), { children: [ca], emits: [JSON.stringify('zombie')] }),
          step(born(ca, run.id), done(1)),
        ]);
        expect(result.rejected.sort()).toEqual([stale.id, a].sort());
        expect(await store.getNode(stale.id)).toMatchObject({ state: 'running', owner: w2, epoch: current?.epoch, result: null });
        expect(await store.getNode(a as number)).toBeUndefined();
        expect(await store.readEmits(run.id, 0, 10)).toEqual([]);
        expect(await store.getEffect(run.id, 'root', 'fetch')).toBeUndefined();
        expect((await store.getRun(run.id))?.nodeCount).toBe(1);
        const fresh = await commit(w2, [step(current as LeasedNode, done('ok'))]);
        expect(fresh.rejected).toEqual([]);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'completed', result: JSON.stringify('ok') });
      });

      it('hands one node back with a release op, epoch moved on', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        await commit(w, [{ ...step(root, { type: 'release' }), attempts: root.attempts }]);
        expect(await store.getNode(root.id)).toMatchObject({ state: 'pending', owner: null, epoch: root.epoch + 1, attempts: 0 });
        const [again] = await claim(w, run);
        expect(again?.epoch).toBe(root.epoch + 2);
      });

      it('keeps the error history of a node that ends in the dead-letter queue', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        await commit(w, [step(root, { type: 'retry', error: errorEntry('first', 'HANDLER', 1), availableAt: 0 })]);
        const [again] = await claim(w, run);
        if (!again) throw new Error('not claimed');
        const result = await commit(w, [step(again, { type: 'dead', error: errorEntry('second', 'NON_RETRYABLE', 2) })]);
        expect(result.finishedRuns).toEqual([run.id]);
        const node = await store.getNode(root.id);
        expect(node).toMatchObject({ state: 'dead', attempts: 2, owner: null });
        expect(node?.errors.map((e) => [e.message, e.code, e.attempt])).toEqual([
          ['first', 'HANDLER', 1],
          ['second', 'NON_RETRYABLE', 2],
        ]);
        expect((await store.listNodes(run.id, { state: 'dead' })).map((n) => n.id)).toEqual([root.id]);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'failed', result: null });
      });

      it('numbers commits in increasing order', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const childIds = await ids(3);
        const first = await commit(w, [step(root, done(), { children: childIds.map((id, ord) => child(id, root.id, ord)) })]);
        const second = await commit(w, [step(born(child(childIds[0] as number, root.id, 0), run.id), done())]);
        const third = await commit(w, []);
        expect(second.seq).toBeGreaterThan(first.seq);
        expect(third.seq).toBeGreaterThan(second.seq);
      });

      it('persists a spawned chunk and keeps the node leased', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b] = await ids(2);
        const result = await commit(w, [
          {
            kind: 'spawn',
            runId: run.id,
            nodeId: root.id,
            epoch: root.epoch,
            children: [child(a as number, root.id, 0, { state: 'pending' }), child(b as number, root.id, 1, { state: 'pending' })],
            spawned: 2,
            waits: false,
            passDead: false,
          },
        ]);
        expect(result.rejected).toEqual([]);
        expect(await store.getNode(root.id)).toMatchObject({ state: 'running', owner: w, epoch: root.epoch });
        expect((await store.listChildren(root.id)).map((n) => n.id)).toEqual([a, b]);
        await store.takeBack({ deadIds: [w] });
        const w2 = await worker(run.task);
        const leased = await claim(w2, run, 10);
        expect(leased.find((n) => n.id === root.id)).toMatchObject({ spawned: 2, suspect: true });
      });

      it('writes a child born and finished within one group once, merged into its insert', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b] = await ids(2);
        const finished = child(a as number, root.id, 0, { state: 'done', result: '1', attempts: 1 });
        const result = await commit(w, [
          step(root, wait, { children: [finished, child(b as number, root.id, 1)], waits: true }),
          { ...step(born(finished, run.id), done(1), { waits: true, emits: [JSON.stringify('merged')] }), merged: true },
        ]);
        expect(result.rejected).toEqual([]);
        expect(await store.getNode(a as number)).toMatchObject({ state: 'done', result: '1', attempts: 1, owner: null });
        expect(await store.getNode(root.id)).toMatchObject({ state: 'waiting', pendingChildren: 1 });
        expect((await store.readEmits(run.id, 0, 10)).map((e) => e.record)).toEqual([JSON.stringify('merged')]);
        const last = await commit(w, [step(born(child(b as number, root.id, 1), run.id), done(1), { waits: true })]);
        expect(last.ready.map((n) => n.id)).toEqual([root.id]);
        // A merged op whose row was never created (its parent's op was fenced out) is rejected.
        const [c] = await ids(1);
        const orphan = child(c as number, root.id, 2, { state: 'done', result: '1', attempts: 1 });
        const stale = await commit(w, [
          step({ ...root, epoch: root.epoch }, done(), { children: [orphan] }),
          { ...step(born(orphan, run.id), done(1)), merged: true },
        ]);
        expect(stale.rejected.sort()).toEqual([root.id, c].sort());
        expect(await store.getNode(c as number)).toBeUndefined();
      });
    });

    describe('workers and leases', () => {
      it('takes back a dead worker’s nodes as suspects', async () => {
        const run = await createRun();
        const w1 = await worker(run.task);
        const [root] = await claim(w1, run);
        expect(root).toMatchObject({ attempts: 0, epoch: 1 });
        expect(await store.takeBack({ deadIds: [w1] })).toBe(1);
        expect(await store.getNode(run.rootId)).toMatchObject({ state: 'pending', owner: null, epoch: 2, attempts: 0 });
        expect(await store.heartbeat(w1, 60_000)).toBe(false);
        expect(await store.takeBack({ deadIds: [w1] })).toBe(0);
        const w2 = await worker(run.task);
        const [again] = await claim(w2, run);
        expect(again).toMatchObject({ suspect: true, attempts: 0, epoch: 3 });
      });

      it('counts a crash against the node its worker ran alone, only under that lease', async () => {
        const run = await createRun();
        const w1 = await worker(run.task);
        const [root] = await claim(w1, run);
        if (!root) throw new Error('no root');
        expect(await store.takeBack({ deadIds: [w1], blame: [{ id: root.id, epoch: root.epoch }] })).toBe(1);
        const w2 = await worker(run.task);
        const [again] = await claim(w2, run);
        expect(again).toMatchObject({ suspect: true, attempts: 1, epoch: 3 });
        // A stale blame (the lease moved on) counts nothing.
        expect(await store.takeBack({ deadIds: [w2], blame: [{ id: root.id, epoch: root.epoch }] })).toBe(1);
        expect((await store.getNode(root.id))?.attempts).toBe(1);
      });

      it('charges the node a worker ran alone when its lease ran out, once, and only under that lease', async () => {
        const run = await createRun();
        const lapsed = await worker(run.task, 1);
        const [root] = await claim(lapsed, run);
        if (!root) throw new Error('no root');
        expect(store.markAlone).toBeTypeOf('function');
        await store.markAlone?.(lapsed, { id: root.id, epoch: root.epoch });
        await sleep(50);
        // Its host's flight recorder says so too: still one attempt.
        expect(await store.takeBack({ expiredBefore: Date.now(), blame: [{ id: root.id, epoch: root.epoch }] })).toBe(1);
        const w2 = await worker(run.task, 60_000);
        const [again] = await claim(w2, run);
        expect(again).toMatchObject({ id: root.id, suspect: true, attempts: 1 });
        // A mark cleared after the step (or a lease that moved on) charges nothing.
        await store.markAlone?.(w2, { id: root.id, epoch: again?.epoch as number });
        await store.markAlone?.(w2, null);
        expect(await store.takeBack({ deadIds: [w2] })).toBe(1);
        expect((await store.getNode(root.id))?.attempts).toBe(1);
      });

      it('takes back workers whose lease ran out, and only those', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const childIds = await ids(2);
        await commit(w, [step(root, done(), { children: childIds.map((id, ord) => child(id, root.id, ord, { state: 'pending' })) })]);
        const lapsed = await worker(run.task, 1);
        const alive = await worker(run.task, 60_000);
        const [x] = await claim(lapsed, run);
        const [y] = await claim(alive, run);
        await sleep(50);
        const before = (await store.listWorkers()).find((r) => r.id === alive)?.leaseUntil ?? 0;
        expect(await store.heartbeat(alive, 120_000)).toBe(true);
        expect((await store.listWorkers()).find((r) => r.id === alive)?.leaseUntil).toBeGreaterThan(before);
        expect(await store.takeBack({ expiredBefore: Date.now() })).toBeGreaterThanOrEqual(1);
        expect(await store.getNode(x?.id as number)).toMatchObject({ state: 'pending', owner: null });
        expect(await store.getNode(y?.id as number)).toMatchObject({ state: 'running', owner: alive });
        const states = new Map((await store.listWorkers()).map((r) => [r.id, r.state]));
        expect(states.get(lapsed)).toBe('dead');
        expect(states.get(alive)).toBe('alive');
      });

      it('hands every node back on a graceful stop without counting an attempt', async () => {
        const run = await createRun();
        const w1 = await worker(run.task);
        await claim(w1, run);
        const [root] = await store.listNodes(run.id, {});
        await store.takeBack({ deadIds: [w1], blame: [{ id: run.rootId, epoch: root?.epoch ?? 0 }] });
        const w2 = await worker(run.task);
        const [suspect] = await claim(w2, run);
        expect(suspect).toMatchObject({ suspect: true, attempts: 1 });
        await store.releaseWorker(w2);
        expect(await store.getNode(run.rootId)).toMatchObject({ state: 'pending', owner: null, attempts: 1, epoch: (suspect?.epoch ?? 0) + 1 });
        expect((await store.listWorkers()).find((r) => r.id === w2)?.state).toBe('stopped');
        expect(await store.heartbeat(w2, 60_000)).toBe(false);
      });

      it('hands back only the named nodes when given a list', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b] = await ids(2);
        await commit(w, [step(root, done(), { children: [child(a as number, root.id, 0), child(b as number, root.id, 1)] })]);
        await store.releaseWorker(w, [
          { id: a as number, epoch: 1 },
          { id: b as number, epoch: 7 },
        ]);
        expect(await store.getNode(a as number)).toMatchObject({ state: 'pending', owner: null, epoch: 2 });
        expect(await store.getNode(b as number)).toMatchObject({ state: 'running', owner: w, epoch: 1 });
        expect(await store.heartbeat(w, 60_000)).toBe(true);
      });
    });

    describe('combine and shared children', () => {
      it('makes a waiting parent ready for its combine when its last child finishes', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const childIds = await ids(3);
        const children = childIds.map((id, ord) => child(id, root.id, ord));
        const first = await commit(w, [step(root, wait, { children, waits: true })]);
        expect(first.ready).toEqual([]);
        expect(await store.getNode(root.id)).toMatchObject({ state: 'waiting', pendingChildren: 3, owner: null });
        const two = await commit(w, [step(born(children[0] as NewNode, run.id), done(1), { waits: true }), step(born(children[1] as NewNode, run.id), done(2), { waits: true })]);
        expect(two.ready).toEqual([]);
        expect((await store.getNode(root.id))?.pendingChildren).toBe(1);
        const last = await commit(w, [step(born(children[2] as NewNode, run.id), done(3), { waits: true })]);
        expect(last.ready).toHaveLength(1);
        expect(last.ready[0]).toMatchObject({ id: root.id, phase: 'combine', epoch: root.epoch + 1, runId: run.id });
        expect(await store.getNode(root.id)).toMatchObject({ state: 'running', owner: w, phase: 'combine', pendingChildren: 0 });
        expect((await store.childResults(root.id)).map((r) => r.result)).toEqual(['1', '2', '3']);
        const end = await commit(w, [step(last.ready[0] as LeasedNode, done(6), { waits: true })]);
        expect(end.finishedRuns).toEqual([run.id]);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'completed', result: '6', counts: { done: 4, pending: 0, running: 0, waiting: 0 } });
        expect((await store.getRun(run.id))?.finishedAt).not.toBeNull();
      });

      it('commits a combine run ahead (ifReady) with the last children in one group, up two levels of a DAG', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b, s] = await ids(3);
        const ca = keyedChild(a as number, root.id, 0, 'a');
        const cb = keyedChild(b as number, root.id, 1, 'b');
        await commit(w, [step(root, wait, { children: [ca, cb], waits: true })]);
        const shared = keyedChild(s as number, a as number, 0, 's', { depth: 2 });
        const [dup] = await ids(1);
        await commit(w, [
          step(born(ca, run.id), wait, { children: [shared], waits: true }),
          step(born(cb, run.id), wait, { children: [keyedChild(dup as number, b as number, 0, 's', { depth: 2, state: 'pending' })], waits: true }),
        ]);
        // s finishes; a and b (waiting on s) and the root (waiting on a and b) combine in the same group.
        const asWaiting = (id: number): Held => ({ id, runId: run.id, epoch: 1, attempts: 0 });
        const result = await commit(w, [
          step(born(shared, run.id), done(1), { waits: true }),
          step(asWaiting(a as number), done(10), { waits: true, ifReady: true }),
          step(asWaiting(b as number), done(20), { waits: true, ifReady: true }),
          step({ ...root, attempts: 0 }, done(30), { waits: true, ifReady: true }),
        ]);
        expect(result.rejected).toEqual([]);
        expect(result.ready).toEqual([]);
        expect(result.finishedRuns).toEqual([run.id]);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'completed', result: '30', counts: { done: 4, waiting: 0, running: 0 } });
        expect(await store.getNode(a as number)).toMatchObject({ state: 'done', phase: 'combine', pendingChildren: 0, result: '10' });
      });

      it('rejects a combine run ahead (ifReady) while a child is unfinished, then makes the node ready the ordinary way', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const childIds = await ids(2);
        const children = childIds.map((id, ord) => child(id, root.id, ord));
        await commit(w, [step(root, wait, { children, waits: true })]);
        const early = await commit(w, [step(born(children[0] as NewNode, run.id), done(1), { waits: true }), step({ ...root, attempts: 0 }, done(9), { waits: true, ifReady: true })]);
        expect(early.rejected).toEqual([root.id]);
        expect(await store.getNode(root.id)).toMatchObject({ state: 'waiting', pendingChildren: 1 });
        const last = await commit(w, [step(born(children[1] as NewNode, run.id), done(2), { waits: true })]);
        expect(last.ready.map((n) => n.id)).toEqual([root.id]);
        // Leased now under a new epoch: a late ifReady under the old one is rejected too.
        const late = await commit(w, [step({ ...root, attempts: 0 }, done(9), { waits: true, ifReady: true })]);
        expect(late.rejected).toEqual([root.id]);
        await commit(w, [step(last.ready[0] as LeasedNode, done(3), { waits: true })]);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'completed', result: '3' });
      });

      it('gives combine its children in spawn order, dead ones with their error', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const childIds = await ids(3);
        const children = childIds.map((id, ord) => child(id, root.id, ord));
        await commit(w, [step(root, wait, { children, waits: true, passDead: true })]);
        const result = await commit(w, [
          step(born(children[2] as NewNode, run.id), done('c'), { waits: true, passDead: true }),
          step(born(children[0] as NewNode, run.id), { type: 'dead', error: errorEntry('a failed') }, { waits: true, passDead: true }),
          step(born(children[1] as NewNode, run.id), done('b'), { waits: true, passDead: true }),
        ]);
        expect(result.ready.map((n) => n.id)).toEqual([root.id]);
        expect(await store.childResults(root.id)).toEqual([
          { key: `${root.id}/0`, state: 'dead', result: null, error: 'a failed' },
          { key: `${root.id}/1`, state: 'done', result: JSON.stringify('b'), error: null },
          { key: `${root.id}/2`, state: 'done', result: JSON.stringify('c'), error: null },
        ]);
        expect(await store.childResults(String(root.id))).toHaveLength(3);
      });

      it('holds a waiting parent while a child is dead, unless dead children pass', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a] = await ids(1);
        const ca = child(a as number, root.id, 0);
        await commit(w, [step(root, wait, { children: [ca], waits: true })]);
        const result = await commit(w, [step(born(ca, run.id), { type: 'dead', error: errorEntry('gone') }, { waits: true })]);
        expect(result.ready).toEqual([]);
        expect(await store.getNode(root.id)).toMatchObject({ state: 'waiting', pendingChildren: 1 });
        expect(result.finishedRuns).toEqual([run.id]);
        expect((await store.getRun(run.id))?.state).toBe('failed');
      });

      it('dedupes keyed children: a shared child completes every parent waiting on it', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b, s1, s2] = await ids(4);
        const ca = keyedChild(a as number, root.id, 0, 'a');
        const cb = keyedChild(b as number, root.id, 1, 'b');
        await commit(w, [step(root, wait, { children: [ca, cb], waits: true })]);
        const shared = keyedChild(s1 as number, a as number, 0, 'shared', { depth: 2 });
        const again = keyedChild(s2 as number, b as number, 0, 'shared', { depth: 2 });
        const linked = await commit(w, [
          step(born(ca, run.id), wait, { children: [shared], waits: true }),
          step(born(cb, run.id), wait, { children: [again], waits: true }),
        ]);
        expect(linked.duplicates).toEqual([s2]);
        expect(linked.rejected).toEqual([]);
        expect(await store.getNode(s2 as number)).toBeUndefined();
        expect((await store.listChildren(b as number)).map((n) => n.id)).toEqual([s1]);
        expect((await store.childResults(b as number)).map((r) => r.key)).toEqual(['shared']);
        expect(await store.getNode(b as number)).toMatchObject({ state: 'waiting', pendingChildren: 1 });
        const finished = await commit(w, [step(born(shared, run.id), done(42), { waits: true })]);
        expect(finished.ready.map((n) => n.id).sort()).toEqual([a, b].sort());
        expect((await store.childResults(b as number)).map((r) => r.result)).toEqual(['42']);
        expect((await store.getRun(run.id))?.nodeCount).toBe(4);
      });

      it('does not hold a parent on a keyed child that is already done', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b, s1, s2] = await ids(4);
        const ca = keyedChild(a as number, root.id, 0, 'a');
        const cb = keyedChild(b as number, root.id, 1, 'b');
        await commit(w, [step(root, wait, { children: [ca, cb], waits: true })]);
        const shared = keyedChild(s1 as number, a as number, 0, 'memo', { depth: 2 });
        await commit(w, [step(born(ca, run.id), wait, { children: [shared], waits: true }), step(born(shared, run.id), done('m'), { waits: true })]);
        const result = await commit(w, [step(born(cb, run.id), wait, { children: [keyedChild(s2 as number, b as number, 0, 'memo', { depth: 2 })], waits: true })]);
        expect(result.duplicates).toEqual([s2]);
        expect(result.ready.map((n) => n.id)).toEqual([b]);
        expect((await store.childResults(b as number)).map((r) => r.result)).toEqual([JSON.stringify('m')]);
      });

      it('sends a parent that closes a dependency cycle to the dead-letter queue', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, self, back] = await ids(3);
        const ca = keyedChild(a as number, root.id, 0, 'a');
        await commit(w, [step(root, wait, { children: [ca], waits: true })]);
        const direct = await commit(w, [step(born(ca, run.id), wait, { children: [keyedChild(self as number, a as number, 0, 'a', { depth: 2 })], waits: true })]);
        expect(direct.duplicates).toEqual([self]);
        const dead = await store.getNode(a as number);
        expect(dead?.state).toBe('dead');
        expect(dead?.errors.at(-1)?.code).toBe('CYCLE');

        const run2 = await createRun();
        const { w: w2, root: root2 } = await claimRoot(run2);
        const [x, y] = await ids(2);
        const cx = keyedChild(x as number, root2.id, 0, 'x');
        const cy = keyedChild(y as number, x as number, 0, 'y', { depth: 2 });
        await commit(w2, [step(root2, wait, { children: [cx], waits: true }), step(born(cx, run2.id), wait, { children: [cy], waits: true })]);
        const indirect = await commit(w2, [step(born(cy, run2.id), wait, { children: [keyedChild(back as number, y as number, 0, 'x', { depth: 3 })], waits: true })]);
        expect(indirect.duplicates).toEqual([back]);
        expect((await store.getNode(y as number))?.errors.at(-1)?.code).toBe('CYCLE');
        expect((await store.getNode(y as number))?.state).toBe('dead');
        expect((await store.getNode(x as number))?.state).toBe('waiting');
      });
    });

    describe('budgets, parking and settling', () => {
      it('parks children past the node budget and pauses the run', async () => {
        const run = await createRun({ nodeBudget: 3 });
        const { w, root } = await claimRoot(run);
        const childIds = await ids(4);
        await commit(w, [step(root, done(), { children: childIds.map((id, ord) => child(id, root.id, ord, { state: 'pending' })) })]);
        const after = await store.getRun(run.id);
        expect(after).toMatchObject({ state: 'paused', nodeCount: 5, counts: { pending: 2, parked: 2, done: 1 } });
        expect(after?.pauseReason).toMatch(/budget/);
        const parked = await store.listNodes(run.id, { state: 'parked' });
        expect(parked.map((n) => n.id)).toEqual(childIds.slice(2));
        expect(parked[0]?.parkReason).toMatch(/budget of 3/);
        expect(await store.claimNodes(w, { task: run.task, maxVersion: 1 }, 10)).toEqual([]);
        expect(await store.decideParked(run.id, 'all', 'approve')).toBe(2);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'running', counts: { pending: 4, parked: 0 } });
      });

      it('parks a node on a fan-out alarm; approving lets it fan out', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const result = await commit(w, [step(root, { type: 'park', reason: 'fan-out alarm: too many children', pauseRun: true })]);
        expect(result.rejected).toEqual([]);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'paused', pauseReason: 'fan-out alarm: too many children', counts: { parked: 1 } });
        expect(await store.getNode(root.id)).toMatchObject({ state: 'parked', parkReason: 'fan-out alarm: too many children' });
        expect(await store.decideParked(run.id, [root.id], 'approve')).toBe(1);
        expect((await store.getRun(run.id))?.state).toBe('running');
        const [again] = await claim(w, run);
        expect(again).toMatchObject({ id: root.id, fanoutApproved: true });
      });

      it('rejecting a parked node sends it to the dead-letter queue', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        await commit(w, [step(root, { type: 'park', reason: 'fan-out alarm', pauseRun: true })]);
        expect(await store.decideParked(run.id, 'all', 'reject')).toBe(1);
        const node = await store.getNode(root.id);
        expect(node?.state).toBe('dead');
        expect(node?.errors.at(-1)?.code).toBe('REJECTED');
        expect(await store.getRun(run.id)).toMatchObject({ state: 'failed', counts: { dead: 1, parked: 0 } });
      });

      it('pauses a run whose only remaining nodes are parked', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a] = await ids(1);
        const result = await commit(w, [
          step(root, done(), { children: [child(a as number, root.id, 0, { state: 'parked', error: errorEntry('deeper than limits.maxDepth', 'DEPTH', 0) })] }),
        ]);
        expect(result.finishedRuns).toEqual([run.id]);
        const after = await store.getRun(run.id);
        expect(after?.state).toBe('paused');
        expect(after?.pauseReason).toBeTruthy();
        expect((await store.getNode(a as number))?.parkReason).toBe('deeper than limits.maxDepth');
      });

      it('completes a traversal when its last node finishes, with the root’s result', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a] = await ids(1);
        const ca = child(a as number, root.id, 0);
        const first = await commit(w, [step(root, done('root result'), { children: [ca] })]);
        expect(first.finishedRuns).toEqual([]);
        expect((await store.getRun(run.id))?.state).toBe('running');
        const last = await commit(w, [step(born(ca, run.id), done('leaf'))]);
        expect(last.finishedRuns).toEqual([run.id]);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'completed', result: JSON.stringify('root result') });
        expect(await store.settleRun(run.id)).toMatchObject({ state: 'completed', result: JSON.stringify('root result') });
      });

      it('redrives dead nodes with a fresh attempt budget and reopens a failed run', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        await commit(w, [step({ ...root, attempts: 2 }, { type: 'dead', error: errorEntry('nope') })]);
        expect((await store.getRun(run.id))?.state).toBe('failed');
        expect(await store.redrive(run.id, 'all')).toBe(1);
        expect(await store.getNode(root.id)).toMatchObject({ state: 'pending', attempts: 0, owner: null });
        expect(await store.getRun(run.id)).toMatchObject({ state: 'running', counts: { pending: 1, dead: 0 } });
        const [again] = await claim(w, run);
        expect(again).toMatchObject({ attempts: 0, suspect: false });
        expect(await store.redrive(run.id, 'all')).toBe(0);
      });

      it('drops dead nodes from the queue for good', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b, c] = await ids(3);
        const children = [a, b, c].map((id, ord) => child(id as number, root.id, ord));
        await commit(w, [
          step(root, done(), { children }),
          ...children.slice(0, 2).map((n) => step(born(n, run.id), { type: 'dead', error: errorEntry('x') })),
          step(born(children[2] as NewNode, run.id), done()),
        ]);
        expect(await store.dropDead(run.id, [a as number])).toBe(1);
        expect(await store.dropDead(run.id, [a as number])).toBe(0);
        expect((await store.listNodes(run.id, { state: 'dead' })).map((n) => n.id)).toEqual([b]);
        expect(await store.dropDead(run.id, 'all')).toBe(1);
        expect(await store.listNodes(run.id, { state: 'dead' })).toEqual([]);
        expect(await store.redrive(run.id, 'all')).toBe(0);
        expect((await store.getNode(a as number))?.state).toBe('dead');
      });
    });

    describe('run controls: pause, budgets, drop, delete, purge, restart', () => {
      const personPause = { from: ['running', 'paused'] as const, reason: 'paused by a person (`rlm pause`)' };

      it("a commit tells each run's state after it, so a worker learns of a pause within one group", async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a] = await ids(1);
        const ca = child(a as number, root.id, 0);
        const first = await commit(w, [step(root, done(), { children: [ca] })]);
        expect(first.runStates).toEqual({ [run.id]: 'running' });
        expect(await store.setRunState(run.id, 'paused', personPause)).toBe(true);
        // Steps in flight still commit; the answer says the run is paused.
        const second = await commit(w, [step(born(ca, run.id), done())]);
        expect(second.rejected).toEqual([]);
        expect(second.runStates).toEqual({ [run.id]: 'completed' });
        const other = await createRun();
        const { w: w2, root: root2 } = await claimRoot(other);
        const [b] = await ids(1);
        expect(await store.setRunState(other.id, 'paused', personPause)).toBe(true);
        expect((await commit(w2, [step(root2, done(), { children: [child(b as number, root2.id, 0, { state: 'pending' })] })])).runStates).toEqual({ [other.id]: 'paused' });
        expect(await claim(w2, other)).toEqual([]);
      });

      it("deciding the last parked node ends a pause for parked nodes, never a person's pause", async () => {
        for (const person of [false, true]) {
          const run = await createRun({ nodeBudget: 1 });
          const { w, root } = await claimRoot(run);
          const childIds = await ids(2);
          await commit(w, [step(root, done(), { children: childIds.map((id, ord) => child(id, root.id, ord, { state: 'pending' })) })]);
          expect(await store.getRun(run.id)).toMatchObject({ state: 'paused', counts: { parked: 2 } });
          if (person) expect(await store.setRunState(run.id, 'paused', personPause)).toBe(true);
          expect(await store.setNodeBudget(run.id, 10)).toBe(3);
          expect(await store.decideParked(run.id, 'all', 'approve')).toBe(2);
          expect(await store.getRun(run.id)).toMatchObject({ state: person ? 'paused' : 'running', nodeBudget: 10, counts: { pending: 2, parked: 0 } });
        }
      });

      it('a raised node budget lets children past the old one be created', async () => {
        const run = await createRun({ nodeBudget: 2 });
        const { w, root } = await claimRoot(run);
        expect(await store.setNodeBudget(run.id, 4)).toBe(1);
        const childIds = await ids(3);
        await commit(w, [step(root, done(), { children: childIds.map((id, ord) => child(id, root.id, ord, { state: 'pending' })) })]);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'running', nodeCount: 4, counts: { pending: 3, parked: 0 } });
        await expect(store.setNodeBudget('no-such-run', 3)).rejects.toMatchObject({ code: 'NOT_FOUND' });
      });

      it('dropping a dead node takes it out of the dead count; the run settles without it', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b] = await ids(2);
        const [ca, cb] = [child(a as number, root.id, 0), child(b as number, root.id, 1)];
        await commit(w, [step(root, done(), { children: [ca, cb] }), step(born(ca, run.id), { type: 'dead', error: errorEntry('x') }), step(born(cb, run.id), done())]);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'completed', counts: { dead: 1 } });
        expect(await store.dropDead(run.id, [a as number])).toBe(1);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'completed', counts: { dead: 0, done: 2 } });
        // A dropped node can still be redriven by id; it counts once.
        expect(await store.redrive(run.id, [a as number])).toBe(1);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'running', counts: { dead: 0, pending: 1, done: 2 } });
      });

      it("refuses to drop a dead child its parent waits on under deadChildren 'wait'; under 'pass' the drop goes through", async () => {
        for (const passDead of [false, true]) {
          const run = await createRun({ passDead });
          const { w, root } = await claimRoot(run);
          const [a, b] = await ids(2);
          const [ca, cb] = [child(a as number, root.id, 0), child(b as number, root.id, 1)];
          await commit(w, [
            step(root, wait, { children: [ca, cb], waits: true, passDead }),
            step(born(ca, run.id), { type: 'dead', error: errorEntry('x') }, { waits: true, passDead }),
          ]);
          if (!passDead) {
            await expect(store.dropDead(run.id, [a as number])).rejects.toMatchObject({ code: 'REFUSED', message: expect.stringMatching(/parent .*waits for it.*deadChildren/) });
            expect((await store.getRun(run.id))?.counts.dead).toBe(1);
            continue;
          }
          expect(await store.dropDead(run.id, 'all')).toBe(1);
          expect((await store.getRun(run.id))?.counts.dead).toBe(0);
          await commit(w, [step(born(cb, run.id), done(2), { waits: true, passDead })]);
          // The parent gets its combine with the dropped child as a failure.
          expect(await store.getNode(root.id)).toMatchObject({ state: 'running', phase: 'combine' });
          expect((await store.childResults(root.id)).map((c) => c.state)).toEqual(['dead', 'done']);
        }
      });

      it('deletes a run and all it owns; refuses one with live leases unless forced', async () => {
        const run = await createRun();
        const keep = await createRun();
        const { w, root } = await claimRoot(run);
        const [a] = await ids(1);
        const ca = child(a as number, root.id, 0);
        await commit(w, [
          { kind: 'effect', runId: run.id, nodeId: root.id, nodeKey: 'root', epoch: root.epoch, name: 'e', value: '1' },
          step(root, done(), { children: [ca], emits: ['"r"'] }),
        ]);
        await expect(store.deleteRun(run.id)).rejects.toMatchObject({ code: 'RUN_BUSY', message: expect.stringContaining('--force') });
        expect(await store.deleteRun(run.id, { force: true })).toBe(2);
        runIds = runIds.filter((id) => id !== run.id);
        expect(await store.getRun(run.id)).toBeUndefined();
        expect(await store.getNode(a as number)).toBeUndefined();
        expect(await store.readEmits(run.id, 0, 10)).toEqual([]);
        expect(await store.getEffect(run.id, 'root', 'e')).toBeUndefined();
        // The late commit of the worker that held the lease is fenced, not applied.
        expect((await commit(w, [step(born(ca, run.id), done())])).rejected).toEqual([a]);
        expect(await store.getRun(keep.id)).toMatchObject({ state: 'running', counts: { pending: 1 } });
        await expect(store.deleteRun(run.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
        // Without live leases, no force is needed.
        await store.releaseWorker(w);
        expect(await store.deleteRun(keep.id)).toBe(1);
        runIds = runIds.filter((id) => id !== keep.id);
      });

      it('purges finished runs that finished before a time, and nothing else', async () => {
        const finished = await createRun();
        const { w, root } = await claimRoot(finished);
        await commit(w, [step(root, done('r'))]);
        const cancelled = await createRun();
        expect(await store.setRunState(cancelled.id, 'cancelled', { from: ['running'] })).toBe(true);
        expect((await store.getRun(cancelled.id))?.finishedAt).not.toBeNull();
        const live = await createRun();
        expect(await store.purgeRuns(Date.now() - 60_000)).toEqual([]);
        expect((await store.purgeRuns(Date.now() + 1_000)).sort()).toEqual([finished.id, cancelled.id].sort());
        runIds = runIds.filter((id) => id === live.id);
        expect(await store.getRun(finished.id)).toBeUndefined();
        expect(await store.getRun(live.id)).toMatchObject({ state: 'running' });
      });

      it('restarts a run from its root input under the same id, its nodes, effects and records gone', async () => {
        const run = await createRun({ context: '{"c":1}' });
        const { w, root } = await claimRoot(run);
        const [a] = await ids(1);
        const ca = child(a as number, root.id, 0);
        await commit(w, [
          { kind: 'effect', runId: run.id, nodeId: root.id, nodeKey: 'root', epoch: root.epoch, name: 'e', value: '1' },
          step(root, done('r'), { children: [ca], emits: ['"r"'] }),
          step(born(ca, run.id), done()),
        ]);
        expect((await store.getRun(run.id))?.state).toBe('completed');
        const restarted = await store.restartRun(run.id);
        expect(restarted).toMatchObject({ id: run.id, state: 'running', result: null, nodeCount: 1, finishedAt: null, counts: { pending: 1, done: 0 } });
        expect(restarted.rootId).not.toBe(root.id);
        expect(await store.getNode(root.id)).toBeUndefined();
        expect(await store.readEmits(run.id, 0, 10)).toEqual([]);
        expect(await store.getEffect(run.id, 'root', 'e')).toBeUndefined();
        const [again] = await claim(w, restarted);
        expect(again).toMatchObject({ id: restarted.rootId, depth: 0, key: 'root', attempts: 0, input: run.input, context: '{"c":1}' });
        await expect(store.restartRun(run.id)).rejects.toMatchObject({ code: 'RUN_BUSY' });
      });

      it('lists only live workers when asked, for a heartbeat that stays bounded', async () => {
        const a = await worker('t');
        const b = await worker('t');
        await store.releaseWorker(b);
        const alive = (await store.listWorkers({ alive: true })).map((r) => r.id);
        expect(alive).toContain(a);
        expect(alive).not.toContain(b);
        expect((await store.listWorkers()).map((r) => r.id)).toContain(b);
      });
    });

    describe('emits, effects and reads', () => {
      it('streams emitted records in commit order', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a] = await ids(1);
        const ca = child(a as number, root.id, 0);
        await commit(w, [step(root, done(), { children: [ca], emits: ['"a"', '"b"'] })]);
        await commit(w, [step(born(ca, run.id), done(), { emits: ['"c"'] })]);
        const all = await store.readEmits(run.id, 0, 10);
        expect(all.map((e) => [e.record, e.nodeId])).toEqual([
          ['"a"', root.id],
          ['"b"', root.id],
          ['"c"', a],
        ]);
        expect(all[1]?.seq).toBeGreaterThan(all[0]?.seq ?? Number.POSITIVE_INFINITY);
        expect((await store.readEmits(run.id, all[1]?.seq ?? 0, 10)).map((e) => e.record)).toEqual(['"c"']);
        expect((await store.readEmits(run.id, 0, 2)).map((e) => e.record)).toEqual(['"a"', '"b"']);
      });

      it('journals effects: the first writer wins, and a fenced writer not at all', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const effect = (name: string, value: string, epoch = root.epoch): CommitOp => ({ kind: 'effect', runId: run.id, nodeId: root.id, nodeKey: 'root', epoch, name, value });
        expect((await commit(w, [effect('fetch', '"first"'), effect('fetch', '"second"')])).rejected).toEqual([]);
        await commit(w, [effect('fetch', '"third"')]);
        expect(await store.getEffect(run.id, 'root', 'fetch')).toMatchObject({ name: 'fetch', value: '"first"', nodeId: root.id });
        expect((await commit(w, [effect('other', '"stale"', root.epoch + 5)])).rejected).toEqual([root.id]);
        expect(await store.getEffect(run.id, 'root', 'other')).toBeUndefined();
        expect((await store.listEffects(root.id)).map((e) => [e.name, e.value])).toEqual([['fetch', '"first"']]);
      });

      it('counts subtrees and depths', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b, c] = await ids(3);
        const ca = child(a as number, root.id, 0);
        const cb = child(b as number, root.id, 1, { state: 'pending' });
        const cc = child(c as number, a as number, 0, { depth: 2, state: 'pending' });
        await commit(w, [step(root, done(), { children: [ca, cb] }), step(born(ca, run.id), done(), { children: [cc] })]);
        expect(await store.subtreeCounts(root.id)).toEqual({ pending: 2, running: 0, waiting: 0, done: 2, dead: 0, parked: 0 });
        expect(await store.subtreeCounts(a as number)).toEqual({ pending: 1, running: 0, waiting: 0, done: 1, dead: 0, parked: 0 });
        expect(await store.subtreeCountsUpTo(root.id, 4)).toEqual({ pending: 2, running: 0, waiting: 0, done: 2, dead: 0, parked: 0 });
        expect(await store.subtreeCountsUpTo(root.id, 3)).toBeNull();
        expect(await store.subtreeCountsUpTo(a as number, 2)).toEqual({ pending: 1, running: 0, waiting: 0, done: 1, dead: 0, parked: 0 });
        expect(await store.subtreeCountsUpTo(c as number, 0)).toBeNull();
        expect(await store.depthHistogram(run.id)).toEqual([
          { depth: 0, count: 1 },
          { depth: 1, count: 2 },
          { depth: 2, count: 1 },
        ]);
        expect((await store.listNodes(run.id, {})).map((n) => n.id)).toEqual([root.id, a, b, c].sort((x, y) => (x as number) - (y as number)));
        expect((await store.listNodes(run.id, { state: 'pending', limit: 1 })).length).toBe(1);
        expect((await store.listChildren(root.id, 1, 1)).map((n) => n.id)).toEqual([b]);
      });
    });

    describe("a person's decision releases a parent under deadChildren 'pass'", () => {
      /** A root waiting on a finished child and a parked one. */
      async function parkedChild(passDead: boolean): Promise<{ run: RunRecord; w: string; root: LeasedNode; b: number }> {
        const run = await createRun({ passDead });
        const { w, root } = await claimRoot(run);
        const [a, b] = await ids(2);
        const ca = child(a as number, root.id, 0);
        const cb = child(b as number, root.id, 1);
        await commit(w, [step(root, wait, { children: [ca, cb], waits: true, passDead })]);
        await commit(w, [step(born(ca, run.id), done(1), { waits: true, passDead }), step(born(cb, run.id), { type: 'park', reason: 'depth overflow', pauseRun: false }, { waits: true, passDead })]);
        return { run, w, root, b: b as number };
      }

      for (const how of ['reject', 'cancel'] as const) {
        it(`${how}: the waiting parent becomes ready for its combine when dead children pass`, async () => {
          const { run, w, root, b } = await parkedChild(true);
          if (how === 'reject') expect(await store.decideParked(run.id, [b], 'reject')).toBe(1);
          else if (store.cancelSubtree) expect(await store.cancelSubtree(run.id, b)).toBe(1);
          else return;
          expect(await store.getNode(root.id)).toMatchObject({ state: 'pending', phase: 'combine' });
          expect((await store.getRun(run.id))?.counts).toMatchObject({ pending: 1, waiting: 0, done: 1, dead: 1, parked: 0 });
          if (how === 'cancel') await store.setRunState(run.id, 'running');
          const [again] = await claim(w, run);
          expect(again).toMatchObject({ id: root.id, phase: 'combine' });
          expect((await store.childResults(root.id)).map((c) => c.state)).toEqual(['done', 'dead']);
        });

        it(`${how}: the waiting parent keeps waiting for a redrive by default`, async () => {
          const { run, root, b } = await parkedChild(false);
          if (how === 'reject') expect(await store.decideParked(run.id, [b], 'reject')).toBe(1);
          else if (store.cancelSubtree) expect(await store.cancelSubtree(run.id, b)).toBe(1);
          else return;
          expect(await store.getNode(root.id)).toMatchObject({ state: 'waiting' });
          expect(await store.redrive(run.id, [b])).toBe(1);
          expect((await store.getRun(run.id))?.counts).toMatchObject({ pending: 1, waiting: 1, dead: 0 });
        });
      }
    });

    describe('subtree cancellation', () => {
      it('sends a subtree’s unfinished nodes to the dead-letter queue and fences their leases', async () => {
        if (!store.cancelSubtree) return;
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [a, b, a1, a2] = await ids(4);
        const ca = child(a as number, root.id, 0);
        const cb = child(b as number, root.id, 1);
        const ca1 = child(a1 as number, a as number, 0, { depth: 2, state: 'pending' });
        const ca2 = child(a2 as number, a as number, 1, { depth: 2 });
        await commit(w, [step(root, wait, { children: [ca, cb], waits: true }), step(born(ca, run.id), wait, { children: [ca1, ca2], waits: true })]);
        await commit(w, [step(born(ca2, run.id), done(), { waits: true })]);
        expect(await store.cancelSubtree(run.id, a as number)).toBe(2);
        expect((await store.getNode(a as number))?.errors.at(-1)?.code).toBe('CANCELLED');
        expect(await store.getNode(a1 as number)).toMatchObject({ state: 'dead', owner: null });
        expect((await store.getNode(a2 as number))?.state).toBe('done');
        expect(await store.getNode(b as number)).toMatchObject({ state: 'running', owner: w });
        const late = await commit(w, [step({ id: a as number, runId: run.id, epoch: 2 }, done())]);
        expect(late.rejected).toEqual([a]);
        expect(await store.getRun(run.id)).toMatchObject({ state: 'running', counts: { dead: 2, waiting: 1, running: 1, done: 1 } });
      });
    });

    describe('compaction', () => {
      it('prunes finished subtrees and keeps keyed results and the counters', async () => {
        if (!store.compact) return;
        const run = await createRun();
        runIds = runIds.filter((id) => id !== run.id); // deleted rows no longer add up to the kept totals
        const { w, root } = await claimRoot(run);
        const [a, b, k] = await ids(3);
        const ca = child(a as number, root.id, 0);
        const cb = child(b as number, root.id, 1);
        const ck = keyedChild(k as number, root.id, 2, 'kept');
        await commit(w, [step(root, done('r'), { children: [ca, cb, ck] }), step(born(ca, run.id), done(1)), step(born(ck, run.id), done('k'))]);
        await store.commit(w, [{ kind: 'effect', runId: run.id, nodeId: b as number, nodeKey: cb.key, epoch: 1, name: 'e', value: '1' }]);
        const before = await store.getRun(run.id);
        expect(await store.compact(run.id)).toEqual({ deleted: 1, pruned: 1 });
        expect(await store.getNode(a as number)).toBeUndefined();
        expect(await store.getNode(b as number)).toMatchObject({ state: 'running' });
        expect(await store.getNode(k as number)).toMatchObject({ state: 'done', result: JSON.stringify('k'), input: null, key: 'kept' });
        expect((await store.getRun(run.id))?.counts).toEqual(before?.counts);
        expect(await store.getEffect(run.id, cb.key, 'e')).toBeDefined();
      });
    });

    describe('payloads', () => {
      /** A binary payload: the engine's mark, then bytes that are not UTF-8 and hold NUL. */
      const bin = (...body: number[]): Uint8Array => Uint8Array.from([0xc1, 0x01, ...body]);
      /** A payload's form and content: bytes must come back as bytes, text as text. */
      const form = (payload: Payload | null | undefined): string | null => {
        if (payload === null || payload === undefined) return null;
        return typeof payload === 'string' ? `text ${payload}` : `bytes ${Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('hex')}`;
      };
      const forms = (payloads: readonly (Payload | null | undefined)[]) => payloads.map(form);

      it('gives bytes back as bytes and text as text, wherever a payload goes', async () => {
        const input = bin(0x00, 0xff, 0x7e, 0x00, 0x80);
        const context = bin(0x00);
        const run = await createRun({ input, context });
        expect(form((await store.getRun(run.id))?.input)).toBe(form(input));
        const { w, root } = await claimRoot(run);
        expect(forms([root.input, root.context])).toEqual(forms([input, context]));
        const [a, b, c] = await ids(3);
        const ca = child(a as number, root.id, 0, { input: bin(1), context: bin(2) });
        const cb = child(b as number, root.id, 1, { input: JSON.stringify({ text: true }), context, state: 'pending' });
        const cc = child(c as number, root.id, 2, { input: bin(3), state: 'done', result: bin(4), attempts: 1 });
        const first = await commit(w, [
          { kind: 'effect', runId: run.id, nodeId: root.id, nodeKey: 'root', epoch: root.epoch, name: 'fetch', value: bin(5, 0) },
          step(root, { type: 'wait', result: bin(6) }, { children: [ca, cb, cc], waits: true, emits: [bin(7), '"text"'] }),
          { ...step(born(cc, run.id), { type: 'done', result: bin(4) }, { waits: true, emits: [bin(8)] }), merged: true },
        ]);
        expect(first.rejected).toEqual([]);
        expect(form((await store.getEffect(run.id, 'root', 'fetch'))?.value)).toBe(form(bin(5, 0)));
        expect(forms((await store.listEffects(root.id)).map((e) => e.value))).toEqual(forms([bin(5, 0)]));
        expect(forms((await store.readEmits(run.id, 0, 10)).map((e) => e.record))).toEqual(forms([bin(7), '"text"', bin(8)]));
        const nodeA = await store.getNode(a as number);
        expect(forms([nodeA?.input, nodeA?.context])).toEqual(forms([bin(1), bin(2)]));
        expect(form((await store.getNode(c as number))?.result)).toBe(form(bin(4)));
        expect(form((await store.getNode(root.id))?.result)).toBe(form(bin(6)));
        expect(forms((await store.listChildren(root.id)).map((n) => n.input))).toEqual(forms([bin(1), JSON.stringify({ text: true }), bin(3)]));
        expect(forms((await store.listNodes(run.id, {})).map((n) => n.input))).toEqual(forms([input, bin(1), JSON.stringify({ text: true }), bin(3)]));
        const [leasedB] = await claim(w, run);
        expect(forms([leasedB?.input, leasedB?.context])).toEqual(forms([JSON.stringify({ text: true }), context]));
        const last = await commit(w, [step(born(ca, run.id), done(), { waits: true }), { ...step(leasedB as LeasedNode, { type: 'done', result: bin(9) }), waits: true }]);
        expect(last.ready.map((n) => n.id)).toEqual([root.id]);
        expect(forms([last.ready[0]?.input, last.ready[0]?.context])).toEqual(forms([input, context]));
        expect(forms((await store.childResults(root.id)).map((r) => r.result))).toEqual(forms([null, bin(9), bin(4)]));
        await commit(w, [step(last.ready[0] as LeasedNode, { type: 'done', result: bin(10) }, { waits: true })]);
        expect(form((await store.getRun(run.id))?.result)).toBe(form(bin(10)));
        expect(form((await store.settleRun(run.id))?.result)).toBe(form(bin(10)));
      });

      it('leases a parent created and made ready in one commit with its binary payloads', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const [p, g] = await ids(2);
        const parent = child(p as number, root.id, 0, { input: bin(1), context: bin(2), state: 'waiting', attempts: 1 });
        const grandchild = child(g as number, p as number, 0, { depth: 2, input: bin(3) });
        const result = await commit(w, [
          step(root, wait, { children: [parent], waits: true }),
          { ...step(born(parent, run.id), { type: 'wait', result: null }, { children: [grandchild], waits: true }), merged: true },
          step(born(grandchild, run.id), { type: 'done', result: bin(4) }, { waits: true }),
        ]);
        expect(result.rejected).toEqual([]);
        expect(result.ready.map((n) => n.id)).toEqual([p]);
        expect(forms([result.ready[0]?.input, result.ready[0]?.context])).toEqual(forms([bin(1), bin(2)]));
        expect(forms((await store.childResults(p as number)).map((r) => r.result))).toEqual(forms([bin(4)]));
      });
    });

    describe('task code', () => {
      it('records the code working on a run and returns what was recorded before', async () => {
        const run = await createRun();
        expect(await store.recordRunCode(run.id, { version: 1, hash: 'aaaa' })).toBeNull();
        expect(await store.recordRunCode(run.id, { version: 1, hash: 'bbbb' })).toEqual({ version: 1, hash: 'aaaa' });
        expect(await store.recordRunCode(run.id, { version: 2, hash: 'cccc' })).toEqual({ version: 1, hash: 'bbbb' });
        expect(await store.recordRunCode(run.id, { version: 2, hash: 'cccc' })).toEqual({ version: 2, hash: 'cccc' });
        await expect(store.recordRunCode('no-such-run', { version: 1, hash: 'x' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
      });

      it('keeps the worker that last recorded its code as the run’s last worker', async () => {
        const run = await createRun();
        expect(run.lastWorker).toBeNull();
        const before = Date.now();
        await store.recordRunCode(run.id, { version: 1, hash: 'aaaa', workerId: 'host:1:first' });
        await store.recordRunCode(run.id, { version: 1, hash: 'aaaa', workerId: 'host:2:second' });
        await store.recordRunCode(run.id, { version: 1, hash: 'aaaa' });
        const last = (await store.getRun(run.id))?.lastWorker;
        expect(last?.id).toBe('host:2:second');
        expect(last?.at).toBeGreaterThanOrEqual(before);
        expect(last?.at).toBeLessThanOrEqual(Date.now());
      });
    });

    describe('size estimate', () => {
      it('keeps the estimate a run was created with, and the one set later', async () => {
        expect((await createRun()).estimate).toBeNull();
        const run = await createRun({ estimate: 1_111_111 });
        expect(run.estimate).toBe(1_111_111);
        await store.setRunEstimate(run.id, 10_000_000_000);
        expect((await store.getRun(run.id))?.estimate).toBe(10_000_000_000);
        await store.setRunEstimate(run.id, null);
        expect((await store.listRuns()).find((r) => r.id === run.id)?.estimate).toBeNull();
        await expect(store.setRunEstimate('no-such-run', 5)).rejects.toMatchObject({ code: 'NOT_FOUND' });
      });
    });

    describe('cost budgets', () => {
      const charge = (runId: string, nodeId: number, name: string, kind: 'reserve' | 'settle', amount: number) =>
        store.chargeCost({ runId, nodeId, nodeKey: `node-${nodeId}`, name: `rlm:cost:${name}`, kind, amount });

      it('grants reservations up to the budget, journals each charge once, and settles what was really spent', async () => {
        const run = await createRun({ costBudget: 3 });
        expect(run).toMatchObject({ costBudget: 3, costSpent: 0 });
        expect(await charge(run.id, 1, 'a', 'reserve', 2)).toEqual({ granted: true, amount: 2, spent: 2, budget: 3 });
        expect(await charge(run.id, 2, 'b', 'reserve', 2)).toEqual({ granted: false, amount: 2, spent: 2, budget: 3 });
        // The same charge again (a step run again after a crash) gets the journaled one, not a second charge.
        expect(await charge(run.id, 1, 'a', 'reserve', 2)).toEqual({ granted: true, amount: 2, spent: 2, budget: 3 });
        expect(await charge(run.id, 1, 'a-settle', 'settle', -1.5)).toMatchObject({ granted: true, spent: 0.5 });
        expect(await charge(run.id, 2, 'b', 'reserve', 2)).toMatchObject({ granted: true, spent: 2.5 });
        // What a step really spent goes in even past the budget; only reservations are held to it.
        expect(await charge(run.id, 2, 'b-settle', 'settle', 1)).toMatchObject({ granted: true, spent: 3.5 });
        expect(await charge(run.id, 3, 'c', 'reserve', 0.1)).toMatchObject({ granted: false, spent: 3.5 });
        await store.setCostBudget(run.id, 10);
        expect(await charge(run.id, 3, 'c', 'reserve', 0.1)).toMatchObject({ granted: true, budget: 10 });
        expect((await store.getRun(run.id))?.costSpent).toBeCloseTo(3.6);
        await expect(store.setCostBudget('no-such-run', 1)).rejects.toMatchObject({ code: 'NOT_FOUND' });
      });

      it('never passes the budget when workers reserve at once, and sums a subtree’s charges', async () => {
        const run = await createRun({ costBudget: 10 });
        const { w, root } = await claimRoot(run);
        const childIds = await ids(3);
        await commit(w, [step(root, wait, { children: childIds.map((id, ord) => child(id, root.id, ord, { state: 'pending' })) })]);
        const children = await store.listChildren(root.id);
        const grants = await Promise.all(
          Array.from({ length: 24 }, (_, i) => {
            const node = children[i % 3] as { id: number; key: string };
            return store.chargeCost({ runId: run.id, nodeId: node.id, nodeKey: node.key, name: `rlm:cost:run:${i}`, kind: 'reserve', amount: 1 });
          }),
        );
        expect(grants.filter((g) => g.granted)).toHaveLength(10);
        expect((await store.getRun(run.id))?.costSpent).toBe(10);
        expect(await store.subtreeCost(root.id)).toBe(10);
        expect(await store.subtreeCost((children[0] as { id: number }).id)).toBe(grants.filter((g, i) => g.granted && i % 3 === 0).length);
        expect(await store.getRun(run.id)).toMatchObject({ costBudget: 10 });
        expect((await createRun()).costBudget).toBeNull();
      });
    });

    describe('signals', () => {
      it('keeps a signal, wakes the nodes parked for it, lifts a pause for parked nodes, and refuses another payload', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        expect(await store.getSignal(run.id, 'go')).toBeUndefined();
        await commit(w, [step(root, { type: 'park', reason: signalWaitReason('go'), pauseRun: false }, { attempts: 0 })]);
        expect((await store.getRun(run.id))?.state).toBe('paused');
        expect(await store.sendSignal(run.id, 'early', '{"n":1}')).toEqual({ sent: true, woke: 0 });
        expect(await store.getSignal(run.id, 'early')).toBe('{"n":1}');
        expect(await store.sendSignal(run.id, 'go', '{"by":"ada"}')).toEqual({ sent: true, woke: 1 });
        expect(await store.getRun(run.id)).toMatchObject({ state: 'running', counts: { parked: 0, pending: 1 } });
        expect(await store.getNode(root.id)).toMatchObject({ state: 'pending', parkReason: null, attempts: 0 });
        expect(await store.sendSignal(run.id, 'go', '{"by":"ada"}')).toEqual({ sent: false, woke: 0 });
        await expect(store.sendSignal(run.id, 'go', '{"by":"bob"}')).rejects.toMatchObject({ code: 'REFUSED' });
        expect(await store.getSignal(run.id, 'go')).toBe('{"by":"ada"}');
        await expect(store.sendSignal('no-such-run', 'go', 'null')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      });
    });

    describe('groups with limits', () => {
      const ask = (runId: string, workerId: string, want: Partial<GroupRequest>): Promise<GroupGrant> =>
        store.acquireGroup({ runId, group: 'example.com', workerId, concurrency: null, perSecond: null, burst: 1, slots: 0, running: 0, tokens: 0, leaseMs: 60_000, ...want });

      it('shares a group’s slots among workers, never more than its concurrency, and frees a dead or stopped worker’s', async () => {
        const run = await createRun();
        const [a, b] = await Promise.all([worker(run.task), worker(run.task)]);
        const limit = { concurrency: 2 };
        expect(await ask(run.id, a as string, { ...limit, slots: 2 })).toMatchObject({ slots: 2 });
        expect(await ask(run.id, b as string, { ...limit, slots: 2 })).toMatchObject({ slots: 0 });
        // A worker keeps the slots it runs steps in, and may hold fewer.
        expect(await ask(run.id, a as string, { ...limit, slots: 1, running: 1 })).toMatchObject({ slots: 1 });
        expect(await ask(run.id, b as string, { ...limit, slots: 2 })).toMatchObject({ slots: 1 });
        expect(await ask(run.id, a as string, { ...limit, slots: 2, running: 1 })).toMatchObject({ slots: 1 });
        // Another group of the run is not bound by this one.
        expect(await store.acquireGroup({ runId: run.id, group: 'other.org', workerId: a as string, ...limit, perSecond: null, burst: 1, slots: 2, running: 0, tokens: 0, leaseMs: 60_000 })).toMatchObject({ slots: 2 });

        await store.releaseWorker(b as string);
        expect(await ask(run.id, a as string, { ...limit, slots: 2, running: 1 })).toMatchObject({ slots: 2 });
        // A lease that lapsed (its worker died) no longer counts.
        expect(await ask(run.id, a as string, { ...limit, slots: 2, leaseMs: -1 })).toMatchObject({ slots: 2 });
        const c = await worker(run.task);
        expect(await ask(run.id, c, { ...limit, slots: 2 })).toMatchObject({ slots: 2 });
        expect(await ask(run.id, a as string, { ...limit, slots: 2 })).toMatchObject({ slots: 0 });
        // A worker found dead (its process gone) frees its slots with its nodes.
        await store.takeBack({ deadIds: [c] });
        expect(await ask(run.id, a as string, { ...limit, slots: 2 })).toMatchObject({ slots: 2 });
        expect(await ask(run.id, a as string, { ...limit, slots: 0 })).toMatchObject({ slots: 0 });
        const d = await worker(run.task);
        expect(await ask(run.id, d, { ...limit, slots: 2 })).toMatchObject({ slots: 2 });
      });

      it('grants tokens from one bucket per group, at most its burst, and says when the next comes due', async () => {
        const run = await createRun();
        const [a, b] = await Promise.all([worker(run.task), worker(run.task)]);
        const rate = { perSecond: 1, burst: 2 };
        expect(await ask(run.id, a as string, { ...rate, tokens: 5 })).toMatchObject({ tokens: 2 });
        const empty = await ask(run.id, b as string, { ...rate, tokens: 1 });
        expect(empty.tokens).toBe(0);
        expect(empty.nextTokenInMs).toBeGreaterThan(0);
        expect(empty.nextTokenInMs).toBeLessThanOrEqual(1_000);
        expect((await ask(run.id, a as string, { ...rate, tokens: 0 })).nextTokenInMs).toBeNull();

        // Tokens come only with idle slots: one slot held and running leaves none to spend.
        const both = { concurrency: 2, perSecond: 1_000, burst: 10, group: 'fast.net' };
        expect(await ask(run.id, a as string, { ...both, slots: 2, running: 1, tokens: 5 })).toMatchObject({ slots: 2, tokens: 1 });
        expect(await ask(run.id, b as string, { ...both, slots: 2, tokens: 5 })).toMatchObject({ slots: 0, tokens: 0 });
      });

      it('forgets a deleted run’s groups', async () => {
        const run = await createRun();
        const a = await worker(run.task);
        await ask(run.id, a, { concurrency: 1, perSecond: 1, burst: 1, slots: 1, tokens: 1 });
        await store.releaseWorker(a);
        await store.deleteRun(run.id);
        const again = await createRun({ id: run.id });
        const b = await worker(again.task);
        expect(await ask(again.id, b, { concurrency: 1, perSecond: 1, burst: 1, slots: 1, tokens: 1 })).toMatchObject({ slots: 1, tokens: 1 });
      });
    });

    describe('concurrent workers', () => {
      it('keeps counters exact when workers commit on one run at once', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const childIds = await ids(40);
        const children = childIds.map((id, ord) => child(id, root.id, ord, { state: 'pending' }));
        await commit(w, [step(root, wait, { children, waits: true })]);
        const workers = await Promise.all([1, 2, 3, 4].map(() => worker(run.task)));
        const ready: LeasedNode[] = [];
        await Promise.all(
          workers.map(async (id) => {
            for (;;) {
              const batch = await claim(id, run, 3);
              if (batch.length === 0) return;
              const result = await commit(
                id,
                batch.map((n) => step(n, done(n.id), { waits: true })),
              );
              expect(result.rejected).toEqual([]);
              ready.push(...result.ready);
            }
          }),
        );
        expect(ready.map((n) => n.id)).toEqual([root.id]);
        expect(await store.getRun(run.id)).toMatchObject({ counts: { pending: 0, running: 1, waiting: 0, done: 40 } });
        expect((await store.getNode(root.id))?.pendingChildren).toBe(0);
      });

      it('creates a keyed child once when workers ask for it at once', async () => {
        const run = await createRun();
        const { w, root } = await claimRoot(run);
        const parentIds = await ids(4);
        const parents = parentIds.map((id, ord) => keyedChild(id, root.id, ord, `p${ord}`, { state: 'pending' }));
        await commit(w, [step(root, wait, { children: parents, waits: true })]);
        const workers = await Promise.all(parents.map(() => worker(run.task)));
        const leased = await Promise.all(workers.map(async (id) => (await claim(id, run))[0] as LeasedNode));
        const sharedIds = await ids(4);
        const results = await Promise.all(
          leased.map((node, i) =>
            commit(workers[i] as string, [step(node, wait, { children: [keyedChild(sharedIds[i] as number, node.id, 0, 'one', { depth: 2, state: 'pending' })], waits: true })]),
          ),
        );
        expect(results.flatMap((r) => r.duplicates)).toHaveLength(3);
        const created = sharedIds.filter((id) => !results.some((r) => r.duplicates.includes(id)));
        expect(created).toHaveLength(1);
        const finisher = await worker(run.task);
        const [shared] = await claim(finisher, run);
        expect(shared?.id).toBe(created[0]);
        const finished = await commit(finisher, [step(shared as LeasedNode, done('once'), { waits: true })]);
        expect(finished.ready.map((n) => n.id).sort()).toEqual([...parentIds].sort());
        for (const id of parentIds) expect((await store.childResults(id)).map((r) => r.result)).toEqual([JSON.stringify('once')]);
      });
    });
  });
}
