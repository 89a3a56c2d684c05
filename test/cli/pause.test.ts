import Database from 'better-sqlite3';
import type { ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../helpers/cli.js';
import { describePostgres, pgQuery } from '../helpers/postgres.js';
import { auditSqlite } from '../helpers/store-check.js';
import { tempDir } from '../helpers/temp.js';

function onFailpoint(child: ChildProcess, name: string, n: number): Promise<void> {
  return new Promise((resolve) => {
    child.on('message', (message: { fp?: string; n?: number }) => {
      if (message.fp === name && message.n === n) resolve();
    });
  });
}

function sqliteRun(db: string, runId: string): { state: string; n_done: number; n_running: number; n_pending: number; pause_reason: string | null } {
  const handle = new Database(db, { readonly: true });
  try {
    return handle.prepare('SELECT state, n_done, n_running, n_pending, pause_reason FROM rlm_runs WHERE id = ?').get(runId) as never;
  } finally {
    handle.close();
  }
}

/** Polls a condition on the store (the event a test waits for lives there). */
async function until<T>(read: () => T | Promise<T>, ok: (value: T) => boolean): Promise<T> {
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('rlm pause is exact (SQLite, real processes)', () => {
  it('pauses a live 1.1M-node run within a commit group; resuming the run does not lift it; rlm resume does; the result is exact', async () => {
    const tmp = tempDir();
    const args = ['run', 'examples/tree.ts', '--input', '{"fanout":10,"depth":6}', '--run', 'big', '--store', tmp.url];
    try {
      const first = startCli(args, { RLM_FAILPOINTS: 'commit.afterCommit=beacon' });
      await onFailpoint(first.child, 'commit.afterCommit', 30);
      const paused = await runCli(['pause', 'big', '--store', tmp.url]);
      expect(paused.code, paused.stderr).toBe(0);
      const atPause = sqliteRun(tmp.db, 'big');
      expect(atPause.state).toBe('paused');
      // The worker acknowledges the pause by ending with exit 4, its nodes handed back.
      const stopped = await first.done;
      expect(stopped.code, stopped.stderr).toBe(4);
      const afterExit = sqliteRun(tmp.db, 'big');
      expect(afterExit.state).toBe('paused');
      expect(afterExit.n_running).toBe(0);
      // Steps in flight and the groups being committed finish: a few groups of 1,000 at most, not the run.
      expect(afterExit.n_done - atPause.n_done).toBeLessThan(6_000);
      expect(afterExit.n_done).toBeLessThan(1_111_111);
      expect(stopped.stderr).toContain('rlm resume big');

      // Resuming the run is not resuming the pause: the worker finds it paused and ends at once.
      const again = await runCli(['run', 'examples/tree.ts', '--run', 'big', '--store', tmp.url]);
      expect(again.code, again.stderr).toBe(4);
      const afterAgain = sqliteRun(tmp.db, 'big');
      expect(afterAgain).toEqual(afterExit);

      const resumed = await runCli(['resume', 'big', '--store', tmp.url]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(sqliteRun(tmp.db, 'big').state).toBe('running');
      const finished = await runCli(['run', 'examples/tree.ts', '--run', 'big', '--store', tmp.url]);
      expect(finished.code, finished.stderr).toBe(0);
      expect(finished.stdout.trim()).toBe('1111111');
      const audit = auditSqlite(tmp.db, 'big');
      expect(audit.states).toEqual({ done: 1_111_111 });
      expect(audit.duplicates).toBe(0);
    } finally {
      tmp.cleanup();
    }
  });
});

describePostgres('rlm pause is exact (PostgreSQL, 3 worker processes)', (url) => {
  it('pauses a run worked by rlm run and two rlm workers within a commit group; the workers stay connected and idle; rlm resume lets them finish it exactly', async () => {
    const schema = `rlm_pause_${process.pid}`;
    const store = `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`;
    await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    const read = async () =>
      (
        await pgQuery<{ state: string; n_done: number; n_running: number; pause_reason: string | null }>(
          url,
          `SELECT state, n_done::integer, n_running::integer, pause_reason FROM ${schema}.rlm_runs WHERE id = 'pg-big'`,
        )
      )[0];
    const heartbeats = async () =>
      (await pgQuery<{ id: string; heartbeat_at: string }>(url, `SELECT id, heartbeat_at FROM ${schema}.rlm_workers WHERE state = 'alive' ORDER BY id`)).map(
        (row) => Number(row.heartbeat_at),
      );
    const flags = ['--store', store, '--heartbeat-ms', '100', '--lease-ms', '5000'];
    const workers: ReturnType<typeof startCli>[] = [];
    try {
      const first = startCli(['run', 'examples/tree.ts', '--input', '{"fanout":10,"depth":5}', '--run', 'pg-big', ...flags], { RLM_FAILPOINTS: 'commit.afterCommit=beacon' });
      await onFailpoint(first.child, 'commit.afterCommit', 5);
      for (let i = 0; i < 2; i++) {
        const worker = startCli(['worker', 'examples/tree.ts', ...flags], { RLM_FAILPOINTS: 'commit.afterCommit=beacon' });
        workers.push(worker);
        await onFailpoint(worker.child, 'commit.afterCommit', 3);
      }
      const paused = await runCli(['pause', 'pg-big', '--store', store]);
      expect(paused.code, paused.stderr).toBe(0);
      const stopped = await first.done;
      expect(stopped.code, stopped.stderr).toBe(4);
      // Acknowledged by every worker: nothing of the run is leased any more.
      const acknowledged = await until(read, (run) => run?.n_running === 0);
      expect(acknowledged?.state).toBe('paused');
      expect(acknowledged?.n_done).toBeLessThan(111_111);
      // Two heartbeats later, both workers are still connected, and still nothing moved.
      const beats = await heartbeats();
      expect(beats).toHaveLength(2);
      await until(heartbeats, (now) => now.length === 2 && now.every((at, i) => at > (beats[i] as number) + 100));
      expect(await read()).toEqual(acknowledged);

      const again = await runCli(['run', 'examples/tree.ts', '--run', 'pg-big', ...flags]);
      expect(again.code, again.stderr).toBe(4);
      expect(await read()).toEqual(acknowledged);

      expect((await runCli(['resume', 'pg-big', '--store', store])).code).toBe(0);
      const completed = await until(read, (run) => run?.state === 'completed');
      expect(completed?.n_done).toBe(111_111);
      const status = await runCli(['status', 'pg-big', '--json', '--store', store]);
      expect(JSON.parse(status.stdout)).toMatchObject({ state: 'completed', result: 111_111, counts: { done: 111_111, dead: 0 } });
      for (const worker of workers) worker.child.kill('SIGTERM');
      for (const worker of workers) expect((await worker.done).code).toBe(143);
    } finally {
      for (const worker of workers) worker.child.kill('SIGKILL');
      await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    }
  });
});
