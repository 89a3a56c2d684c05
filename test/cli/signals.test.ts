import Database from 'better-sqlite3';
import type { ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../helpers/cli.js';
import { describePostgres, pgQuery } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

function onMessage(child: ChildProcess, ok: (message: Record<string, unknown>) => boolean): Promise<void> {
  return new Promise((resolve) => {
    const listen = (message: Record<string, unknown>) => {
      if (!ok(message)) return;
      child.off('message', listen);
      resolve();
    };
    child.on('message', listen);
  });
}

/** Resolves once `n` steps of the fixture have started (it tells over IPC). */
function started(child: ChildProcess, n: number): Promise<void> {
  let count = 0;
  return onMessage(child, (message) => typeof message.started === 'number' && ++count === n);
}

type NodeRow = { state: string; attempts: number; n: number };

async function secondSignal(store: string, rows: () => Promise<NodeRow[]>): Promise<void> {
  const args = ['run', 'test/fixtures/honours-signal.ts', '--input', '{"n":0}', '--run', 'twice', '--store', store, '--concurrency', '4', '--grace-ms', '600000'];
  const first = startCli(args, { RLM_TEST_HANG: '1', RLM_FAILPOINTS: 'stop.begin=beacon' });
  await started(first.child, 4);
  first.child.kill('SIGINT');
  await onMessage(first.child, (message) => message.fp === 'stop.begin');
  first.child.kill('SIGINT');
  const stopped = await first.done;
  expect(stopped.code, stopped.stderr).toBe(130);
  // Every step in flight is back on the frontier, its attempt not counted: nothing dead, nothing leased.
  expect(await rows()).toEqual([
    { state: 'done', attempts: 1, n: 1 },
    { state: 'pending', attempts: 0, n: 12 },
  ]);
  const resumed = await runCli(args);
  expect(resumed.code, resumed.stderr).toBe(0);
  const status = JSON.parse((await runCli(['status', 'twice', '--json', '--store', store])).stdout);
  expect(status).toMatchObject({ state: 'completed', counts: { done: 13, dead: 0 } });
}

describe('signals (real processes)', () => {
  it('a second SIGINT stops at once and hands every step in flight back uncounted (SQLite); the resumed run has no dead node', async () => {
    const tmp = tempDir();
    try {
      await secondSignal(tmp.url, async () => {
        const db = new Database(tmp.db, { readonly: true });
        try {
          return db.prepare("SELECT state, attempts, count(*) AS n FROM rlm_nodes WHERE run_id = 'twice' GROUP BY state, attempts ORDER BY state").all() as NodeRow[];
        } finally {
          db.close();
        }
      });
    } finally {
      tmp.cleanup();
    }
  });

  it('rlm results --follow exits 130 on one SIGINT while no record arrives', async () => {
    const tmp = tempDir();
    try {
      // A live run whose steps wait: no record arrives while the follow waits.
      const run = startCli(['run', 'test/fixtures/honours-signal.ts', '--input', '{"n":0}', '--run', 'quiet', '--store', tmp.url], { RLM_TEST_HANG: '1' });
      await started(run.child, 4);
      const follow = startCli(['results', 'quiet', '--follow', '--store', tmp.url], { RLM_FAILPOINTS: 'results.waiting=beacon' });
      await onMessage(follow.child, (message) => message.fp === 'results.waiting');
      follow.child.kill('SIGINT');
      const ended = await follow.done;
      expect(ended.signal).toBeNull();
      expect(ended.code, ended.stderr).toBe(130);
      run.child.kill('SIGKILL');
      await run.done;
    } finally {
      tmp.cleanup();
    }
  });
});

describePostgres('signals (PostgreSQL, real processes)', (url) => {
  it('a second SIGINT stops at once and hands every step in flight back uncounted (PostgreSQL); the resumed run has no dead node', async () => {
    const schema = `rlm_signals_${process.pid}`;
    const store = `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`;
    await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    try {
      await secondSignal(store, async () =>
        (
          await pgQuery<{ state: string; attempts: number; n: number }>(
            url,
            `SELECT state, attempts, count(*)::integer AS n FROM ${schema}.rlm_nodes WHERE run_id = 'twice' GROUP BY state, attempts ORDER BY state`,
          )
        ).map((row) => ({ ...row })),
      );
    } finally {
      await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    }
  });
});
