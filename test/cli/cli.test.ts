import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';

describe('rlm run: failure modes end as specified (real processes)', () => {
  it('a step that calls process.exit is counted as a crash and ends in the DLQ; siblings finish (exit 3)', async () => {
    const tmp = tempDir();
    const args = ['run', 'test/fixtures/exits.ts', '--input', '{"depth":2}', '--run', 'exits', '--store', tmp.url];
    try {
      let exits = 0;
      let last = await runCli(args);
      while (last.code === 1 && exits < 10) {
        expect(last.stderr).toContain('exited while the run was in progress');
        exits++;
        last = await runCli(args);
      }
      expect(last.code, last.stderr).toBe(3);
      const dlq = JSON.parse((await runCli(['dlq', 'list', 'exits', '--json', '--store', tmp.url])).stdout) as { key: string; attempts: number }[];
      expect(dlq).toEqual([expect.objectContaining({ key: 'root/1', attempts: 3 })]);
      const status = JSON.parse((await runCli(['status', 'exits', '--json', '--store', tmp.url])).stdout) as { counts: Record<string, number> };
      expect(status.counts).toMatchObject({ done: 9, dead: 1, pending: 0, running: 0 });
    } finally {
      tmp.cleanup();
    }
  });

  it('a step that never resolves fails at its deadline, is dead-lettered after maxAttempts, and its siblings finish', async () => {
    const tmp = tempDir();
    try {
      const out = await runCli(['run', 'test/fixtures/hangs.ts', '--input', '{"n":0}', '--run', 'hangs', '--store', tmp.url]);
      expect(out.code, out.stderr).toBe(3);
      expect(out.stderr).toContain('1 node(s) in the dead-letter queue');
      const dlq = JSON.parse((await runCli(['dlq', 'list', 'hangs', '--json', '--store', tmp.url])).stdout) as { attempts: number; error: string }[];
      expect(dlq).toHaveLength(1);
      expect(dlq[0]?.attempts).toBe(2);
      expect(dlq[0]?.error).toContain('deadline');
    } finally {
      tmp.cleanup();
    }
  });

  it('a 200,000-child fan-out past a bound of 1,000 parks and pauses (exit 4); approved, it completes', async () => {
    const tmp = tempDir();
    const args = ['run', 'test/fixtures/fanout.ts', '--input', '{"root":true}', '--run', 'fan', '--store', tmp.url];
    try {
      const paused = await runCli(args);
      expect(paused.code, paused.stderr).toBe(4);
      expect(paused.stderr).toContain('fan-out alarm');
      const status = JSON.parse((await runCli(['status', 'fan', '--json', '--store', tmp.url])).stdout) as { state: string; counts: Record<string, number> };
      expect(status.state).toBe('paused');
      expect(status.counts).toMatchObject({ parked: 1, done: 0, pending: 0 });
      const approve = await runCli(['approve', 'fan', '--all', '--store', tmp.url]);
      expect(approve.stdout).toContain('1 parked node(s) approved');
      const done = await runCli(args);
      expect(done.code, done.stderr).toBe(0);
      const after = JSON.parse((await runCli(['status', 'fan', '--json', '--store', tmp.url])).stdout) as { state: string; counts: Record<string, number> };
      expect(after).toMatchObject({ state: 'completed', counts: { done: 200_001, parked: 0, dead: 0 } });
    } finally {
      tmp.cleanup();
    }
  });

  it('a rejected fan-out goes to the DLQ', async () => {
    const tmp = tempDir();
    const args = ['run', 'test/fixtures/fanout.ts', '--input', '{"root":true}', '--run', 'fan', '--store', tmp.url];
    try {
      expect((await runCli(args)).code).toBe(4);
      expect((await runCli(['reject', 'fan', '--all', '--store', tmp.url])).code).toBe(0);
      const status = JSON.parse((await runCli(['status', 'fan', '--json', '--store', tmp.url])).stdout) as { state: string; counts: Record<string, number> };
      expect(status).toMatchObject({ state: 'failed', counts: { dead: 1, parked: 0 } });
    } finally {
      tmp.cleanup();
    }
  });
});

describe('bad input gets one clear line and exit 2, and loses nothing', () => {
  const cases: Array<[string, string[], string, Record<string, string>?]> = [
    ['a missing module', ['run', 'test/fixtures/nope.ts', '--input', '{}'], 'No task module at'],
    ['a syntax error', ['run', 'test/fixtures/bad/syntax.mjs', '--input', '{}'], 'failed to load'],
    ['no default export', ['run', 'test/fixtures/bad/no-default.mjs', '--input', '{}'], 'has no default export'],
    ['a default export that is not a task', ['run', 'test/fixtures/bad/not-a-task.mjs', '--input', '{}'], 'is not a valid task'],
    ['a task without run', ['run', 'test/fixtures/bad/no-run.mjs', '--input', '{}'], '`run` must be a function'],
    ['a module that exits while loading', ['run', 'test/fixtures/bad/exits-on-import.mjs', '--input', '{}'], 'called process.exit'],
    ['a module that never finishes loading', ['run', 'test/fixtures/bad/never-loads.mjs', '--input', '{}'], 'did not finish loading', { RLM_IMPORT_TIMEOUT_MS: '300' }],
    ['a module importing a missing package', ['run', 'test/fixtures/bad/missing-import.mjs', '--input', '{}'], 'failed to load'],
    ['malformed --input', ['run', 'test/fixtures/plain.mjs', '--input', '{'], '--input is not valid JSON'],
    ['--concurrency 0', ['run', 'test/fixtures/plain.mjs', '--input', '{}', '--concurrency', '0'], 'Expected --concurrency to be an integer >= 1'],
    ['--concurrency NaN', ['run', 'test/fixtures/plain.mjs', '--input', '{}', '--concurrency', 'many'], 'Expected --concurrency to be an integer >= 1'],
    ['neither --input nor --run', ['run', 'test/fixtures/plain.mjs'], 'Pass --input JSON to start a run'],
    ['an unknown store URL', ['run', 'test/fixtures/plain.mjs', '--input', '{}', '--store', 'mysql://x'], 'Unknown store URL'],
  ];
  for (const [name, args, message, env] of cases) {
    it(name, async () => {
      const tmp = tempDir();
      try {
        const withStore = args.includes('--store') ? args : [...args, '--store', tmp.url];
        const out = await runCli(withStore, env);
        expect(out.code, out.stderr).toBe(2);
        expect(out.stderr).toContain(message);
        expect(out.stderr).not.toMatch(/\n\s+at /);
      } finally {
        tmp.cleanup();
      }
    });
  }

  it('--version prints the package version and exits 0', async () => {
    const out = await runCli(['--version']);
    expect(out.code).toBe(0);
    expect(out.stdout.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
  });

  it('an unknown run, a store path that is a directory, and a file that is not a store', async () => {
    const tmp = tempDir();
    try {
      await runCli(['run', 'test/fixtures/plain.mjs', '--input', '{"n":1}', '--run', 'ok', '--store', tmp.url]);
      const unknown = await runCli(['status', 'nope', '--store', tmp.url]);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain('No run nope');
      const dir = await runCli(['status', '--store', `sqlite:${tmp.dir}`]);
      expect(dir.code).toBe(2);
      expect(dir.stderr).toContain('is a directory');
      const text = join(tmp.dir, 'notes.db');
      writeFileSync(text, 'these are my notes, not a database\n'.repeat(200));
      const corrupt = await runCli(['run', 'test/fixtures/plain.mjs', '--input', '{}', '--store', `sqlite:${text}`]);
      expect(corrupt.code).toBe(2);
      expect(corrupt.stderr).toContain('is damaged or is not an rlm store');
      const same = await runCli(['run', 'test/fixtures/plain.mjs', '--input', '{"n":1}', '--run', 'ok', '--store', tmp.url]);
      expect(same.code).toBe(0);
      expect(same.stdout.trim()).toBe('1');
      const other = await runCli(['run', 'test/fixtures/plain.mjs', '--input', '{"n":2}', '--run', 'ok', '--store', tmp.url]);
      expect(other.code).toBe(2);
      expect(other.stderr).toContain('exists with another input');
    } finally {
      tmp.cleanup();
    }
  });

  it('status --json has the documented shape', async () => {
    const tmp = tempDir();
    try {
      await runCli(['run', 'test/fixtures/plain.mjs', '--input', '{"n":3}', '--run', 'shape', '--store', tmp.url]);
      const status = JSON.parse((await runCli(['status', 'shape', '--json', '--store', tmp.url])).stdout) as Record<string, unknown>;
      expect(status).toMatchObject({
        runId: 'shape',
        state: 'completed',
        counts: { pending: 0, running: 0, waiting: 0, done: 4, dead: 0, parked: 0 },
        result: 3,
      });
    } finally {
      tmp.cleanup();
    }
  });
});
