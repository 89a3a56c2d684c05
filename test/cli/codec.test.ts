import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';

describe('the msgpack codec on the command line (real processes)', () => {
  it('prints msgpack results and records as tagged JSON in run, results, status and inspect', async () => {
    const tmp = tempDir();
    const store = ['--store', tmp.url];
    try {
      const run = await runCli(['run', 'test/fixtures/msgpack-tree.ts', '--input', '{"depth":1}', '--run', 'mp', ...store]);
      expect(run.code, run.stderr).toBe(0);
      const result = {
        total: { $bigint: '23' },
        when: { $date: '2024-05-01T00:00:00.000Z' },
        parts: {
          $map: [
            [{ $bigint: '11' }, { $bytes: Buffer.from([11]).toString('base64') }],
            [{ $bigint: '12' }, { $bytes: Buffer.from([12]).toString('base64') }],
          ],
        },
        seen: { $set: [11, 12] },
        none: { $undefined: true },
        ratio: { $number: 'NaN' },
        floats: { $Float64Array: [1.5] },
        pattern: { $regexp: '/x+/g' },
      };
      expect(JSON.parse(run.stdout)).toEqual(result);
      const results = await runCli(['results', 'mp', ...store]);
      expect(results.code, results.stderr).toBe(0);
      expect(results.stdout.trim().split('\n').map((line) => JSON.parse(line))).toEqual(
        // Depth-first: the last child runs first.
        [1, 12, 11].map((n) => ({ n: { $bigint: String(n) }, at: { $date: new Date(Date.UTC(2024, 0, n + 1)).toISOString() }, tags: { $set: ['x'] }, missing: { $undefined: true } })),
      );
      const status = JSON.parse((await runCli(['status', 'mp', '--json', ...store])).stdout) as { state: string; result: unknown };
      expect(status).toMatchObject({ state: 'completed', result });
      const inspect = JSON.parse((await runCli(['inspect', 'mp', '1', '--json', ...store])).stdout) as { input: unknown; result: unknown };
      expect(inspect).toMatchObject({ input: { depth: 1 }, result });
      // Resuming with the same --input finds the stored (binary) input equal.
      const again = await runCli(['run', 'test/fixtures/msgpack-tree.ts', '--input', '{"depth":1}', '--run', 'mp', ...store]);
      expect(again.code, again.stderr).toBe(0);
      expect(JSON.parse(again.stdout)).toEqual(result);
    } finally {
      tmp.cleanup();
    }
  });
});
