import Database from 'better-sqlite3';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, startCli, stoppedOrGone } from '../helpers/cli.js';
import { auditSqlite } from '../helpers/store-check.js';
import { tempDir } from '../helpers/temp.js';

function onFailpoint(child: ChildProcess, name: string, n: number): Promise<void> {
  return new Promise((resolve) => {
    child.on('message', (message: { fp?: string; n?: number }) => {
      if (message.fp === name && message.n === n) resolve();
    });
  });
}

function nodes(db: string, sql: string, ...params: unknown[]): Record<string, unknown>[] {
  const handle = new Database(db, { readonly: true });
  try {
    return handle.prepare(sql).all(...params) as Record<string, unknown>[];
  } finally {
    handle.close();
  }
}

describe('graceful stop, memory ceiling, versions and snapshots (real processes)', () => {
  it('SIGTERM stops claiming, finishes in-flight steps, hands leases back without counting attempts, exits 143', async () => {
    const tmp = tempDir();
    const args = ['run', 'test/fixtures/slow-tree.ts', '--input', '{"fanout":4,"depth":5}', '--run', 'term', '--store', tmp.url, '--commit-every', '20'];
    try {
      const first = startCli(args, { RLM_FAILPOINTS: 'commit.beforeCommit=beacon' });
      await onFailpoint(first.child, 'commit.beforeCommit', 5);
      first.child.kill('SIGTERM');
      const stopped = await first.done;
      expect(stopped.code, stopped.stderr).toBe(143);
      const held = nodes(tmp.db, "SELECT count(*) AS n FROM rlm_nodes WHERE state = 'running'");
      expect(held[0]?.n).toBe(0);
      const charged = nodes(tmp.db, "SELECT count(*) AS n FROM rlm_nodes WHERE state = 'pending' AND attempts > 0");
      expect(charged[0]?.n).toBe(0);
      const resumed = await runCli(args);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout.trim()).toBe('1365');
      expect(auditSqlite(tmp.db, 'term').states).toEqual({ done: 1365 });
    } finally {
      tmp.cleanup();
    }
  });

  it('a second signal stops at once, and the store stays consistent', async () => {
    const tmp = tempDir();
    const args = ['run', 'test/fixtures/slow-tree.ts', '--input', '{"fanout":4,"depth":4}', '--run', 'twice', '--store', tmp.url];
    try {
      const first = startCli(args, { RLM_FAILPOINTS: 'commit.beforeCommit=beacon;stop.begin=beacon' });
      await onFailpoint(first.child, 'commit.beforeCommit', 2);
      first.child.kill('SIGINT');
      await onFailpoint(first.child, 'stop.begin', 1);
      first.child.kill('SIGINT');
      const stopped = await first.done;
      expect(stopped.code, stopped.stderr).toBe(130);
      const resumed = await runCli(args);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout.trim()).toBe('341');
      expect(auditSqlite(tmp.db, 'twice').integrity).toEqual(['ok']);
    } finally {
      tmp.cleanup();
    }
  });

  it('a signal that arrives after the store is closed ends the process with the code it decided, not by the signal', async () => {
    const tmp = tempDir();
    try {
      const run = startCli(['run', 'examples/tree.ts', '--input', '{"fanout":2,"depth":2}', '--store', tmp.url], { RLM_FAILPOINTS: 'cli.closed=stop' });
      // The process stops itself right after its store is closed; the signal waits for SIGCONT.
      await onFailpoint(run.child, 'cli.closed', 1);
      run.child.kill('SIGTERM');
      await stoppedOrGone(run.child.pid as number);
      run.child.kill('SIGCONT');
      const ended = await run.done;
      expect(ended.signal, ended.stderr).toBeNull();
      expect(ended.code, ended.stderr).toBe(0);
      expect(ended.stdout.trim()).toBe('7');
    } finally {
      tmp.cleanup();
    }
  });

  it('stops gracefully at --max-rss with exit 75, and resumes', async () => {
    const tmp = tempDir();
    const args = ['run', 'test/fixtures/slow-tree.ts', '--input', '{"fanout":4,"depth":4}', '--run', 'rss', '--store', tmp.url];
    try {
      const capped = await runCli([...args, '--max-rss', '1', '--heartbeat-ms', '20']);
      expect(capped.code, capped.stderr).toBe(75);
      expect(capped.stderr).toContain('Memory ceiling reached');
      const resumed = await runCli(args);
      expect(resumed.stdout.trim()).toBe('341');
    } finally {
      tmp.cleanup();
    }
  });

  it('finishes with version 2 a run half done by version 1; a version-1 worker never claims what version 2 wrote', async () => {
    const tmp = tempDir();
    const input = '{"href":"r","depth":5}';
    try {
      const v1 = startCli(['run', 'test/fixtures/versioned-v1.ts', '--input', input, '--run', 'ver', '--store', tmp.url, '--commit-every', '50'], {
        RLM_FAILPOINTS: 'commit.afterCommit=kill@6',
      });
      expect((await v1.done).signal).toBe('SIGKILL');
      // Version 2 works a while, then stops gracefully, leaving nodes it wrote (version 2) on the frontier. It is
      // stopped (SIGSTOP) once it holds rows it wrote, and gets SIGTERM while stopped, so the signal lands while
      // it holds them however loaded the machine is.
      const v2 = startCli(['run', 'test/fixtures/versioned-v2.ts', '--run', 'ver', '--store', tmp.url, '--commit-every', '50']);
      await expect
        .poll(() => Number(nodes(tmp.db, "SELECT count(*) AS n FROM rlm_nodes WHERE version = 2 AND state = 'running'")[0]?.n), { timeout: 30_000, interval: 5 })
        .toBeGreaterThanOrEqual(8);
      v2.child.kill('SIGSTOP');
      await stoppedOrGone(v2.child.pid as number);
      v2.child.kill('SIGTERM');
      v2.child.kill('SIGCONT');
      expect((await v2.done).code).toBe(143);
      const written = nodes(tmp.db, "SELECT id, epoch FROM rlm_nodes WHERE version = 2 AND state = 'pending' ORDER BY id");
      expect(written.length, JSON.stringify(nodes(tmp.db, 'SELECT version, state, count(*) AS n FROM rlm_nodes GROUP BY version, state'))).toBeGreaterThan(0);
      // An old worker joins: it claims nothing written by version 2.
      const old = startCli(['worker', 'test/fixtures/versioned-v1.ts', '--store', tmp.url], { RLM_FAILPOINTS: 'claim.beforeCommit=beacon' });
      await onFailpoint(old.child, 'claim.beforeCommit', 3);
      old.child.kill('SIGTERM');
      await old.done;
      expect(nodes(tmp.db, 'SELECT id, epoch FROM rlm_nodes WHERE id IN (' + written.map((w) => w.id).join(',') + ') ORDER BY id')).toEqual(written);
      const finished = await runCli(['run', 'test/fixtures/versioned-v2.ts', '--run', 'ver', '--store', tmp.url]);
      expect(finished.code, finished.stderr).toBe(0);
      expect(finished.stdout.trim()).toBe('1365');
      expect(nodes(tmp.db, 'SELECT DISTINCT version FROM rlm_nodes ORDER BY version').map((r) => r.version)).toEqual([1, 2]);
    } finally {
      tmp.cleanup();
    }
  });

  it('a snapshot taken while the run goes on resumes elsewhere to the same result', async () => {
    const tmp = tempDir();
    const snapshot = join(tmp.dir, 'snapshot.db');
    const args = ['run', 'examples/tree.ts', '--input', '{"fanout":10,"depth":5}', '--run', 'snap', '--commit-every', '200'];
    try {
      const live = startCli([...args, '--store', tmp.url], { RLM_FAILPOINTS: 'commit.afterCommit=beacon' });
      await onFailpoint(live.child, 'commit.afterCommit', 20);
      const snap = await runCli(['snapshot', 'snap', snapshot, '--store', tmp.url]);
      expect(snap.code, snap.stderr).toBe(0);
      const original = await live.done;
      expect(original.stdout.trim()).toBe('111111');
      const copy = auditSqlite(snapshot, 'snap');
      expect(copy.integrity).toEqual(['ok']);
      expect(copy.counters.state).toBe('running');
      const resumed = await runCli([...args, '--store', `sqlite:${snapshot}`]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout.trim()).toBe('111111');
      expect(auditSqlite(snapshot, 'snap').states).toEqual({ done: 111111 });
    } finally {
      tmp.cleanup();
    }
  });
});
