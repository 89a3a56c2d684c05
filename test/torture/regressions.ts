/**
 * Minimal reproductions of the bugs the torture suite found, run in-process in a few milliseconds each, so a
 * regression points at its cause before any episode needs replaying. Each returns null when rlm behaves, or
 * what went wrong. (corpus.json keeps the seeds of the episodes that found them.)
 */
import { join } from 'node:path';
import { type Engine, openEngine } from '../../src/engine/engine.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { newRun } from '../helpers/new-run.js';
import type { Task, TaskContext } from '../../src/task.js';

/** Where the reproductions run: a folder for SQLite files, or a PostgreSQL URL (a fresh schema each). */
export type Place = { dir: string } | { pgUrl: string; schemas: string[] };

async function withEngine<T>(place: Place, name: string, fn: (engine: Engine, store: Store) => Promise<T>, options = {}): Promise<T> {
  let store: Store;
  if ('dir' in place) store = new SqliteStore({ path: join(place.dir, `${name}.db`) });
  else {
    const schema = `rlm_regression_${process.pid}_${place.schemas.length}`;
    place.schemas.push(schema);
    store = new PostgresStore({ connectionString: place.pgUrl, schema, poolSize: 3, applicationName: 'torture-regression' });
  }
  const engine = await openEngine({ store, leaseMs: 2_000, heartbeatMs: 200, pollMs: 5, ...options });
  try {
    return await fn(engine, store);
  } finally {
    await engine.close();
    await store.close();
  }
}

function dag(name: string, edges: Record<string, string[]>, extra: Partial<Task> = {}): Task {
  return {
    name,
    key: (input: { id: string }) => input.id,
    ...extra,
    run: async (input: { id: string }) => {
      // The shared child finishes later than its first parent's group, so the second parent meets it unfinished.
      if (input.id === 'b') await new Promise((resolve) => setTimeout(resolve, 60));
      const children = edges[input.id] ?? [];
      return children.length > 0 ? { children: children.map((id) => ({ input: { id } })) } : { result: 1 };
    },
    combine: (_input: unknown, results: unknown[]) => results.reduce((sum: number, r) => sum + (typeof r === 'number' ? r : 100), 1),
  } as Task;
}

export const REGRESSIONS: { name: string; sqliteOnly?: boolean; check(place: Place): Promise<string | null> }[] = [
  {
    name: 'a write blocked past the busy timeout by another process holding the lock is STORE_UNAVAILABLE, not an unexpected error',
    sqliteOnly: true,
    check: async (place) => {
      if (!('dir' in place)) return null;
      const path = join(place.dir, 'busy.db');
      const store = new SqliteStore({ path, busyTimeoutMs: 100 });
      await store.migrate();
      const Database = (await import('better-sqlite3')).default;
      const holder = new Database(path);
      holder.exec('BEGIN IMMEDIATE');
      try {
        await store.allocateIds(1);
        return 'the write went through a held lock';
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        return code === 'STORE_UNAVAILABLE' ? null : `${(error as Error).name} ${String(code)}: ${(error as Error).message}`;
      } finally {
        holder.exec('ROLLBACK');
        holder.close();
        await store.close();
      }
    },
  },
  {
    name: 'a store whose id or commit counter row is gone is STORE_CORRUPT at the first write, not a TypeError',
    sqliteOnly: true,
    check: async (place) => {
      if (!('dir' in place)) return null;
      const problems: string[] = [];
      for (const key of ['next_node_id', 'commit_seq']) {
        const path = join(place.dir, `meta-${key}.db`);
        const store = new SqliteStore({ path });
        await store.migrate();
        store.db.prepare('DELETE FROM rlm_meta WHERE key = ?').run(key);
        try {
          await store.allocateIds(1);
          await store.commit('nobody', []);
          problems.push(`${key}: the writes went through`);
        } catch (error) {
          const code = (error as { code?: unknown }).code;
          if (code !== 'STORE_CORRUPT') problems.push(`${key}: ${(error as Error).name} ${String(code)}: ${(error as Error).message}`);
        } finally {
          await store.close();
        }
      }
      return problems.length === 0 ? null : problems.join('; ');
    },
  },
  {
    name: 'a store whose migration history lost a row or a column is STORE_CORRUPT at open, not a raw SQLITE_ERROR',
    sqliteOnly: true,
    check: async (place) => {
      if (!('dir' in place)) return null;
      const problems: string[] = [];
      const damages = ['DELETE FROM rlm_migrations WHERE version = 1', 'ALTER TABLE rlm_migrations RENAME COLUMN version TO versiom'];
      for (const [i, damage] of damages.entries()) {
        const path = join(place.dir, `history-${i}.db`);
        const first = new SqliteStore({ path });
        await first.migrate();
        first.db.exec(damage);
        await first.close();
        const store = new SqliteStore({ path, mustExist: true });
        try {
          await store.migrate();
          problems.push(`${damage}: the damaged store opened`);
        } catch (error) {
          const code = (error as { code?: unknown }).code;
          if (code !== 'STORE_CORRUPT') problems.push(`${damage}: ${(error as Error).name} ${String(code)}: ${(error as Error).message}`);
        } finally {
          await store.close();
        }
      }
      return problems.length === 0 ? null : problems.join('; ');
    },
  },
  {
    name: 'a stored row with NULL in a NOT NULL column is STORE_CORRUPT at the write that meets it, not a raw constraint error',
    sqliteOnly: true,
    check: async (place) => {
      if (!('dir' in place)) return null;
      const path = join(place.dir, 'null-epoch.db');
      const first = new SqliteStore({ path });
      await first.migrate();
      const run = await first.createRun(newRun({ id: 'null-epoch', task: 'null-epoch' }));
      await first.close();
      // Damage the root's epoch as a flipped byte in its record header would: through a schema without the
      // constraint, then the schema put back as it was.
      const Database = (await import('better-sqlite3')).default;
      const sqlOf = (db: InstanceType<typeof Database>) => (db.prepare("SELECT sql FROM sqlite_master WHERE name = 'rlm_nodes'").get() as { sql: string }).sql;
      const rewrite = (to: (sql: string) => string) => {
        const db = new Database(path);
        db.unsafeMode(true); // lifts SQLite's defensive mode, which forbids writing the schema
        const sql = sqlOf(db);
        db.pragma('writable_schema = ON');
        db.prepare("UPDATE sqlite_master SET sql = ? WHERE name = 'rlm_nodes'").run(to(sql));
        db.pragma('writable_schema = OFF');
        db.close();
        return sql;
      };
      const original = rewrite((sql) => sql.replace('epoch INTEGER NOT NULL DEFAULT 0', 'epoch INTEGER DEFAULT 0'));
      const damage = new Database(path);
      damage.prepare('UPDATE rlm_nodes SET epoch = NULL WHERE id = ?').run(run.rootId);
      damage.close();
      rewrite(() => original);
      const store = new SqliteStore({ path, mustExist: true });
      try {
        await store.migrate();
        await store.registerWorker({ id: 'w', host: 'h', pid: process.pid, pidStart: 'x', task: 'null-epoch', version: 1 }, 60_000);
        await store.claimNodes('w', { task: 'null-epoch', maxVersion: 1 }, 1);
        return 'the damaged row was claimed';
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        return code === 'STORE_CORRUPT' ? null : `${(error as Error).name} ${String(code)}: ${(error as Error).message}`;
      } finally {
        await store.close();
      }
    },
  },
  {
    name: 'a keyed child listed twice by one parent, already created by another, is one child of it (the parent used to wait forever)',
    check: (place) =>
      withEngine(
        place,
        'dup-key',
        async (engine) => {
          const out = await (await engine.start(dag('dup', { a: ['b', 'c'], c: ['b', 'b'] }), { id: 'a' })).done;
          return out.state === 'completed' && out.result === 4 ? null : `the run ended ${out.state} with ${out.result}`;
        },
        { commitEverySteps: 1 },
      ),
  },
  {
    name: "a node dead-lettered for closing a cycle counts as finished for its parent under deadChildren 'pass'",
    check: (place) =>
      withEngine(place, 'cycle-pass', async (engine) => {
        const out = await (await engine.start(dag('cycle', { a: ['b', 'c'], c: ['a'] }, { deadChildren: 'pass' }), { id: 'a' })).done;
        return out.state === 'completed' && out.result === 102 ? null : `the run ended ${out.state} with ${out.result}`;
      }),
  },
  {
    name: "a keyed task's root is keyed: a descendant with the root's key is the root (a cycle), not a second root",
    check: (place) =>
      withEngine(place, 'root-key', async (engine, store) => {
        const out = await (await engine.start(dag('rootkey', { a: ['b'], b: ['a'] }), { id: 'a' })).done;
        const keys = (await store.listNodes(out.runId, {})).map((n) => n.key).sort();
        return JSON.stringify(keys) === '["a","b"]' ? null : `nodes ${JSON.stringify(keys)}`;
      }),
  },
  {
    name: 'the records a step emitted before its fan-out alarm are not committed twice once it is approved',
    check: (place) =>
      withEngine(place, 'alarm-emits', async (engine, store) => {
        const task: Task = {
          name: 'alarm',
          limits: { maxChildren: 2 },
          run: (input: { leaf?: boolean }, ctx: TaskContext) => {
            if (input.leaf) return { result: 1 };
            ctx.emit({ from: 'root' });
            return { children: [1, 2, 3].map(() => ({ input: { leaf: true } })) };
          },
        };
        const handle = await engine.start(task, {});
        const first = await handle.done;
        if (first.state !== 'paused') return `the fan-out did not pause the run (${first.state})`;
        await store.decideParked(handle.runId, 'all', 'approve');
        const out = await (await engine.resume(task, handle.runId)).done;
        const records = await store.readEmits(handle.runId, 0, 100);
        return out.state === 'completed' && records.length === 1 ? null : `${records.length} records from one step, run ${out.state}`;
      }),
  },
  {
    name: 'a child sees the same input on its first attempt as on its retry (-0, undefined fields)',
    check: (place) =>
      withEngine(place, 'same-input', async (engine) => {
        const seen: string[] = [];
        const task: Task = {
          name: 'same-input',
          limits: { maxAttempts: 3, backoffMs: 1, maxBackoffMs: 2 },
          run(input: { child?: boolean; x?: number; u?: undefined }, ctx: TaskContext) {
            if (!input.child) return { children: [{ input: { child: true, x: -0, u: undefined } }] };
            seen.push(`x is -0: ${Object.is(input.x, -0)}, has u: ${'u' in input}`);
            if (ctx.attempt === 1) throw new Error('first attempt fails');
            return { result: 1 };
          },
        };
        await (await engine.start(task, {})).done;
        return seen[0] === seen[1] ? null : `attempt 1 saw {${seen[0]}}, its retry {${seen[1]}}`;
      }),
  },
];
