/*
 * Codecs through the engine: a task on `codec: 'msgpack'` gets back Date, Map, Set, BigInt, Buffer and undefined
 * wherever a value is stored (inputs, contexts, results through combine, effects, emitted records, the run
 * result); values that cannot be stored fail at the step that produced them; stored payloads decode whatever
 * codec the task names later.
 */
import { seal } from '../../src/store/checksum.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defineTask, type Engine, openEngine } from '../../src/index.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { ChildFailure, Json, TaskContext } from '../../src/task.js';
import { tempDir } from '../helpers/temp.js';

const fast = { leaseMs: 2_000, heartbeatMs: 200, pollMs: 10 };

interface Input {
  n: bigint;
  at: Date;
  tags: Map<string, Set<number>>;
  blob: Buffer;
  depth: number;
}

interface Result {
  total: bigint;
  latest: Date;
  blobs: Buffer[];
  seen: Set<string>;
  extra: { missing: undefined; nested: Map<unknown, unknown> };
}

const T0 = new Date('2024-05-01T10:00:00.000Z');

/** A small combine tree whose every stored value needs msgpack. */
function richTree(name: string, keyed: boolean) {
  return defineTask<Input, Result>({
    name,
    codec: 'msgpack',
    ...(keyed ? { key: (input: Input) => `${input.depth}:${input.n}` } : {}),
    async run(input, ctx) {
      // The input came back from the store with its types.
      if (!(input.at instanceof Date) || typeof input.n !== 'bigint' || !(input.tags instanceof Map) || !Buffer.isBuffer(input.blob)) {
        throw new Error(`input lost its types: ${String(input.at)} ${typeof input.n}`);
      }
      const context = ctx.context as unknown as { since: Date } | null;
      if (context !== null && !(context.since instanceof Date)) throw new Error('context lost its Date');
      const stamp = await ctx.effect('stamp', () => ({ at: new Date(T0.getTime() + Number(input.n)), bytes: Buffer.from([0, Number(input.n)]) }));
      if (!(stamp.at instanceof Date) || !Buffer.isBuffer(stamp.bytes)) throw new Error('effect value lost its types');
      ctx.emit({ n: input.n, at: stamp.at, tags: input.tags, missing: undefined });
      if (input.depth === 0) {
        return {
          result: { total: input.n, latest: stamp.at, blobs: [input.blob], seen: new Set([`leaf-${input.n}`]), extra: { missing: undefined, nested: new Map([[input.n, T0]]) } },
        };
      }
      return {
        children: [1n, 2n, 3n].map((i) => ({
          input: { n: input.n * 10n + i, at: new Date(input.at.getTime() + Number(i)), tags: new Map([['k', new Set([Number(i)])]]), blob: Buffer.from([Number(i)]), depth: input.depth - 1 },
          context: { since: new Date(T0.getTime() + Number(i)) } as unknown as Json,
        })),
      };
    },
    combine(input, results) {
      const ok = results as Result[];
      for (const r of ok) if (typeof r.total !== 'bigint' || !(r.latest instanceof Date) || !(r.seen instanceof Set)) throw new Error('a child result lost its types');
      return {
        total: ok.reduce((sum, r) => sum + r.total, input.n),
        latest: new Date(Math.max(...ok.map((r) => r.latest.getTime()))),
        blobs: ok.flatMap((r) => r.blobs),
        seen: new Set(ok.flatMap((r) => [...r.seen])),
        extra: { missing: undefined, nested: new Map<unknown, unknown>(ok.map((r, i) => [i, r.extra.nested])) },
      };
    },
  });
}

describe('the msgpack codec through the engine', () => {
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

  // Unkeyed: combine gets its children's results from memory; keyed: from the store.
  for (const keyed of [false, true]) {
    it(`keeps Date, Map, Set, BigInt, Buffer and undefined through inputs, contexts, effects, records and combine (${keyed ? 'keyed, read back from the store' : 'joined in memory'})`, async () => {
      const task = richTree(keyed ? 'rich-keyed' : 'rich', keyed);
      const root: Input = { n: 1n, at: T0, tags: new Map([['root', new Set([0])]]), blob: Buffer.from('root'), depth: 2 };
      const run = await engine.start(task, root, { context: { since: T0 } as unknown as Json });
      const out = await run.done;
      expect(out.state).toBe('completed');
      expect(out.counts).toMatchObject({ done: 13, dead: 0 });
      const result = out.result as Result;
      // 1 + (11+12+13) + (111..113 + 121..123 + 131..133)
      expect(result.total).toBe(1n + 36n + 1098n);
      expect(result.latest).toEqual(new Date(T0.getTime() + 133));
      expect(result.blobs.every((b) => Buffer.isBuffer(b))).toBe(true);
      expect(Buffer.concat(result.blobs).toString('hex')).toBe('010203010203010203');
      expect(result.seen).toEqual(new Set(['leaf-111', 'leaf-112', 'leaf-113', 'leaf-121', 'leaf-122', 'leaf-123', 'leaf-131', 'leaf-132', 'leaf-133']));
      expect('missing' in result.extra && result.extra.missing === undefined).toBe(true);
      expect(result.extra.nested).toBeInstanceOf(Map);
      const records: unknown[] = [];
      for await (const item of engine.results(run.runId)) records.push(item.record);
      expect(records).toHaveLength(13);
      const first = records[0] as { n: bigint; at: Date; tags: Map<string, Set<number>>; missing: undefined };
      expect(first.n).toBe(1n);
      expect(first.at).toEqual(new Date(T0.getTime() + 1));
      expect(first.tags.get('root')).toEqual(new Set([0]));
      expect(Object.hasOwn(first, 'missing')).toBe(true);
      // Stored as bytes carrying the binary mark, never as text.
      const stored = await store.getNode((await engine.getRun(run.runId)).rootId);
      expect(stored?.result).toBeInstanceOf(Uint8Array);
      expect((stored?.result as Uint8Array | undefined)?.[0]).toBe(0xc1);
      expect((await engine.getRun(run.runId)).result).toBeInstanceOf(Uint8Array);
    });
  }

  it('decodes a run stored by one codec after the task switched to the other', async () => {
    const sum = (codec: 'json' | 'msgpack') =>
      defineTask<{ n: number; depth: number }, number>({
        name: 'switching',
        codec,
        run: ({ n, depth }) => (depth === 0 ? { result: n } : { children: [1, 2].map((i) => ({ input: { n: n * 10 + i, depth: depth - 1 } })) }),
        combine: (input, results) => input.n + (results as number[]).reduce((a, b) => a + b, 0),
      });
    const fromJson = await engine.create(sum('json'), { n: 1, depth: 2 });
    expect(typeof (await engine.getRun(fromJson)).input).toBe('string');
    expect((await (await engine.resume(sum('msgpack'), fromJson)).done).result).toBe(1 + 11 + 12 + 111 + 112 + 121 + 122);
    const fromMsgpack = await engine.create(sum('msgpack'), { n: 1, depth: 2 });
    expect((await engine.getRun(fromMsgpack)).input).toBeInstanceOf(Uint8Array);
    expect((await (await engine.resume(sum('json'), fromMsgpack)).done).result).toBe(1 + 11 + 12 + 111 + 112 + 121 + 122);
  });

  it('dead-letters a damaged binary payload as undecodable, not retried', async () => {
    const task = richTree('damaged', false);
    const runId = await engine.create(task, { n: 1n, at: T0, tags: new Map(), blob: Buffer.from(''), depth: 0 });
    const db = (store as unknown as { db: { prepare(sql: string): { run(...a: unknown[]): unknown } } }).db;
    // A map of two entries, cut off before the first.
    db.prepare('UPDATE rlm_nodes SET input = ? WHERE run_id = ?').run(seal(Buffer.from([0xc1, 0x01, 0x82])), runId);
    const out = await (await engine.resume(task, runId)).done;
    expect(out.state).toBe('failed');
    const [dead] = await store.listNodes(runId, { state: 'dead' });
    expect(dead?.errors[0]).toMatchObject({ code: 'INVALID_INPUT' });
    expect(dead?.errors[0]?.message).toContain('cannot be decoded');
  });

  describe('values msgpack cannot hold fail at the step that produced them, with their path', () => {
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    class Tags extends Map<string, number> {}
    const cycle: Record<string, unknown> = { a: 1 };
    cycle.self = { back: cycle };
    const cases: Array<[string, (ctx: TaskContext) => unknown, string, string]> = [
      ['a function in a result', () => ({ result: { nested: [1, { fn: () => 1 }] } }), '$.nested[1].fn', 'a function cannot be stored'],
      ['a symbol in an emitted record', (ctx) => ctx.emit({ s: Symbol('x') }), '$.s', 'a symbol cannot be stored'],
      ['a cycle in a result', () => ({ result: cycle }), '$.self.back', 'cycle'],
      ['a class instance in a result', () => ({ result: { where: new Point(1, 2) } }), '$.where', 'a Point would be stored as a plain object'],
      ['a Map subclass in a result', () => ({ result: [new Tags()] }), '$[0]', 'a Tags would be stored as a plain object'],
      ['an Error in a result', () => ({ result: { error: new TypeError('no') } }), '$.error', 'an error (TypeError)'],
      ['an unpaired surrogate in a result', () => ({ result: new Map([['k', 'a\ud800b']]) }), '$.get("k")', 'unpaired UTF-16 surrogate'],
      ['an own __proto__ key in a result', () => ({ result: JSON.parse('{"__proto__": 1}') }), '$', '__proto__'],
      ['a cycle in an effect value', (ctx) => ctx.effect('e', () => cycle), '$.self.back', 'cycle'],
      ['a function inside a Set', () => ({ result: new Set([1, () => 2]) }), '$.values()[1]', 'a function cannot be stored'],
    ];
    for (const [what, produce, path, reason] of cases) {
      it(`${what}: NOT_SERIALIZABLE at ${path}, never retried`, async () => {
        const task = defineTask({
          name: `bad-${what}`,
          codec: 'msgpack',
          limits: { maxAttempts: 3, backoffMs: 1 },
          async run(_input, ctx) {
            const out = await produce(ctx);
            return out && typeof out === 'object' && 'result' in out ? (out as { result: unknown }) : {};
          },
        });
        const out = await (await engine.start(task, {})).done;
        expect(out.counts.dead).toBe(1);
        const [dead] = await store.listNodes(out.runId, { state: 'dead' });
        expect(dead?.attempts).toBe(1);
        expect(dead?.errors).toHaveLength(1);
        expect(dead?.errors[0]?.code).toBe('NOT_SERIALIZABLE');
        expect(dead?.errors[0]?.message).toContain('cannot be stored as msgpack');
        expect(dead?.errors[0]?.message).toContain(`at ${path}.`);
        expect(dead?.errors[0]?.message).toContain(reason);
        expect(await store.readEmits(out.runId, 0, 10)).toEqual([]);
      });
    }

    it('a child input it cannot hold dead-letters that child at spawn; its siblings and parent go on', async () => {
      const task = defineTask<{ leaf?: unknown }, number>({
        name: 'bad-child',
        codec: 'msgpack',
        run: (input) => (input.leaf !== undefined ? { result: 1 } : { children: [{ input: { leaf: new Date() } }, { input: { leaf: new Point(0, 0) } }] }),
        combine: (_input, results) => results.length,
        deadChildren: 'pass',
      });
      const out = await (await engine.start(task, {})).done;
      expect(out).toMatchObject({ state: 'completed', result: 2, counts: { done: 2, dead: 1 } });
      const [dead] = await store.listNodes(out.runId, { state: 'dead' });
      expect(dead?.errors[0]?.message).toContain('The input of child 1 cannot be stored as msgpack: a Point would be stored as a plain object');
    });

    it('rejects a root input it cannot hold before the run is created', async () => {
      const task = defineTask({ name: 'bad-root', codec: 'msgpack', run: () => ({}) });
      await expect(engine.start(task, { when: new Point(1, 1) })).rejects.toMatchObject({ code: 'NOT_SERIALIZABLE', path: '$.when' });
      expect(await store.listRuns()).toEqual([]);
    });
  });

  it('refuses an unknown codec with what to write instead', async () => {
    const task = defineTask({ name: 'cbor', codec: 'cbor' as never, run: () => ({}) });
    await expect(engine.start(task, {})).rejects.toThrow("`codec` must be 'json' or 'msgpack', got `cbor`");
  });

  it('the JSON codec still refuses what JSON cannot hold, and names msgpack as a way out', async () => {
    const task = defineTask({ name: 'json-date', run: () => ({ result: { at: new Date(0) } }) });
    const out = await (await engine.start(task, {})).done;
    const [dead] = await store.listNodes(out.runId, { state: 'dead' });
    expect(dead?.errors[0]?.code).toBe('NOT_SERIALIZABLE');
    expect(dead?.errors[0]?.message).toContain("a Date is not plain JSON (convert it, e.g. a Date with toISOString(), or use codec: 'msgpack') at $.at.");
  });

  it('passes a dead child to combine as a ChildFailure under msgpack too', async () => {
    const task = defineTask<{ leaf?: boolean }, unknown>({
      name: 'failure-msgpack',
      codec: 'msgpack',
      deadChildren: 'pass',
      run: (input) => {
        if (input.leaf) throw new Error('leaf failed');
        return { children: [{ input: { leaf: true } }] };
      },
      limits: { maxAttempts: 1 },
      combine: (_input, results) => (results[0] as ChildFailure).failed,
    });
    const out = await (await engine.start(task, {})).done;
    expect(out.result).toBe(true);
  });
});
