import { describe, expect, it } from 'vitest';
import { startCli } from '../helpers/cli.js';
import { auditSqlite } from '../helpers/store-check.js';
import { tempDir } from '../helpers/temp.js';

function waitForFailpoint(child: import('node:child_process').ChildProcess, name: string, n: number): Promise<void> {
  return new Promise((resolve) => {
    child.on('message', (message: { fp?: string; n?: number }) => {
      if (message.fp === name && message.n === n) resolve();
    });
  });
}

describe('leases and fencing with real processes', () => {
  it('fences a worker frozen past its lease: another takes its nodes over and the frozen commit is rejected', async () => {
    const tmp = tempDir();
    const args = ['run', 'test/fixtures/slow-tree.ts', '--input', '{"fanout":4,"depth":4}', '--run', 'zombie', '--store', tmp.url];
    const leases = ['--lease-ms', '1000', '--heartbeat-ms', '100', '--concurrency', '4'];
    try {
      // Worker A freezes itself (SIGSTOP) just before its third group commit, holding finished steps.
      const a = startCli([...args, ...leases], { RLM_FAILPOINTS: 'commit.beforeBegin=stop@3', RLM_LOG_LEVEL: 'warn' });
      await waitForFailpoint(a.child, 'commit.beforeBegin', 3);
      // Worker B waits out A's lease, takes A's nodes over (new epochs) and finishes the run.
      const b = await startCli([...args, ...leases]).done;
      expect(b.code, b.stderr).toBe(0);
      expect(b.stdout.trim()).toBe('341');
      expect(b.stderr).toContain('Took back the leases');
      // A wakes up and goes on with its commit: every write of it is rejected.
      a.child.kill('SIGCONT');
      const resultA = await a.done;
      expect(resultA.stderr).toContain('Step writes were rejected');
      const audit = auditSqlite(tmp.db, 'zombie');
      expect(audit.integrity).toEqual(['ok']);
      expect(audit.states).toEqual({ done: 341 });
      expect(audit.duplicates).toBe(0);
      expect(audit.counters).toMatchObject({ n_done: 341, n_running: 0, state: 'completed', result: '341' });
    } finally {
      tmp.cleanup();
    }
  });

  it('sends a poison pill that kills every process running it to the DLQ after maxAttempts; siblings finish', async () => {
    const tmp = tempDir();
    const args = ['run', 'test/fixtures/poison.ts', '--input', '{"depth":2}', '--run', 'poison', '--store', tmp.url];
    try {
      let deaths = 0;
      let last = await startCli(args).done;
      while (last.signal === 'SIGKILL' && deaths < 10) {
        deaths++;
        last = await startCli(args).done;
      }
      expect(last.code, last.stderr).toBe(3);
      // A death while the pill ran beside others is charged to nobody; it makes the others suspects, which
      // then run alone. Three deaths are charged to the pill, plus one uncharged death per tree level at most.
      expect(deaths).toBeGreaterThanOrEqual(4);
      expect(deaths).toBeLessThanOrEqual(3 + 3);
      const dlq = await startCli(['dlq', 'list', 'poison', '--json', '--store', tmp.url]).done;
      const rows = JSON.parse(dlq.stdout) as { key: string; attempts: number; error: string }[];
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ key: 'root/1/2', attempts: 3 });
      expect(rows[0]?.error).toContain('crashed its worker process');
      expect(auditSqlite(tmp.db, 'poison').states).toEqual({ done: 12, dead: 1 });
    } finally {
      tmp.cleanup();
    }
  });
});
