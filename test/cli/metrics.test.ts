import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../helpers/cli.js';
import { describePostgres, pgQuery } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

/** A port on 127.0.0.1 that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

type Samples = Map<string, number>;

/** Prometheus text to `name{labels}` → value (labels as printed). */
function parse(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

function sum(samples: Samples, prefix: string): number {
  let total = 0;
  for (const [name, value] of samples) if (name === prefix || name.startsWith(`${prefix}{`)) total += value;
  return total;
}

/**
 * Scrapes `/metrics` until `ready` holds for what it serves (the run moves on its own events; each scrape is one
 * answer). Fails with the last scrape when the run does not get there.
 */
async function scrapeUntil(port: number, what: string, ready: (s: Samples) => boolean, stderr: () => string): Promise<Samples> {
  let last = '';
  for (let i = 0; i < 1_500; i++) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      last = await response.text();
      if (response.ok && ready(parse(last))) return parse(last);
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`/metrics never showed ${what}. Last scrape:\n${last}\nstderr:\n${stderr()}`);
}

const gauge = (run: string, state: string) => `rlm_frontier_nodes{run="${run}",state="${state}"}`;

/**
 * The gated fixture: a root held at its gate, 12 leaves of which 3 die at once; the rest finish in two waves as
 * the test opens their gates. The frontier rises from 1 (the root) to 10 and falls to 5, then 0.
 */
async function scenario(url: string, extra: string[]): Promise<void> {
  const tmp = tempDir();
  const port = await freePort();
  const run = 'gauges';
  const open = (gate: string) => writeFileSync(join(tmp.dir, gate), '');
  const cli = startCli(
    ['run', 'test/fixtures/gated.ts', '--input', '{"leaves":12,"dead":3}', '--run', run, '--store', url, '--metrics-port', String(port), '--concurrency', '64', ...extra],
    { RLM_TEST_GATE: tmp.dir },
  );
  try {
    const unfinished = (s: Samples) => (s.get(gauge(run, 'pending')) ?? 0) + (s.get(gauge(run, 'running')) ?? 0) + (s.get(gauge(run, 'waiting')) ?? 0);
    const before = await scrapeUntil(port, 'the root running', (s) => s.get(gauge(run, 'running')) === 1, cli.stderr);
    expect(unfinished(before)).toBe(1);
    expect(before.get(`rlm_dlq_nodes{run="${run}"}`)).toBe(0);
    open('root');
    // Rise: the root waits on 12 children; 3 of them die at once.
    const risen = await scrapeUntil(port, '9 leaves running, 3 dead', (s) => s.get(gauge(run, 'running')) === 9 && s.get(`rlm_dlq_nodes{run="${run}"}`) === 3, cli.stderr);
    expect(unfinished(risen)).toBe(10);
    expect(risen.get(gauge(run, 'waiting'))).toBe(1);
    const dlq = JSON.parse((await runCli(['dlq', 'list', run, '--json', '--store', url])).stdout) as unknown[];
    expect(risen.get(`rlm_dlq_nodes{run="${run}"}`)).toBe(dlq.length);
    expect(risen.get('rlm_steps_total{outcome="wait"}')).toBe(1);
    expect(risen.get('rlm_steps_total{outcome="dead"}')).toBe(3);
    const checkpoints = risen.get('rlm_checkpoint_duration_seconds_count') ?? 0;
    expect(checkpoints).toBeGreaterThanOrEqual(1);
    // Fall: the even leaves past the dead ones (4, 6, 8, 10) finish.
    open('a');
    const fallen = await scrapeUntil(port, '5 leaves running', (s) => s.get(gauge(run, 'running')) === 5, cli.stderr);
    expect(unfinished(fallen)).toBe(6);
    expect(fallen.get(gauge(run, 'done'))).toBe(4);
    expect(fallen.get('rlm_steps_total{outcome="done"}')).toBe(4);
    expect(sum(fallen, 'rlm_step_duration_seconds_count')).toBe(8);
    expect(fallen.get('rlm_checkpoint_duration_seconds_count')).toBeGreaterThan(checkpoints);
    expect(fallen.get('rlm_step_errors_total{code="NON_RETRYABLE"}')).toBe(3);
    open('b');
    const result = await cli.done;
    expect(result.code, result.stderr).toBe(3);
    expect(result.stdout.trim()).toBe('9');
  } finally {
    cli.child.kill('SIGKILL');
    tmp.cleanup();
  }
}

describe('rlm run --metrics-port: /metrics moves with the run', () => {
  it('one process: the frontier gauge rises and falls, the DLQ gauge is `rlm dlq list`, steps and checkpoints count', async () => {
    const tmp = tempDir();
    try {
      await scenario(tmp.url, []);
    } finally {
      tmp.cleanup();
    }
  });

  it('--workers 2: the supervisor serves the run gauges and the sum of its workers counters', async () => {
    const tmp = tempDir();
    try {
      await scenario(tmp.url, ['--workers', '2']);
    } finally {
      tmp.cleanup();
    }
  });
});

describe('rlm worker --metrics-port', () => {
  it('serves the gauges of every live run of its task, read from the store, and drops a run once it ended', async () => {
    const tmp = tempDir();
    const port = await freePort();
    const open = (gate: string) => writeFileSync(join(tmp.dir, gate), '');
    const run = startCli(['run', 'test/fixtures/gated.ts', '--input', '{"leaves":2,"dead":1}', '--run', 'watched', '--store', tmp.url], { RLM_TEST_GATE: tmp.dir });
    let worker: ReturnType<typeof startCli> | undefined;
    try {
      // The run's own process holds the root at its gate; the worker joins and serves what the store says.
      await scrapeUntilRun(tmp.db);
      worker = startCli(['worker', 'test/fixtures/gated.ts', '--store', tmp.url, '--metrics-port', String(port)], { RLM_TEST_GATE: tmp.dir });
      const stderr = () => `${run.stderr()}${worker?.stderr() ?? ''}`;
      await scrapeUntil(port, 'the run, root running', (s) => s.get(gauge('watched', 'running')) === 1 && s.get(gauge('watched', 'pending')) === 0, stderr);
      open('root');
      open('a');
      open('b');
      const done = await run.done;
      expect(done.code, done.stderr).toBe(3);
      await scrapeUntil(port, 'no gauge of the ended run', (s) => ![...s.keys()].some((name) => name.includes('run="watched"')), stderr);
      worker.child.kill('SIGTERM');
      expect((await worker.done).code).toBe(143);
    } finally {
      run.child.kill('SIGKILL');
      worker?.child.kill('SIGKILL');
      tmp.cleanup();
    }
  });
});

/** Resolves once the SQLite file exists with its run (the run process created it). */
async function scrapeUntilRun(db: string): Promise<void> {
  for (let i = 0; i < 1_500; i++) {
    if (existsSync(db) && (await runCli(['status', 'watched', '--json', '--store', `sqlite:${db}`])).code === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the run never appeared in the store');
}

describePostgres('rlm run --metrics-port on PostgreSQL', (url) => {
  it('--workers 2: gauges from the shared store, counters summed over the workers', async () => {
    const schema = `rlm_metrics_${process.pid}`;
    await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await scenario(`${url}${url.includes('?') ? '&' : '?'}schema=${schema}`, ['--workers', '2']);
  });
});
