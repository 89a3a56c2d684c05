import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../helpers/cli.js';
import { binomial, LATTICE_MOD } from '../helpers/lattice.js';
import { auditSqlite } from '../helpers/store-check.js';
import { tempDir } from '../helpers/temp.js';


/** Monotone paths through an n × m lattice that avoid node (bi, bj), mod 1,000,003. */
function pathsAvoiding(n: number, m: number, bi: number, bj: number): string {
  const all = binomial(n + m - 2, n - 1);
  const through = binomial(bi + bj, bi) * binomial(n - 1 - bi + (m - 1 - bj), n - 1 - bi);
  return String((((all - through) % LATTICE_MOD) + LATTICE_MOD) % LATTICE_MOD);
}

/**
 * A memoised DAG with a dependency cycle, killed with SIGKILL inside its commits and resumed each time: the cycle
 * is found once the run has nothing else to do, after the kills, and the run still ends with the exact result.
 */
describe('a cycle in a DAG across kill -9', () => {
  it('finds the node that closes the cycle after kills and resumes, and ends with the exact result', async () => {
    const tmp = tempDir();
    const runId = 'cyclic-dag';
    const input = { n: 60, m: 60, back: [40, 30] };
    const args = ['run', 'test/fixtures/cyclic-lattice.ts', '--input', JSON.stringify(input), '--run', runId, '--store', tmp.url, '--commit-every', '200'];
    try {
      let kills = 0;
      for (const at of [3, 7, 12]) {
        const { done } = startCli(args, { RLM_FAILPOINTS: `commit.beforeCommit=kill@${at}` });
        const result = await done;
        if (result.signal === 'SIGKILL') kills++;
      }
      expect(kills).toBeGreaterThanOrEqual(2);
      const final = await runCli(args);
      // Completed, with one node in the dead-letter queue: exit 3.
      expect(final.code, final.stderr).toBe(3);
      expect(final.stdout.trim()).toBe(pathsAvoiding(60, 60, 40, 30));
      const dlq = await runCli(['dlq', 'list', runId, '--json', '--store', tmp.url]);
      const dead = JSON.parse(dlq.stdout) as { key: string; error: string }[];
      expect(dead.map((node) => node.key)).toEqual(['40,30']);
      expect(dead[0]?.error).toMatch(/Dependency cycle: .*"0,0" → .* → "40,30" → "0,0"/);
      const audit = auditSqlite(tmp.db, runId);
      expect(audit.integrity).toEqual(['ok']);
      expect(audit.states).toEqual({ done: 3599, dead: 1 });
      expect(audit.duplicates).toBe(0);
    } finally {
      tmp.cleanup();
    }
  }, 300_000);
});
