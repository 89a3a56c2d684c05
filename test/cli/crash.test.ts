import { describe, expect, it } from 'vitest';
import { startCli } from '../helpers/cli.js';
import { seeded } from '../helpers/random.js';
import { auditSqlite } from '../helpers/store-check.js';
import { tempDir } from '../helpers/temp.js';

/**
 * Real processes, real SIGKILL: `rlm run` is killed at random moments — some timed to the instant before a
 * group COMMIT through a failpoint beacon, some by a failpoint that kills inside the commit path — and resumed
 * each time. The run must end with the exact result and every node done exactly once.
 */
describe('rlm run survives kill -9', () => {
  it('a 111,111-node tree killed 22 times ends with the exact result and every node done once', async () => {
    const tmp = tempDir();
    const random = seeded(0xc0ffee);
    const runId = 'crash-tree';
    const args = ['run', 'examples/tree.ts', '--input', '{"fanout":10,"depth":5}', '--run', runId, '--store', tmp.url];
    let kills = 0;
    let midCommit = 0;
    try {
      for (let round = 0; round < 22; round++) {
        const mode = round % 3;
        if (mode === 2) {
          // A failpoint kills the process inside the commit path: after the writes, before COMMIT, or after it.
          const point = ['commit.beforeCommit', 'commit.afterCommit', 'commit.beforeBegin'][Math.floor(random() * 3)];
          const { done } = startCli(args, { RLM_FAILPOINTS: `${point}=kill@${1 + Math.floor(random() * 20)}` });
          const result = await done;
          if (result.signal === 'SIGKILL') {
            kills++;
            if (point === 'commit.beforeCommit') midCommit++;
          }
          continue;
        }
        // Beacons report every commit; kill a few commits in, 0–2 ms after a beacon (often inside COMMIT).
        const { child, done } = startCli(args, { RLM_FAILPOINTS: 'commit.beforeCommit=beacon' });
        const target = 1 + Math.floor(random() * 25);
        const delay = mode === 0 ? 0 : Math.floor(random() * 3);
        child.on('message', (message: { fp?: string; n?: number }) => {
          if (message.fp === 'commit.beforeCommit' && message.n === target) {
            if (delay === 0) child.kill('SIGKILL');
            else setTimeout(() => child.kill('SIGKILL'), delay);
          }
        });
        const result = await done;
        if (result.signal === 'SIGKILL') {
          kills++;
          midCommit++;
        } else {
          expect(result.code, result.stderr).toBe(0);
        }
      }
      const final = await startCli(args).done;
      expect(final.code, final.stderr).toBe(0);
      expect(final.stdout.trim()).toBe('111111');
      expect(kills).toBeGreaterThanOrEqual(20);
      expect(midCommit).toBeGreaterThanOrEqual(5);
      const audit = auditSqlite(tmp.db, runId);
      expect(audit.integrity).toEqual(['ok']);
      expect(audit.states).toEqual({ done: 111_111 });
      expect(audit.duplicates).toBe(0);
      expect(audit.counters).toMatchObject({ n_pending: 0, n_running: 0, n_waiting: 0, n_done: 111_111, n_dead: 0, state: 'completed', result: '111111' });
    } finally {
      tmp.cleanup();
    }
  }, 600_000);
});
