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

/** A store the CLI tests run against: its URL, and plain SQL on its tables (`T.` prefixes a table name). */
interface Target {
  url: string;
  sql(query: string): Promise<Record<string, unknown>[]>;
  cleanup(): Promise<void>;
}

function sqliteTarget(): Target {
  const tmp = tempDir();
  return {
    url: tmp.url,
    async sql(query) {
      const db = new Database(tmp.db);
      try {
        const statement = db.prepare(query.replaceAll('T.', ''));
        if (statement.reader) return statement.all() as Record<string, unknown>[];
        statement.run();
        return [];
      } finally {
        db.close();
      }
    },
    async cleanup() {
      tmp.cleanup();
    },
  };
}

async function pgTarget(url: string, name: string): Promise<Target> {
  const schema = `rlm_${name}_${process.pid}`;
  await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  return {
    url: `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`,
    sql: (query) => pgQuery(url, query.replaceAll('T.', `${schema}.`)),
    cleanup: async () => {
      await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  };
}

async function status(target: Target, runId: string): Promise<Record<string, unknown> | null> {
  const result = await runCli(['status', runId, '--json', '--store', target.url]);
  return result.code === 0 ? (JSON.parse(result.stdout) as Record<string, unknown>) : null;
}

function lifecycle(open: (name: string) => Promise<Target>): void {
  it('cancel ends a live run (exit 5) and resuming it does not revive it; --restart runs it again from the root under the same id; rm deletes it', async () => {
    const target = await open('cancel');
    const args = ['run', 'test/fixtures/slow-tree.ts', '--input', '{"fanout":4,"depth":6}', '--run', 'c1', '--store', target.url, '--commit-every', '50'];
    try {
      const live = startCli(args, { RLM_FAILPOINTS: 'commit.afterCommit=beacon' });
      await onMessage(live.child, (message) => message.fp === 'commit.afterCommit' && message.n === 3);
      const cancel = await runCli(['cancel', 'c1', '--store', target.url]);
      expect(cancel.code, cancel.stderr).toBe(0);
      const ended = await live.done;
      expect(ended.code, ended.stderr).toBe(5);
      expect(ended.stderr).toContain('--restart');
      expect(await status(target, 'c1')).toMatchObject({ state: 'cancelled', counts: { running: 0 } });
      expect((await status(target, 'c1'))?.finishedAt).not.toBeNull();
      const again = await runCli(['run', 'test/fixtures/slow-tree.ts', '--run', 'c1', '--store', target.url]);
      expect(again.code, again.stderr).toBe(5);
      const restarted = await runCli([...args, '--restart']);
      expect(restarted.code, restarted.stderr).toBe(0);
      expect(restarted.stdout.trim()).toBe('5461');
      expect(await status(target, 'c1')).toMatchObject({ state: 'completed', nodes: 5461, counts: { done: 5461, dead: 0 } });
      const rm = await runCli(['rm', 'c1', '--store', target.url]);
      expect(rm.code, rm.stderr).toBe(0);
      expect(await status(target, 'c1')).toBeNull();
      expect(Number((await target.sql("SELECT count(*) AS n FROM T.rlm_nodes WHERE run_id = 'c1'"))[0]?.n)).toBe(0);
    } finally {
      await target.cleanup();
    }
  });

  it('rm and --restart refuse a run whose nodes live workers hold, unless --force', async () => {
    const target = await open('rm');
    try {
      const live = startCli(['run', 'test/fixtures/honours-signal.ts', '--input', '{"n":0}', '--run', 'held', '--store', target.url], { RLM_TEST_HANG: '1' });
      let started = 0;
      await onMessage(live.child, (message) => typeof message.started === 'number' && ++started === 4);
      const refused = await runCli(['rm', 'held', '--store', target.url]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/leased by live workers.*--force/);
      const restart = await runCli(['run', 'test/fixtures/honours-signal.ts', '--run', 'held', '--restart', '--store', target.url]);
      expect(restart.code).toBe(2);
      expect(restart.stderr).toContain('--force');
      expect(await status(target, 'held')).toMatchObject({ state: 'running' });
      const forced = await runCli(['rm', 'held', '--force', '--store', target.url]);
      expect(forced.code, forced.stderr).toBe(0);
      expect(await status(target, 'held')).toBeNull();
      live.child.kill('SIGKILL');
      await live.done;
    } finally {
      await target.cleanup();
    }
  });

  it('purge --older-than deletes finished runs past that age and keeps the rest', async () => {
    const target = await open('purge');
    try {
      expect((await runCli(['run', 'examples/tree.ts', '--input', '{"fanout":2,"depth":3}', '--run', 'old', '--store', target.url])).code).toBe(0);
      expect((await runCli(['run', 'examples/tree.ts', '--input', '{"fanout":2,"depth":3}', '--run', 'parked', '--budget', '3', '--store', target.url])).code).toBe(4);
      const none = await runCli(['purge', '--older-than', '7d', '--json', '--store', target.url]);
      expect(none.code, none.stderr).toBe(0);
      expect(JSON.parse(none.stdout)).toEqual([]);
      const purged = await runCli(['purge', '--older-than', '0s', '--json', '--store', target.url]);
      expect(JSON.parse(purged.stdout)).toEqual(['old']);
      expect(await status(target, 'old')).toBeNull();
      expect(await status(target, 'parked')).toMatchObject({ state: 'paused' });
      expect((await runCli(['purge', '--older-than', 'soon', '--store', target.url])).code).toBe(2);
    } finally {
      await target.cleanup();
    }
  });

  it('budget raises a live run’s node budget and --budget on a resumed run applies; approved, the run finishes', async () => {
    const target = await open('budget');
    try {
      for (const runId of ['by-command', 'by-flag']) {
        const run = await runCli(['run', 'examples/tree.ts', '--input', '{"fanout":3,"depth":3}', '--run', runId, '--store', target.url, '--budget', '5']);
        expect(run.code, run.stderr).toBe(4);
      }
      const raised = await runCli(['budget', 'by-command', '40', '--store', target.url]);
      expect(raised.code, raised.stderr).toBe(0);
      expect(raised.stdout).toContain('rlm approve by-command --all');
      // --budget on a resumed run applies; its parked nodes still wait for a person.
      const flagged = await runCli(['run', 'examples/tree.ts', '--run', 'by-flag', '--store', target.url, '--budget', '40']);
      expect(flagged.code, flagged.stderr).toBe(4);
      for (const runId of ['by-command', 'by-flag']) {
        expect(Number((await target.sql(`SELECT node_budget FROM T.rlm_runs WHERE id = '${runId}'`))[0]?.node_budget)).toBe(40);
        expect((await runCli(['approve', runId, '--all', '--store', target.url])).code).toBe(0);
        const done = await runCli(['run', 'examples/tree.ts', '--run', runId, '--store', target.url]);
        expect(done.code, done.stderr).toBe(0);
        expect(done.stdout.trim()).toBe('40');
      }
    } finally {
      await target.cleanup();
    }
  });

  it('dlq drop takes a dead node out of the counts and the exit code; under a waiting combine parent it is refused, saying why', async () => {
    const target = await open('drop');
    try {
      // A traversal: the dead node blocks nobody.
      expect((await runCli(['run', 'test/fixtures/hangs.ts', '--input', '{"n":0}', '--run', 'walk', '--store', target.url])).code).toBe(3);
      const dropped = await runCli(['dlq', 'drop', 'walk', '--all', '--store', target.url]);
      expect(dropped.code, dropped.stderr).toBe(0);
      expect(await status(target, 'walk')).toMatchObject({ state: 'completed', dlq: 0, counts: { dead: 0 } });
      expect(JSON.parse((await runCli(['dlq', 'list', 'walk', '--json', '--store', target.url])).stdout)).toEqual([]);
      expect((await runCli(['run', 'test/fixtures/hangs.ts', '--run', 'walk', '--store', target.url])).code).toBe(0);

      // deadChildren 'wait': the parent waits for its dead child, so dropping it is refused.
      expect((await runCli(['run', 'test/fixtures/dead-child.ts', '--input', '{"n":0}', '--run', 'wait', '--store', target.url])).code).toBe(3);
      const refused = await runCli(['dlq', 'drop', 'wait', '--all', '--store', target.url]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/waits for it.*deadChildren is 'wait'/);
      expect(await status(target, 'wait')).toMatchObject({ counts: { dead: 1 } });

      // deadChildren 'pass': combine got a ChildFailure; dropping the node clears the run's exit code.
      const pass = await runCli(['run', 'test/fixtures/dead-child.ts', '--input', '{"n":0}', '--run', 'pass', '--store', target.url], { RLM_TEST_PASS: '1' });
      expect(pass.code, pass.stderr).toBe(3);
      expect(pass.stdout.trim()).toBe('"ok,failed"');
      expect((await runCli(['dlq', 'drop', 'pass', '--all', '--store', target.url])).code).toBe(0);
      const after = await runCli(['run', 'test/fixtures/dead-child.ts', '--run', 'pass', '--store', target.url], { RLM_TEST_PASS: '1' });
      expect(after.code, after.stderr).toBe(0);
      expect(await status(target, 'pass')).toMatchObject({ state: 'completed', dlq: 0, result: 'ok,failed' });
    } finally {
      await target.cleanup();
    }
  });

  it('prunes the rows of workers gone long ago when a worker registers', async () => {
    const target = await open('workers');
    try {
      for (let i = 0; i < 3; i++) expect((await runCli(['run', 'examples/tree.ts', '--input', '{"fanout":2,"depth":1}', '--store', target.url])).code).toBe(0);
      expect((await target.sql("SELECT state FROM T.rlm_workers WHERE state <> 'alive'")).length).toBe(3);
      // Two of them stopped two days ago.
      await target.sql("UPDATE T.rlm_workers SET heartbeat_at = 0 WHERE id IN (SELECT id FROM T.rlm_workers ORDER BY started_at LIMIT 2)");
      expect((await runCli(['run', 'examples/tree.ts', '--input', '{"fanout":2,"depth":1}', '--store', target.url])).code).toBe(0);
      expect((await target.sql('SELECT id FROM T.rlm_workers')).length).toBe(2);
    } finally {
      await target.cleanup();
    }
  });
}

describe('run lifecycle on the command line (SQLite, real processes)', () => {
  lifecycle(async () => sqliteTarget());

  it('--compact-every works under rlm worker', async () => {
    const target = sqliteTarget();
    try {
      const { openEngine } = await import('../../src/index.js');
      const { default: tree } = await import('../../examples/tree.js');
      const engine = await openEngine({ store: target.url });
      await engine.create(tree, { fanout: 10, depth: 3 }, { runId: 'compacted' });
      await engine.close();
      const worker = startCli(['worker', 'examples/tree.ts', '--compact-every', '1', '--commit-every', '100', '--store', target.url]);
      for (;;) {
        const [run] = await target.sql("SELECT state FROM T.rlm_runs WHERE id = 'compacted'");
        if (run?.state === 'completed') break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      worker.child.kill('SIGTERM');
      expect((await worker.done).code).toBe(143);
      expect(await status(target, 'compacted')).toMatchObject({ result: 1111, counts: { done: 1111 } });
      expect(Number((await target.sql("SELECT count(*) AS n FROM T.rlm_nodes WHERE run_id = 'compacted'"))[0]?.n)).toBeLessThan(1111);
    } finally {
      await target.cleanup();
    }
  });
});

describePostgres('run lifecycle on the command line (PostgreSQL, real processes)', (url) => {
  lifecycle((name) => pgTarget(url, name));
});
