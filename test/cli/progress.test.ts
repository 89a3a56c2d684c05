import { execFileSync, spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ProgressBar } from '../../src/cli/progress.js';
import type { RunRecord, StateCounts } from '../../src/store/store.js';
import { BIN, ROOT, runCli, startCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';

/** `script` (util-linux) gives the command a pseudo-terminal, so rlm draws its progress line as on a person's screen. */
const SCRIPT = execFileSync('sh', ['-c', 'command -v script'], { encoding: 'utf8' }).trim();

function quote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Runs `rlm …` on a pseudo-terminal; resolves with everything it wrote there (stdout and stderr together). */
function runOnTty(args: string[]): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, BIN, ...args].map(quote).join(' ');
  const env: Record<string, string | undefined> = { ...process.env, RLM_LOG_LEVEL: 'warn', COLUMNS: '400' };
  delete env.RLM_NO_PROGRESS;
  const child = spawn(SCRIPT, ['-qfec', command, '/dev/null'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

/** The progress lines as drawn: each redraw starts with a carriage return and ends by clearing the rest of the line. */
function progressLines(output: string): string[] {
  return output
    .split(/\r|\n/)
    .map((line) => line.replace(/\u001b\[K/g, '').trim())
    .filter((line) => line.includes(' | dlq '));
}

function percents(lines: string[]): number[] {
  return lines.map((line) => Number(/(\d+\.\d)% of /.exec(line)?.[1] ?? Number.NaN));
}

describe('rlm run: the progress line on a terminal', () => {
  it('shows no percentage when the size of the work is unknown: done, frontier by state, rates, elapsed, dlq', async () => {
    const tmp = tempDir();
    try {
      const out = await runOnTty(['run', 'test/fixtures/slow-tree.ts', '--input', '{"fanout":4,"depth":4}', '--run', 'unknown', '--store', tmp.url]);
      expect(out.code, out.output).toBe(0);
      const lines = progressLines(out.output);
      expect(lines.length, out.output).toBeGreaterThanOrEqual(2);
      for (const line of lines) {
        expect(line).not.toMatch(/%/);
        expect(line).toMatch(/^done [\d,]+ \| dlq 0 \| (…|[\d,]+)\/s \(avg (…|[\d,]+)\) \| elapsed \d+s \| frontier [\d,]+/);
      }
      expect(lines.at(-1)).toMatch(/^done 341 \| dlq 0 \|/);
      expect(lines.some((line) => /frontier \d+ (steady|growing|shrinking)? ?\(\d+ (pending|running)/.test(line))).toBe(true);
    } finally {
      tmp.cleanup();
    }
  });

  it('shows a percentage of the task’s estimate that rises from below 10% to 100%, with an ETA', async () => {
    const tmp = tempDir();
    try {
      const out = await runOnTty(['run', 'test/fixtures/estimated-tree.ts', '--input', '{"fanout":4,"depth":5}', '--run', 'known', '--store', tmp.url]);
      expect(out.code, out.output).toBe(0);
      const lines = progressLines(out.output);
      const seen = percents(lines);
      expect(seen.every((p) => Number.isFinite(p)), lines.join('\n')).toBe(true);
      expect(seen[0]).toBeLessThan(10);
      expect(seen.at(-1)).toBe(100);
      for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThanOrEqual(seen[i - 1] as number);
      expect(seen.filter((p) => p > 0 && p < 100).length, lines.join('\n')).toBeGreaterThanOrEqual(1);
      expect(lines.at(-1)).toContain('100.0% of 1,365 | done 1,365');
      expect(lines.some((line) => /% of 1,365 \| ETA (\d|…)/.test(line))).toBe(true);
      const status = JSON.parse((await runCli(['status', 'known', '--json', '--store', tmp.url])).stdout) as Record<string, unknown>;
      expect(status).toMatchObject({ estimate: 1365, percent: 100, etaSeconds: null, state: 'completed' });
    } finally {
      tmp.cleanup();
    }
  });

  it('a resume says what it resumes, and its rates count only its own steps', async () => {
    const tmp = tempDir();
    const args = ['run', 'test/fixtures/estimated-tree.ts', '--store', tmp.url, '--run', 'again'];
    try {
      const first = startCli([...args, '--input', '{"fanout":4,"depth":6,"sleepMs":5}'], { RLM_NO_PROGRESS: '1' });
      // Stop the first process once a good part of the run is done, so the resume has history to describe.
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const status = await runCli(['status', 'again', '--json', '--store', tmp.url]);
        if (status.code === 0 && (JSON.parse(status.stdout) as { counts: StateCounts }).counts.done >= 300) break;
      }
      first.child.kill('SIGTERM');
      expect((await first.done).code).toBe(143);
      const before = JSON.parse((await runCli(['status', 'again', '--json', '--store', tmp.url])).stdout) as { counts: StateCounts; nodes: number };

      const out = await runOnTty(args);
      expect(out.code, out.output).toBe(0);
      expect(out.output).toMatch(/resuming run again \(estimated-tree v1, running, started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, \d+s ago; last written \d+s ago\)/);
      expect(out.output).toContain(`${before.counts.done.toLocaleString('en-US')} done, ${before.counts.pending.toLocaleString('en-US')} pending`);
      expect(out.output).toMatch(/last worker: \S+:\d+:\w+ \(joined \d+s ago, stopped, last heartbeat \d+s ago\)/);
      const lines = progressLines(out.output);
      // The first line is drawn before this process finished anything: no rate, the old done count as it was.
      expect(lines[0]).toContain(`done ${before.counts.done.toLocaleString('en-US')} | dlq 0 | …/s (avg …)`);
      const rates = lines.map((line) => Number(/\(avg ([\d,]+)\)/.exec(line)?.[1]?.replace(/,/g, '') ?? 0));
      // Its average never counts the nodes done before it: at most the nodes it did itself over its own time.
      const total = 5461;
      for (const rate of rates) expect(rate).toBeLessThan(total - before.counts.done + 1);
    } finally {
      tmp.cleanup();
    }
  });
});

describe('rlm run: resuming after a crash', () => {
  it('names the worker that was killed as crashed, and the nodes it left running', async () => {
    const tmp = tempDir();
    const args = ['run', 'test/fixtures/estimated-tree.ts', '--store', tmp.url, '--run', 'crashed'];
    try {
      const first = startCli([...args, '--input', '{"fanout":4,"depth":6,"sleepMs":5}'], { RLM_NO_PROGRESS: '1' });
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const status = await runCli(['status', 'crashed', '--json', '--store', tmp.url]);
        if (status.code === 0 && (JSON.parse(status.stdout) as { counts: StateCounts }).counts.done >= 100) break;
      }
      first.child.kill('SIGKILL');
      await first.done;
      const out = await runCli(args, { RLM_NO_PROGRESS: '1' });
      expect(out.code, out.stderr).toBe(0);
      expect(out.stderr).toMatch(new RegExp(`last worker: \\S+:${first.child.pid}:\\w+ \\(joined \\d+s ago, crashed \\(its process is gone\\), last heartbeat \\d+s ago\\)`));
      expect(out.stderr).toMatch(/[\d,]+ node\(s\) were left running by a worker that stopped or crashed: they are taken back and run again\./);
      expect(out.stdout.trim()).toBe('5461');
    } finally {
      tmp.cleanup();
    }
  });
});

describe('ProgressBar', () => {
  const counts = (done: number, extra: Partial<StateCounts> = {}): StateCounts => ({ pending: 0, running: 0, waiting: 0, done, dead: 0, parked: 0, ...extra });
  const run = (c: StateCounts, estimate: number | null, state: RunRecord['state'] = 'running') => ({ state, counts: c, estimate }) as RunRecord;

  it('counts the rate from the baseline of a resumed run, not from zero', () => {
    const bar = new ProgressBar({ baseline: 500_000, startedAt: 0 });
    expect(bar.line(run(counts(500_000, { pending: 40 }), null), 0)).toBe('done 500,000 | dlq 0 | …/s (avg …) | elapsed 0s | frontier 40 (40 pending)');
    expect(bar.line(run(counts(500_500, { running: 40 }), null), 1_000)).toBe('done 500,500 | dlq 0 | 500/s (avg 500) | elapsed 1s | frontier 40 (40 running)');
  });

  it('gives the frontier a trend over the last seconds and an ETA from the recent rate', () => {
    const bar = new ProgressBar({ startedAt: 0 });
    let line = '';
    for (let t = 0; t <= 6_000; t += 500) line = bar.line(run(counts(t, { waiting: Math.max(0, 600 - t / 10) }), 12_000), t);
    expect(line).toBe('██████░░░░░░  50.0% of 12,000 | ETA 6s | done 6,000 | dlq 0 | 1,000/s (avg 1,000) | elapsed 6s | frontier 0 shrinking');
    expect(bar.line(run(counts(13_000), 12_000), 7_000)).toContain('99.9% of 12,000 | past the estimate | done 13,000');
    expect(bar.line(run(counts(13_000), 12_000, 'completed'), 7_000)).toMatch(/^████████████ 100\.0% of 12,000 \| done 13,000/);
  });
});
