/**
 * The bad-input catalogue of TORTURE.md §8.5: task modules, run inputs, handler results, children and effects,
 * CLI flags and stores, plus fast-check fuzzing of the codec and the input gate. Every case must end in a clear
 * error with a stable RlmError code (or, for a handler, a node in the dead-letter queue with its reason) or in a
 * correct run — never a crash, a hang, a stack trace on the command line, or a partial write. Cases are counted
 * per category for the report.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { decode, encode } from '../../src/engine/codec.js';
import { RlmError } from '../../src/engine/errors.js';
import { loadTask } from '../../src/cli/load-task.js';
import { type Engine, openEngine, type RunOutcome } from '../../src/engine/engine.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { NodeRecord } from '../../src/store/store.js';
import type { Json, Task, TaskContext } from '../../src/task.js';
import type { EpisodeEnv } from './episode.js';
import { ROOT } from './harness.js';

const run = promisify(execFile);
type Category = 'modules' | 'inputs' | 'results' | 'children' | 'cli' | 'fuzz';

interface Ctx {
  dir: string;
  n: number;
}

/** What a case returns when this machine cannot try it: reported with its reason, not counted as tried. */
const SKIPPED = 'skipped: ';

/** A stable code: the error is an RlmError whose code is a non-empty string. */
function coded(error: unknown, code?: string | RegExp): string | null {
  if (!(error instanceof RlmError)) return `not an RlmError: ${(error as Error)?.name} ${(error as Error)?.message?.slice(0, 120)}`;
  if (typeof error.code !== 'string' || (error.code as string) === '') return 'an RlmError without a code';
  if (code && !(typeof code === 'string' ? error.code === code : code.test(error.code))) return `code ${error.code}, expected ${code}`;
  return null;
}

async function expectThrow(fn: () => unknown, code?: string | RegExp): Promise<string | null> {
  try {
    await fn();
  } catch (error) {
    return coded(error, code);
  }
  return 'no error';
}

const FAST = { leaseMs: 2_000, heartbeatMs: 200, pollMs: 5, graceMs: 500 };

interface Ran {
  outcome: RunOutcome;
  nodes: NodeRecord[];
  emits: unknown[];
  store: SqliteStore;
  engine: Engine;
}

/** Runs a task in this process on a fresh SQLite store; closes everything; returns the end state. */
async function runTask(ctx: Ctx, task: Task, input: unknown, options: { timeoutMs?: number; approve?: boolean } = {}): Promise<Ran> {
  const store = new SqliteStore({ path: join(ctx.dir, `case-${++ctx.n}.db`) });
  const engine = await openEngine({ store, ...FAST });
  try {
    let handle = await engine.start(task, input as never);
    let outcome = await withTimeout(handle.done, options.timeoutMs ?? 20_000, () => handle.abort());
    if (options.approve && outcome.state === 'paused') {
      await store.decideParked(handle.runId, 'all', 'approve');
      handle = await engine.resume(task, handle.runId);
      outcome = await withTimeout(handle.done, options.timeoutMs ?? 20_000, () => handle.abort());
    }
    const nodes = await store.listNodes(handle.runId, { limit: 100_000 });
    const emits = (await store.readEmits(handle.runId, 0, 100_000)).map((e) => JSON.parse(e.record as string) as unknown);
    return { outcome, nodes, emits, store, engine };
  } finally {
    await engine.close();
    await store.close();
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          onTimeout();
          reject(new Error(`hung for ${ms} ms`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The node of a run with this key, and the code of its last error. */
function nodeOf(ran: Ran, key: string): { state: string; code: string | null; attempts: number; message: string } {
  const node = ran.nodes.find((n) => n.key === key);
  const last = node?.errors[node.errors.length - 1];
  return { state: node?.state ?? 'missing', code: last?.code ?? null, attempts: node?.attempts ?? -1, message: last?.message ?? '' };
}

function want(cond: boolean, text: string): string | null {
  return cond ? null : text;
}

/** A tree task whose node `bad` does something wrong; the others count leaves. */
function treeWith(name: string, bad: (input: { d: number; i: number }, ctx: TaskContext) => unknown, extra: Partial<Task<{ d: number; i: number }, unknown>> = {}): Task {
  return {
    name,
    limits: { maxAttempts: 2, backoffMs: 1, maxBackoffMs: 2, ...(extra.limits ?? {}) },
    ...extra,
    run(input: { d: number; i: number }, ctx: TaskContext) {
      if (input.d === 1 && input.i === 1) return bad(input, ctx) as never;
      if (input.d >= 2) return { result: 1 };
      return { children: [0, 1, 2].map((i) => ({ input: { d: input.d + 1, i } })) };
    },
    combine: extra.combine ?? ((_input: unknown, results: unknown[]) => results.reduce((a: number, r) => a + (typeof r === 'number' ? r : 100), 1)),
    deadChildren: 'pass',
  } as Task;
}

/** The bad child (root/1) ends dead with `code`, and the run completes around it. */
async function badChild(ctx: Ctx, name: string, bad: (input: { d: number; i: number }, ctx: TaskContext) => unknown, code: string | RegExp, extra = {}): Promise<string | null> {
  const ran = await runTask(ctx, treeWith(name, bad, extra), { d: 0, i: 0 });
  const child = nodeOf(ran, 'root/1');
  if (child.state !== 'dead') return `root/1 is ${child.state}, expected dead with ${code}`;
  if (!(typeof code === 'string' ? child.code === code : code.test(child.code ?? ''))) return `root/1 died with ${child.code} (${child.message.slice(0, 100)}), expected ${code}`;
  if (ran.outcome.state !== 'completed') return `the run is ${ran.outcome.state}, expected completed around the dead node`;
  return want(ran.outcome.result === 1 + 4 + 100 + 4, `root result ${ran.outcome.result}`);
}

/** `rlm …` as a real process: a non-zero exit with one `rlm:` line and no stack trace, or the expected success. */
async function cli(ctx: Ctx, args: string[], env: Record<string, string> = {}, user?: string): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const command = user ? 'runuser' : process.execPath;
  const argv = user ? ['-u', user, '--', process.execPath, join(ROOT, 'bin/rlm.mjs'), ...args] : [join(ROOT, 'bin/rlm.mjs'), ...args];
  try {
    const { stdout, stderr } = await run(command, argv, {
      cwd: ctx.dir,
      env: { ...process.env, RLM_LOG_LEVEL: 'error', RLM_FAILPOINTS: '', ...env },
      timeout: 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr, ms: performance.now() - started };
  } catch (error) {
    const e = error as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(error), ms: performance.now() - started };
  }
}

/** A store that cannot be opened or created: one clear line and its exit code, within 10 s (never a hang). */
function unusableStore(result: { code: number | null; stderr: string; ms: number }, exit: number, words: RegExp): string | null {
  if (result.ms > 10_000) return `took ${Math.round(result.ms)} ms: ${result.stderr.trim().slice(0, 200)}`;
  return clearCliError(result, exit) ?? want(words.test(result.stderr), `the message does not say what to do: ${result.stderr.trim().slice(0, 200)}`);
}

function clearCliError(result: { code: number | null; stderr: string }, exit = 2): string | null {
  if (result.code !== exit) return `exit ${result.code}, expected ${exit}: ${result.stderr.trim().slice(0, 200)}`;
  if (result.stderr.includes('    at ') || result.stderr.includes('unexpected error')) return `a stack trace: ${result.stderr.trim().slice(0, 200)}`;
  // One line: rlm's own (`rlm: …`) or the argument parser's (`error: option … is invalid`).
  return want(/^(rlm|error): /m.test(result.stderr) && result.stderr.trim().split('\n').length <= 2, `not one clear line: ${result.stderr.trim().slice(0, 200)}`);
}

function moduleFile(ctx: Ctx, name: string, text: string): string {
  const path = join(ctx.dir, name);
  writeFileSync(path, text);
  return path;
}

/** Holds an exclusive lock on the SQLite file argv[1] until killed; prints a line once it holds it. */
const LOCK_HOLDER = `const D = require(${JSON.stringify(join(ROOT, 'node_modules/better-sqlite3'))}); const db = new D(process.argv[1]); db.pragma('locking_mode = EXCLUSIVE'); db.exec('CREATE TABLE IF NOT EXISTS held (x); BEGIN EXCLUSIVE'); process.stdout.write('held\\n'); setInterval(() => {}, 1000);`;

const TREE_MJS = `export default { name: 'ok', run(input) { return input.d > 0 ? { children: [{ input: { d: input.d - 1 } }] } : { result: 1 }; }, combine: (_i, r) => r[0] + 1 };\n`;

interface Case {
  category: Category;
  name: string;
  run(ctx: Ctx): Promise<string | null>;
}

function cases(): Case[] {
  const list: Case[] = [];
  const add = (category: Category, name: string, fn: (ctx: Ctx) => Promise<string | null>) => list.push({ category, name, run: fn });

  // ---- task modules: loaded the way `rlm run` loads them
  const load = (code: string | RegExp, text: string, file = 'm.mjs') => async (ctx: Ctx) => expectThrow(() => loadTask(moduleFile(ctx, `${ctx.n++}-${file}`, text), 2_000), code);
  add('modules', 'missing file', (ctx) => expectThrow(() => loadTask(join(ctx.dir, 'nope.mjs')), 'TASK_MODULE'));
  add('modules', 'a directory', (ctx) => expectThrow(() => loadTask(ctx.dir), 'TASK_MODULE'));
  add('modules', 'syntax error', load('TASK_MODULE', 'export default { name: "x", run( };'));
  add('modules', 'no default export', load('TASK_MODULE', 'export const task = { name: "x", run() {} };'));
  for (const [what, value] of [
    ['a number', '42'],
    ['a string', '"task"'],
    ['null', 'null'],
    ['an array', '[]'],
    ['a function', '() => 1'],
  ]) {
    add('modules', `default export is ${what}`, load('TASK_MODULE', `export default ${value};`));
  }
  for (const [what, def] of [
    ['run missing', '{ name: "x" }'],
    ['run not a function', '{ name: "x", run: 5 }'],
    ['name missing', '{ run() {} }'],
    ['name empty', '{ name: "  ", run() {} }'],
    ['name a number', '{ name: 5, run() {} }'],
    ['version 1.5', '{ name: "x", version: 1.5, run() {} }'],
    ['version "2"', '{ name: "x", version: "2", run() {} }'],
    ['version 0', '{ name: "x", version: 0, run() {} }'],
    ['version -1', '{ name: "x", version: -1, run() {} }'],
    ['limits negative', '{ name: "x", limits: { maxAttempts: -1 }, run() {} }'],
    ['limits NaN', '{ name: "x", limits: { maxChildren: NaN }, run() {} }'],
    ['limits unknown', '{ name: "x", limits: { maxWidth: 3 }, run() {} }'],
    ['limits not an object', '{ name: "x", limits: "big", run() {} }'],
    ['key not a function', '{ name: "x", key: "id", run() {} }'],
    ['priority not a function', '{ name: "x", priority: 1, run() {} }'],
    ['combine not a function', '{ name: "x", combine: {}, run() {} }'],
    ['order unknown', '{ name: "x", order: "random", run() {} }'],
    ['migrate not an object', '{ name: "x", migrate: 1, run() {} }'],
    ['migrate keyed by a non-number', '{ name: "x", migrate: { first: (x) => x }, run() {} }'],
    ['input not a Standard Schema', '{ name: "x", input: { parse() {} }, run() {} }'],
  ]) {
    add('modules', `task with ${what}`, load('TASK_MODULE', `export default ${def};`));
  }
  add('modules', 'process.exit() while importing', load('TASK_MODULE', 'process.exit(3);\nexport default { name: "x", run() {} };'));
  add('modules', 'top-level await that never resolves', load('TASK_MODULE', 'await new Promise(() => {});\nexport default { name: "x", run() {} };'));
  add('modules', 'imports a missing package', load('TASK_MODULE', 'import x from "no-such-package-rlm";\nexport default { name: "x", run() { return x; } };'));
  add('modules', 'throws while importing', load('TASK_MODULE', 'throw new Error("boom");\nexport default { name: "x", run() {} };'));
  add('modules', '.ts that TypeScript cannot parse', load('TASK_MODULE', 'const x: = 1;\nexport default { name: "x", run() {} };', 'm.ts'));
  add('modules', 'maxChildren 1e12 is accepted and runs', async (ctx) => {
    const ran = await runTask(ctx, { name: 'big-limit', limits: { maxChildren: 1e12 }, run: () => ({ result: 7 }) }, {});
    return want(ran.outcome.state === 'completed' && ran.outcome.result === 7, `state ${ran.outcome.state}`);
  });
  // Versions and migrations across runs of one store.
  const versioned = (version: number, migrate?: Record<number, (old: unknown) => unknown>): Task =>
    ({
    name: 'versioned',
    version,
    migrate,
    input: {
      '~standard': {
        version: 1,
        vendor: 'torture',
        validate: (value: unknown) =>
          typeof (value as { n?: unknown })?.n === 'number' ? { value: value as { n: number } } : { issues: [{ message: 'n must be a number' }] },
      },
    },
    run: (input: { n: number }) => ({ result: input.n }),
  }) as Task;
  const acrossVersions = async (ctx: Ctx, later: Task, check: (ran: Ran | Error) => string | null): Promise<string | null> => {
    // A run of version 1 parked by its node budget, then resumed by `later`.
    const store = new SqliteStore({ path: join(ctx.dir, `versions-${++ctx.n}.db`) });
    const engine = await openEngine({ store, ...FAST });
    try {
      const runId = await engine.create(versioned(1), { n: 5 } as never);
      try {
        const handle = await engine.resume(later, runId);
        const outcome = await withTimeout(handle.done, 10_000, () => handle.abort());
        const nodes = await store.listNodes(runId, { limit: 100 });
        return check({ outcome, nodes, emits: [], store, engine });
      } catch (error) {
        return check(error as Error);
      }
    } finally {
      await engine.close();
      await store.close();
    }
  };
  add('modules', 'a newer stored version than the module', async (ctx) => {
    const store = new SqliteStore({ path: join(ctx.dir, `newer-${++ctx.n}.db`) });
    const engine = await openEngine({ store, ...FAST });
    try {
      const runId = await engine.create(versioned(3), { n: 1 } as never);
      return await expectThrow(() => engine.resume(versioned(2), runId), 'CONFIG');
    } finally {
      await engine.close();
      await store.close();
    }
  });
  add('modules', 'migrate missing for a stored older version', (ctx) =>
    acrossVersions(ctx, versioned(2), (ran) =>
      ran instanceof Error ? coded(ran) : want(ran.nodes[0]?.state === 'dead' && ran.nodes[0]?.errors.at(-1)?.code === 'MIGRATION' && (ran.nodes[0]?.attempts ?? 9) <= 1, `root ${ran.nodes[0]?.state} ${ran.nodes[0]?.errors.at(-1)?.code} ${ran.nodes[0]?.attempts}`),
    ),
  );
  add('modules', 'migrate throws', (ctx) =>
    acrossVersions(
      ctx,
      versioned(2, {
        1: () => {
          throw new Error('cannot migrate');
        },
      }),
      (ran) => (ran instanceof Error ? coded(ran) : want(ran.nodes[0]?.errors.at(-1)?.code === 'MIGRATION', `root ${JSON.stringify(ran.nodes[0]?.errors.at(-1))}`)),
    ),
  );
  add('modules', 'migrate returns an invalid input', (ctx) =>
    acrossVersions(ctx, versioned(2, { 1: () => ({ n: 'five' }) }), (ran) =>
      ran instanceof Error ? coded(ran) : want(ran.nodes[0]?.errors.at(-1)?.code === 'INVALID_INPUT' && ran.nodes[0]?.attempts === 0, `root ${JSON.stringify(ran.nodes[0]?.errors.at(-1))}`),
    ),
  );
  add('modules', 'migrate upgrades a stored input', (ctx) =>
    acrossVersions(ctx, versioned(2, { 1: (old) => ({ n: (old as { n: number }).n * 2 }) }), (ran) =>
      ran instanceof Error ? coded(ran) : want(ran.outcome.result === 10, `result ${ran.outcome.result}`),
    ),
  );
  // key() and priority() that misbehave: on the root at create, on children at spawn.
  const keyed = (key: (input: { d: number; i: number }) => unknown): Partial<Task<{ d: number; i: number }, unknown>> => ({
    key: ((input: { d: number; i: number }) => (input.d === 1 && input.i === 1 ? key(input) : `${input.d}.${input.i}`)) as (input: { d: number; i: number }) => string,
  });
  for (const [what, key] of [
    ['throws', () => { throw new Error('no key'); }],
    ['returns undefined', () => undefined],
    ['returns an object', () => ({ k: 1 })],
    ["returns ''", () => ''],
    ['returns 1 MB', () => 'k'.repeat(1 << 20)],
    ['returns a key with NUL', () => 'a\u0000b'],
  ] as const) {
    add('children', `key() ${what} for a child`, async (ctx) => {
      const task = treeWith(`key-${ctx.n}`, () => ({ result: 1 }), keyed(key as (input: { d: number; i: number }) => unknown));
      const ran = await runTask(ctx, task, { d: 0, i: 0 });
      const bad = ran.nodes.find((n) => n.state === 'dead');
      if (!bad) return what === 'returns a key with NUL' ? want(ran.outcome.state === 'completed', `state ${ran.outcome.state}`) : 'no node was dead-lettered';
      return want(bad.errors.at(-1)?.code === 'INVALID_INPUT' && bad.attempts === 0, `dead with ${bad.errors.at(-1)?.code}, ${bad.attempts} attempts`);
    });
  }
  add('inputs', 'key() throws on the root input', async (ctx) => {
    const store = new SqliteStore({ path: join(ctx.dir, `rootkey-${++ctx.n}.db`) });
    const engine = await openEngine({ store, ...FAST });
    try {
      const task: Task = {
        name: 'rootkey',
        key: () => {
          throw new Error('no');
        },
        run: () => ({ result: 1 }),
      };
      const problem = await expectThrow(() => engine.create(task, {}), 'INVALID_INPUT');
      const runs = await store.listRuns();
      return problem ?? want(runs.length === 0, 'a run was written although its input was refused');
    } finally {
      await engine.close();
      await store.close();
    }
  });
  for (const [what, value] of [
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a string', 'high'],
  ] as const) {
    add('children', `priority() returns ${what}`, async (ctx) => {
      const task = treeWith(`prio-${ctx.n}`, () => ({ result: 1 }), {
        priority: ((input: { d: number; i: number }) => (input.d === 2 && input.i === 0 ? value : 0)) as never,
      });
      const ran = await runTask(ctx, task, { d: 0, i: 0 });
      const bad = ran.nodes.filter((n) => n.state === 'dead');
      return want(bad.length > 0 && bad.every((n) => n.errors.at(-1)?.code === 'INVALID_INPUT' && n.attempts === 0), `dead: ${bad.map((n) => n.errors.at(-1)?.code)}`);
    });
  }

  // ---- run inputs
  const schema = {
    '~standard': {
      version: 1 as const,
      vendor: 'torture',
      validate: (value: unknown) =>
        typeof (value as { n?: unknown })?.n === 'number' ? { value: value as { n: number } } : { issues: [{ message: 'n must be a number', path: ['n'] }] },
    },
  };
  add('inputs', 'a root input that fails the schema', async (ctx) => {
    const ran = await runTask(ctx, { name: 'schema', input: schema, run: (i: { n: number }) => ({ result: i.n }) } as Task, { n: 'x' });
    const root = ran.nodes[0];
    return want(root?.state === 'dead' && root.errors.at(-1)?.code === 'INVALID_INPUT' && root.attempts === 0 && ran.outcome.state === 'failed', `root ${root?.state} ${JSON.stringify(root?.errors.at(-1))}`);
  });
  for (const [what, input] of [
    ['undefined', undefined],
    ['NaN', Number.NaN],
    ['a Date', new Date(0)],
    ['a Map', new Map([[1, 2]])],
    ['a Set', new Set([1])],
    ['a Buffer', Buffer.from('x')],
    ['a BigInt', 10n],
    ['a function', () => 1],
    ['a symbol', Symbol('s')],
    ['a cycle', (() => { const a: Record<string, unknown> = {}; a.self = a; return a; })()],
    ['nested 100,000 deep', (() => { let v: unknown = 1; for (let i = 0; i < 100_000; i++) v = [v]; return v; })()],
  ] as const) {
    add('inputs', `a root input that is ${what}`, async (ctx) => {
      const store = new SqliteStore({ path: join(ctx.dir, `rootin-${++ctx.n}.db`) });
      const engine = await openEngine({ store, ...FAST });
      try {
        if (input === undefined) {
          // undefined is stored as null: a correct run of a task that accepts it.
          const out = await (await engine.start({ name: 'u', run: (i: unknown) => ({ result: i === null }) }, undefined)).done;
          return want(out.state === 'completed' && out.result === true, `state ${out.state} result ${out.result}`);
        }
        const problem = await expectThrow(() => engine.create({ name: 'in', run: () => ({ result: 1 }) }, input as never), 'NOT_SERIALIZABLE');
        return problem ?? want((await store.listRuns()).length === 0, 'a run was written although its input was refused');
      } finally {
        await engine.close();
        await store.close();
      }
    });
  }
  add('inputs', '__proto__ and constructor keys pollute nothing', async (ctx) => {
    const input = JSON.parse('{"__proto__": {"polluted": 1}, "constructor": {"prototype": {"polluted": 2}}, "n": 1}') as Json;
    const ran = await runTask(ctx, { name: 'proto', run: (i: Record<string, unknown>) => ({ result: [({} as Record<string, unknown>).polluted ?? null, Object.keys(i).sort()] }) } as Task, input);
    return want(
      JSON.stringify(ran.outcome.result) === JSON.stringify([null, ['__proto__', 'constructor', 'n']]) && ({} as Record<string, unknown>).polluted === undefined,
      `result ${JSON.stringify(ran.outcome.result)}`,
    );
  });
  for (const [what, value] of [
    ['a 30 MB string', 'x'.repeat(30 << 20)],
    ['lone surrogates', 'a\uD800b\uDFFFc'],
    ['NUL characters', 'a\u0000b'],
    ['numbers past 2^53', [2 ** 53 + 2, -(2 ** 60), 1.7976931348623157e308, 5e-324]],
    ['deep but storable nesting (1,000)', (() => { let v: unknown = 1; for (let i = 0; i < 1000; i++) v = { v }; return v; })()],
  ] as const) {
    add('inputs', `an input with ${what} round-trips`, async (ctx) => {
      const ran = await runTask(ctx, { name: 'rt', run: (i: { v: unknown }) => ({ result: i.v }) } as Task, { v: value });
      return want(ran.outcome.state === 'completed' && JSON.stringify(ran.outcome.result) === JSON.stringify(value), `state ${ran.outcome.state}`);
    });
  }
  add('inputs', 'a child sees the same input on its first attempt and on its retry (-0, undefined fields)', async (ctx) => {
    const seen: string[] = [];
    const task: Task = {
      name: 'same-input',
      limits: { maxAttempts: 3, backoffMs: 1, maxBackoffMs: 2 },
      run(input: { child?: boolean; x?: number; u?: undefined }, c: TaskContext) {
        if (!input.child) return { children: [{ input: { child: true, x: -0, u: undefined } }] };
        seen.push(`x is -0: ${Object.is(input.x, -0)}, has u: ${'u' in input}`);
        if (c.attempt === 1) throw new Error('first attempt fails');
        return { result: 1 };
      },
    };
    await runTask(ctx, task, {});
    return want(seen.length === 2 && seen[0] === seen[1], `attempt 1 saw {${seen[0]}}, the retry saw {${seen[1]}}`);
  });
  add('inputs', 'a combine sees the same child results however the group committed (-0, undefined fields)', async (ctx) => {
    const views: string[] = [];
    for (const commitEverySteps of [1000, 1]) {
      const store = new SqliteStore({ path: join(ctx.dir, `join-${++ctx.n}.db`) });
      const engine = await openEngine({ store, ...FAST, commitEverySteps, windowSize: commitEverySteps === 1 ? 1 : 4096 });
      try {
        const task: Task = {
          name: 'same-results',
          run: (input: { leaf?: boolean }) => (input.leaf ? { result: { z: -0, u: undefined } } : { children: [{ input: { leaf: true } }] }),
          combine: (_i, results) => results.map((r) => `${Object.is((r as { z: number }).z, -0)}/${'u' in (r as object)}`).join(','),
        };
        views.push(String((await (await engine.start(task, {})).done).result));
      } finally {
        await engine.close();
        await store.close();
      }
    }
    return want(views[0] === views[1], `combine saw ${views[0]} in one schedule and ${views[1]} in another`);
  });

  // ---- handler results
  for (const [what, value] of [
    ['a BigInt', { big: 1n }],
    ['a cycle', (() => { const a: Record<string, unknown> = { x: 1 }; a.self = a; return a; })()],
    ['a function', { f: () => 1 }],
    ['a symbol', { s: Symbol('s') }],
    ['a Date', { at: new Date(0) }],
    ['NaN', { n: Number.NaN }],
    ['a Map', new Map()],
    ['undefined in an array', [1, undefined]],
  ] as const) {
    add('results', `a result with ${what}`, (ctx) => badChild(ctx, `res-${ctx.n}`, () => ({ result: value }), 'NOT_SERIALIZABLE'));
  }
  add('results', 'a result that is not an object', (ctx) => badChild(ctx, `res-${ctx.n}`, () => 42, 'NON_RETRYABLE'));
  add('results', 'an emitted record with a BigInt', (ctx) =>
    badChild(
      ctx,
      `emit-${ctx.n}`,
      (_i, c) => {
        c.emit({ big: 2n });
        return { result: 1 };
      },
      'NOT_SERIALIZABLE',
    ),
  );
  add('results', '10,000 records from one step', async (ctx) => {
    const ran = await runTask(ctx, { name: 'many-emits', run: (_i: unknown, c: TaskContext) => { for (let i = 0; i < 10_000; i++) c.emit({ i }); return { result: 1 }; } } as Task, {});
    return want(ran.emits.length === 10_000 && new Set(ran.emits.map((e) => (e as { i: number }).i)).size === 10_000, `${ran.emits.length} records`);
  });
  add('results', 'a 40 MB result', async (ctx) => {
    const ran = await runTask(ctx, { name: 'big-result', run: () => ({ result: 'r'.repeat(40 << 20) }) } as Task, {});
    return want(ran.outcome.state === 'completed' && (ran.outcome.result as string).length === 40 << 20, `state ${ran.outcome.state}`);
  });
  for (const [what, thrown, code] of [
    ['throw null', null, null],
    ['throw a string', 'plain string', null],
    ['throw an object with a throwing getter', Object.defineProperty({}, 'message', { get() { throw new Error('getter'); } }), null],
    ['throw a NonRetryable-coded error', Object.assign(new Error('stop'), { code: 'NON_RETRYABLE' }), 'NON_RETRYABLE'],
  ] as const) {
    add('results', `a handler that does ${what}`, async (ctx) => {
      const ran = await runTask(ctx, treeWith(`throw-${ctx.n}`, () => { throw thrown; }), { d: 0, i: 0 });
      const child = nodeOf(ran, 'root/1');
      return want(child.state === 'dead' && child.code === code && ran.outcome.state === 'completed', `root/1 ${child.state} ${child.code} ${child.message}`);
    });
  }
  add('results', 'combine throws', async (ctx) => {
    const ran = await runTask(ctx, { name: 'combine-throws', limits: { maxAttempts: 2, backoffMs: 1, maxBackoffMs: 2 }, run: (i: { leaf?: boolean }) => (i.leaf ? { result: 1 } : { children: [{ input: { leaf: true } }] }), combine: () => { throw new Error('combine failed'); } } as Task, {});
    const root = ran.nodes.find((n) => n.parentId === null);
    return want(root?.state === 'dead' && root.attempts === 2 && ran.outcome.state === 'failed', `root ${root?.state} attempts ${root?.attempts}`);
  });
  add('results', 'combine returns a BigInt', async (ctx) => {
    const ran = await runTask(ctx, { name: 'combine-big', run: (i: { leaf?: boolean }) => (i.leaf ? { result: 1 } : { children: [{ input: { leaf: true } }] }), combine: () => 5n } as Task, {});
    const root = ran.nodes.find((n) => n.parentId === null);
    return want(root?.state === 'dead' && root.errors.at(-1)?.code === 'NOT_SERIALIZABLE', `root ${root?.state} ${root?.errors.at(-1)?.code}`);
  });
  add('results', 'two effects with one name in a step', (ctx) =>
    badChild(
      ctx,
      `dup-effect-${ctx.n}`,
      async (_i, c) => {
        await c.effect('e', () => 1);
        await c.effect('e', () => 2);
        return { result: 1 };
      },
      'NON_RETRYABLE',
    ),
  );
  add('results', 'an effect that throws', (ctx) => badChild(ctx, `effect-throws-${ctx.n}`, async (_i, c) => c.effect('e', () => { throw new Error('remote down'); }), /^$|null/));
  add('results', 'an effect that returns a BigInt', (ctx) => badChild(ctx, `effect-big-${ctx.n}`, async (_i, c) => ({ result: await c.effect('e', () => 3n) }), 'NOT_SERIALIZABLE'));
  add('results', 'ctx used after the step ended writes nothing', async (ctx) => {
    let settle: (error: unknown) => void = () => undefined;
    const late = new Promise<unknown>((resolve) => (settle = resolve));
    const task: Task = {
      name: 'late-ctx',
      run(_i: unknown, c: TaskContext) {
        setTimeout(() => {
          try {
            c.emit({ late: true });
            settle(null);
          } catch (error) {
            settle(error);
          }
        }, 1);
        return { result: 1 };
      },
    };
    const ran = await runTask(ctx, task, {});
    return coded(await late) ?? want(ran.emits.length === 0, `${ran.emits.length} late records were written`);
  });
  add('results', 'a handler past its deadline that ignores ctx.signal', async (ctx) => {
    const ran = await runTask(
      ctx,
      treeWith(`deadline-${ctx.n}`, async () => {
        await new Promise((resolve) => setTimeout(resolve, 150));
        return { result: 999 };
      }, { limits: { timeoutMs: 30, maxAttempts: 2, backoffMs: 1, maxBackoffMs: 2 } }),
      { d: 0, i: 0 },
    );
    const child = nodeOf(ran, 'root/1');
    return want(child.state === 'dead' && child.code === 'TIMEOUT' && child.attempts === 2, `root/1 ${child.state} ${child.code} ${child.attempts}`);
  });

  // ---- children
  add('children', 'a child without { input }', async (ctx) => {
    const ran = await runTask(ctx, treeWith(`no-input-${ctx.n}`, () => ({ children: [{ nope: 1 }] })), { d: 0, i: 0 });
    const child = nodeOf(ran, 'root/1/0');
    return want(child.state === 'dead' && child.code === 'INVALID_INPUT' && child.attempts === 0 && ran.outcome.state === 'completed', `root/1/0 ${child.state} ${child.code}`);
  });
  add('children', 'children that are not iterable', (ctx) => badChild(ctx, `not-iterable-${ctx.n}`, () => ({ children: 5 }), 'NON_RETRYABLE'));
  add('children', 'a child with an invalid input is dead at spawn, its parent goes on', async (ctx) => {
    const task: Task = {
      name: 'invalid-child',
      input: schema,
      deadChildren: 'pass',
      run: (i: { n: number }) => (i.n > 0 ? { children: [{ input: { n: 0 } }, { input: { n: 'bad' } }] } : { result: 1 }),
      combine: (_i, r) => r.map((x) => (typeof x === 'number' ? x : 'failed')).join(','),
    } as Task;
    const ran = await runTask(ctx, task, { n: 1 });
    const dead = ran.nodes.find((n) => n.state === 'dead');
    return want(ran.outcome.result === '1,failed' && dead?.attempts === 0 && dead.errors.at(-1)?.code === 'INVALID_INPUT', `result ${ran.outcome.result}`);
  });
  const graph = (name: string, edges: Record<string, string[]>): Task => ({
    name,
    key: (i: { id: string }) => i.id,
    deadChildren: 'pass',
    run: (i: { id: string }) => ((edges[i.id] ?? []).length > 0 ? { children: (edges[i.id] ?? []).map((id) => ({ input: { id } })) } : { result: 1 }),
    combine: (_i, r) => r.reduce((a: number, x) => a + (typeof x === 'number' ? x : 100), 1),
  }) as Task;
  for (const [what, edges, result] of [
    ['duplicate keys in one step', { a: ['b', 'b', 'c'], b: [], c: ['b'] }, 1 + 1 + 2],
    ['a self-cycle', { a: ['b'], b: ['b'] }, 1 + 100],
    ['a child keyed as an ancestor', { a: ['b'], b: ['c'], c: ['a'] }, 1 + (1 + 100)],
    ['a long cycle across a DAG', { a: ['b', 'x'], b: ['c'], c: ['d'], d: ['e'], e: ['b'], x: ['c'] }, null],
  ] as const) {
    add('children', what, async (ctx) => {
      const ran = await runTask(ctx, graph(`graph-${ctx.n}`, edges as unknown as Record<string, string[]>), { id: 'a' });
      if (ran.outcome.state !== 'completed') return `the run is ${ran.outcome.state}`;
      if (result !== null && ran.outcome.result !== result) return `result ${ran.outcome.result}, expected ${result}`;
      return what.includes('cycle') || what.includes('ancestor') ? want(ran.nodes.some((n) => n.errors.at(-1)?.code === 'CYCLE'), 'no node reported a CYCLE') : null;
    });
  }
  add('children', 'a 100,000-deep chain against maxDepth 100', async (ctx) => {
    const ran = await runTask(ctx, { name: 'chain', limits: { maxDepth: 100 }, run: (i: { d: number }) => (i.d < 100_000 ? { children: [{ input: { d: i.d + 1 } }] } : { result: 1 }) } as Task, { d: 0 });
    const deep = ran.nodes.filter((n) => n.state === 'dead');
    return want(ran.nodes.length === 102 && deep.length === 1 && deep[0]?.errors.at(-1)?.code === 'DEPTH' && deep[0]?.depth === 101, `${ran.nodes.length} nodes, dead ${deep.map((n) => n.depth)}`);
  });
  add('children', 'a 20,000-child fan-out from an async iterable: alarm, approve, persisted in chunks', async (ctx) => {
    const task: Task = {
      name: 'fanout',
      limits: { maxChildren: 1_000 },
      run: (i: { leaf?: boolean }) =>
        i.leaf
          ? { result: 1 }
          : {
              children: (async function* () {
                for (let k = 0; k < 20_000; k++) yield { input: { leaf: true } };
              })(),
            },
      combine: (_i, r) => r.length,
    } as Task;
    const ran = await runTask(ctx, task, {}, { approve: true, timeoutMs: 60_000 });
    return want(ran.outcome.state === 'completed' && ran.outcome.result === 20_000, `state ${ran.outcome.state} result ${ran.outcome.result}`);
  });

  // ---- the command line
  add('cli', '--input that is not JSON', async (ctx) => clearCliError(await cli(ctx, ['run', moduleFile(ctx, 'ok.mjs', TREE_MJS), '--input', '{', '--store', 'sqlite:c1.db'])));
  add('cli', '--input nested 60,000 deep', async (ctx) => {
    let deep = '1';
    for (let i = 0; i < 60_000; i++) deep = `[${deep}]`;
    return clearCliError(await cli(ctx, ['run', moduleFile(ctx, 'ok.mjs', TREE_MJS), '--input', `{"d":${deep}}`, '--store', 'sqlite:c2.db']));
  });
  for (const value of ['0', '-1', 'NaN', '1.5']) {
    add('cli', `--concurrency ${value}`, async (ctx) => clearCliError(await cli(ctx, ['run', moduleFile(ctx, 'ok.mjs', TREE_MJS), '--input', '{"d":1}', '--concurrency', value, '--store', 'sqlite:c3.db'])));
  }
  add('cli', 'an unknown --run without --input', async (ctx) => clearCliError(await cli(ctx, ['run', moduleFile(ctx, 'ok.mjs', TREE_MJS), '--run', 'nope', '--store', 'sqlite:c4.db'])));
  add('cli', '--store pointing at a directory', async (ctx) => {
    mkdirSync(join(ctx.dir, 'adir'), { recursive: true });
    return clearCliError(await cli(ctx, ['run', moduleFile(ctx, 'ok.mjs', TREE_MJS), '--input', '{"d":1}', '--store', `sqlite:${join(ctx.dir, 'adir')}`]));
  });
  add('cli', '--store in a parent folder that does not exist yet (created)', async (ctx) => {
    const out = await cli(ctx, ['run', moduleFile(ctx, 'ok.mjs', TREE_MJS), '--input', '{"d":2}', '--store', `sqlite:${join(ctx.dir, 'new', 'deeper', 'rlm.db')}`]);
    return want(out.code === 0 && out.stdout.trim() === '3', `exit ${out.code}: ${out.stderr.slice(0, 200)}`);
  });
  // Stores that cannot be opened or created, with the store on its own thread and without.
  for (const thread of ['0', '1']) {
    const env = { RLM_SQLITE_THREAD: thread };
    add('cli', `a store whose folder cannot be made (under /proc, store thread ${thread})`, async (ctx) =>
      unusableStore(await cli(ctx, ['run', moduleFile(ctx, 'ok.mjs', TREE_MJS), '--input', '{"d":1}', '--store', 'sqlite:/proc/rlm-nope/x.db'], env), 2, /Cannot create the folder.*--store/),
    );
    add('cli', `a store whose folder is a file (store thread ${thread})`, async (ctx) => {
      writeFileSync(join(ctx.dir, 'afile'), 'x');
      return unusableStore(await cli(ctx, ['run', moduleFile(ctx, 'ok.mjs', TREE_MJS), '--input', '{"d":1}', '--store', `sqlite:${join(ctx.dir, 'afile', 'x.db')}`], env), 2, /Cannot create the folder/);
    });
    add('cli', `a store in a read-only folder (store thread ${thread})`, async (ctx) => {
      // root may write anywhere: the case runs as nobody, as the corrupt-store case C7 does.
      const asRoot = process.getuid?.() === 0;
      const dir = join(ctx.dir, `ro-${thread}`);
      mkdirSync(dir);
      const module = moduleFile(ctx, `ro-${thread}.mjs`, TREE_MJS);
      chmodSync(ctx.dir, 0o755);
      chmodSync(module, 0o644);
      chmodSync(dir, 0o555);
      const out = await cli(ctx, ['run', module, '--input', '{"d":1}', '--store', `sqlite:${join(dir, 'rlm.db')}`], env, asRoot ? 'nobody' : undefined);
      chmodSync(dir, 0o755);
      return unusableStore(out, 2, /Cannot create or write the store.*permissions/);
    });
    add('cli', `a store file another program holds locked (store thread ${thread})`, async (ctx) => {
      const path = join(ctx.dir, `locked-${thread}.db`);
      // Another program holds an exclusive lock on the file (sqlite3's BEGIN EXCLUSIVE) and keeps it.
      const holder = spawn(process.execPath, ['-e', LOCK_HOLDER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        await new Promise<void>((resolve, reject) => {
          holder.stdout?.once('data', () => resolve());
          holder.once('exit', (code) => reject(new Error(`the lock holder exited ${code}`)));
        });
        const out = await cli(ctx, ['run', moduleFile(ctx, 'ok.mjs', TREE_MJS), '--input', '{"d":1}', '--store', `sqlite:${path}`], env);
        return unusableStore(out, 1, /locked by another process.*run the same command again/);
      } finally {
        holder.kill('SIGKILL');
      }
    });
  }
  add('cli', 'a store on a full disk', async (ctx) => {
    // A tiny tmpfs, filled: needs root and a kernel that lets this process mount (a container may not).
    const mount = join(ctx.dir, 'full');
    mkdirSync(mount);
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mount]);
    } catch (error) {
      return `${SKIPPED}cannot mount a tmpfs here (${(error as Error).message.split('\n')[0]?.slice(0, 120)})`;
    }
    try {
      try {
        writeFileSync(join(mount, 'filler'), Buffer.alloc(1024 * 1024));
      } catch {
        // Full, as meant.
      }
      const out = await cli(ctx, ['run', moduleFile(ctx, 'ok.mjs', TREE_MJS), '--input', '{"d":1}', '--store', `sqlite:${join(mount, 'rlm.db')}`]);
      return unusableStore(out, 1, /SQLITE_FULL.*free space/);
    } finally {
      await run('umount', [mount]).catch(() => undefined);
    }
  });
  add('cli', 'the same run id with another task module', async (ctx) => {
    const a = moduleFile(ctx, 'a.mjs', TREE_MJS);
    const b = moduleFile(ctx, 'b.mjs', TREE_MJS.replace("name: 'ok'", "name: 'other'"));
    await cli(ctx, ['run', a, '--input', '{"d":1}', '--run', 'same', '--store', 'sqlite:c5.db']);
    return clearCliError(await cli(ctx, ['run', b, '--run', 'same', '--store', 'sqlite:c5.db']));
  });
  add('cli', 'the same run id with another input', async (ctx) => {
    const a = moduleFile(ctx, 'a.mjs', TREE_MJS);
    await cli(ctx, ['run', a, '--input', '{"d":1}', '--run', 'same', '--store', 'sqlite:c6.db']);
    return clearCliError(await cli(ctx, ['run', a, '--input', '{"d":2}', '--run', 'same', '--store', 'sqlite:c6.db']));
  });
  add('cli', 'an unknown store URL scheme', async (ctx) => clearCliError(await cli(ctx, ['status', '--store', 'mysql://localhost/x'])));
  add('cli', 'status of a store that does not exist', async (ctx) => clearCliError(await cli(ctx, ['status', '--store', 'sqlite:missing.db'])));
  add('cli', 'a module path that does not exist', async (ctx) => clearCliError(await cli(ctx, ['run', 'nope.mjs', '--input', '{}', '--store', 'sqlite:c7.db'])));
  add('cli', 'a top-level await that never resolves', async (ctx) =>
    clearCliError(await cli(ctx, ['run', moduleFile(ctx, 'tla.mjs', 'await new Promise(() => {});\nexport default {};'), '--input', '{}', '--store', 'sqlite:c8.db'], { RLM_IMPORT_TIMEOUT_MS: '300' })),
  );
  add('cli', 'postgres:// with a user that does not exist', async (ctx) => {
    const url = process.env.RLM_TEST_DATABASE_URL;
    if (!url) return null;
    const bad = new URL(url);
    bad.username = 'no_such_role_rlm';
    return clearCliError(await cli(ctx, ['status', '--store', bad.toString()]), 1);
  });
  add('cli', 'a handler that leaves a rejected promise behind', async (ctx) => {
    const path = moduleFile(
      ctx,
      'bg.mjs',
      "export default { name: 'bg', run(input) { if (input.d === 1) Promise.reject(new Error('background failure')); return input.d > 0 ? { children: [{ input: { d: input.d - 1 } }] } : { result: 1 }; }, combine: (_i, r) => r[0] + 1 };\n",
    );
    // The step ended already: the stray rejection is logged, and the same process ends the run exactly.
    const out = await cli(ctx, ['run', path, '--input', '{"d":3}', '--run', 'bg', '--store', 'sqlite:c9.db']);
    return want(
      out.code === 0 && out.stdout.trim() === '4' && out.stderr.includes('background failure'),
      `exit ${out.code}: ${out.stderr.trim().slice(0, 200)}`,
    );
  });
  return list;
}

/** fast-check: arbitrary values through the codec (the gate of every input, result, record and effect). */
function fuzzCodec(seed: number, runs: number): { tried: number; problems: string[] } {
  let tried = 0;
  const problems: string[] = [];
  const property = (value: unknown) => {
    tried++;
    let text: string;
    try {
      text = encode(value, 'A fuzzed value');
    } catch (error) {
      const problem = coded(error, 'NOT_SERIALIZABLE');
      if (problem) throw new Error(problem);
      return;
    }
    // Accepted: what is stored is what a resume decodes, and it is JSON's own form of the value.
    if (text !== (JSON.stringify(value) ?? 'null')) throw new Error(`stored ${text.slice(0, 80)} differs from JSON.stringify`);
    const back = decode(text);
    if (JSON.stringify(back) !== text) throw new Error('decode(encode(v)) is not stable');
  };
  const options = { numRuns: runs, seed };
  for (const [name, arb] of [
    ['jsonValue', fc.jsonValue({ maxDepth: 6 })],
    [
      'anything',
      fc.anything({
        maxDepth: 4,
        withBigInt: true,
        withMap: true,
        withSet: true,
        withDate: true,
        withTypedArray: true,
        withBoxedValues: true,
        withNullPrototype: true,
        withObjectString: true,
        withSparseArray: true,
        withUnicodeString: true,
      }),
    ],
  ] as const) {
    try {
      fc.assert(fc.property(arb as fc.Arbitrary<unknown>, property), options);
    } catch (error) {
      problems.push(`codec fuzz (${name}): ${(error as Error).message.split('\n').slice(0, 4).join(' ')}`);
    }
  }
  return { tried, problems };
}

/** fast-check: arbitrary root inputs through a real run — refused with a code and nothing written, or run exactly. */
async function fuzzRuns(ctx: Ctx, seed: number, runs: number): Promise<{ tried: number; problems: string[] }> {
  let tried = 0;
  const problems: string[] = [];
  const store = new SqliteStore({ path: join(ctx.dir, 'fuzz-runs.db') });
  const engine = await openEngine({ store, ...FAST });
  const task: Task = { name: 'echo', run: (input: unknown) => ({ result: { seen: input } }) };
  try {
    await fc.assert(
      fc.asyncProperty(fc.anything({ maxDepth: 3, withBigInt: true, withDate: true, withMap: true, withNullPrototype: true, withUnicodeString: true }), async (value) => {
        tried++;
        const before = (await store.listRuns(100_000)).length;
        let runId: string;
        try {
          runId = await engine.create(task, value as never);
        } catch (error) {
          const problem = coded(error, 'NOT_SERIALIZABLE');
          if (problem) throw new Error(problem);
          if ((await store.listRuns(100_000)).length !== before) throw new Error('a refused input left a run behind');
          return;
        }
        const out = await (await engine.resume(task, runId)).done;
        if (out.state !== 'completed') throw new Error(`the run ended ${out.state}`);
        const stored = JSON.stringify(value) ?? 'null';
        if (JSON.stringify((out.result as { seen: unknown }).seen ?? null) !== JSON.stringify(JSON.parse(stored))) throw new Error('the handler saw another input than the stored one');
      }),
      { numRuns: runs, seed },
    );
  } catch (error) {
    problems.push(`run fuzz: ${(error as Error).message.split('\n').slice(0, 4).join(' ')}`);
  } finally {
    await engine.close();
    await store.close();
  }
  return { tried, problems };
}

export interface BadInputOptions {
  codecRuns: number;
  runFuzz: number;
}

/** The whole catalogue and the fuzzers; resolves with the problems found. */
export async function badInputs(env: EpisodeEnv, options: BadInputOptions): Promise<string[]> {
  const r = env.report;
  const ctx: Ctx = { dir: env.dir, n: 0 };
  const problems: string[] = [];
  const list = cases();
  // Four cases at a time: most are in-process and short, some spawn `rlm`.
  let next = 0;
  const worker = async () => {
    for (;;) {
      const c = list[next++];
      if (!c) return;
      let problem: string | null;
      try {
        problem = await c.run(ctx);
      } catch (error) {
        problem = `the case itself failed: ${(error as Error)?.stack?.split('\n').slice(0, 3).join(' ') ?? String(error)}`;
      }
      if (problem?.startsWith(SKIPPED)) {
        r.notes.push(`bad input not tried: ${c.category}: ${c.name}: ${problem.slice(SKIPPED.length)}`);
        continue;
      }
      r.badInputs[c.category]++;
      r.badInputs.total++;
      if (problem) problems.push(`${c.category}: ${c.name}: ${problem}`);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  const codec = fuzzCodec(env.seed, options.codecRuns);
  r.badInputs.fuzz += codec.tried;
  r.badInputs.total += codec.tried;
  problems.push(...codec.problems);
  const runs = await fuzzRuns(ctx, env.seed, options.runFuzz);
  r.badInputs.fuzz += runs.tried;
  r.badInputs.total += runs.tried;
  problems.push(...runs.problems);
  return problems;
}
