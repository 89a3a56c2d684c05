import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startCli } from '../helpers/cli.js';
import { seeded } from '../helpers/random.js';
import { auditSqlite } from '../helpers/store-check.js';
import { tempDir } from '../helpers/temp.js';

function expectedTotal(path: string, depth: number, fanout: number): { total: number; nodes: number } {
  let total = (path.length % 7) + 1;
  let nodes = 1;
  if (depth > 0) {
    for (let i = 0; i < fanout; i++) {
      const child = expectedTotal(`${path}/${i}`, depth - 1, fanout);
      total += child.total;
      nodes += child.nodes;
    }
  }
  return { total, nodes };
}

describe('effectively-once effects across kill -9', () => {
  it('credits an external ledger for 11,111 nodes once per idempotency key while the run is killed at random', async () => {
    const tmp = tempDir();
    const ledgerPath = join(tmp.dir, 'ledger.db');
    const random = seeded(0x1ed6e5);
    const input = { path: 'r', depth: 4, fanout: 10 };
    const expected = expectedTotal(input.path, input.depth, input.fanout);
    const args = ['run', 'test/fixtures/ledger.ts', '--input', JSON.stringify(input), '--run', 'ledger', '--store', tmp.url, '--concurrency', '64'];
    const env = { LEDGER_DB: ledgerPath, RLM_FAILPOINTS: 'effect.afterCall=beacon;commit.beforeCommit=beacon' };
    let kills = 0;
    let inEffectWindow = 0;
    try {
      for (let round = 0; round < 12; round++) {
        const { child, done } = startCli(args, env);
        // Half the kills land right after an effect's call, before its journal write: the one window the
        // idempotency key closes. The others land just before a group commit.
        const afterCall = round % 2 === 0;
        const target = 20 + Math.floor(random() * 800);
        child.on('message', (message: { fp?: string; n?: number }) => {
          if (message.fp === (afterCall ? 'effect.afterCall' : 'commit.beforeCommit') && message.n === (afterCall ? target : Math.ceil(target / 20))) {
            child.kill('SIGKILL');
          }
        });
        const result = await done;
        if (result.signal === 'SIGKILL') {
          kills++;
          if (afterCall) inEffectWindow++;
        } else {
          expect(result.code, result.stderr).toBe(0);
        }
      }
      const final = await startCli(args, { LEDGER_DB: ledgerPath }).done;
      expect(final.code, final.stderr).toBe(0);
      expect(Number(final.stdout.trim())).toBe(expected.total);
      expect(kills).toBeGreaterThanOrEqual(10);
      expect(inEffectWindow).toBeGreaterThanOrEqual(4);

      const ledger = new Database(ledgerPath, { readonly: true });
      const credits = ledger.prepare('SELECT count(*) AS n, sum(amount) AS total FROM credits').get() as { n: number; total: number };
      const calls = ledger.prepare('SELECT count(*) AS n FROM calls').get() as { n: number };
      ledger.close();
      // Every node credited exactly once by key; calls beyond that are the re-invocations the key absorbed.
      expect(credits.n).toBe(expected.nodes);
      expect(credits.total).toBe(expected.total);
      expect(calls.n).toBeGreaterThanOrEqual(expected.nodes);
      console.log(`ledger: ${expected.nodes} credits, ${calls.n} calls (${calls.n - expected.nodes} re-invocations under the same key), ${kills} kills`);

      const results = await startCli(['results', 'ledger', '--store', tmp.url]).done;
      const receipts = results.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { receipt: string }).receipt);
      expect(receipts).toHaveLength(expected.nodes);
      expect(new Set(receipts).size).toBe(expected.nodes);
      const audit = auditSqlite(tmp.db, 'ledger');
      expect(audit.states).toEqual({ done: expected.nodes });
      expect(audit.integrity).toEqual(['ok']);
    } finally {
      tmp.cleanup();
    }
  });
});
