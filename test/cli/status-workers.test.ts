import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import tree from '../../examples/tree.js';
import { openEngine } from '../../src/index.js';
import { openStore } from '../../src/store/open.js';
import { runCli, startCli } from '../helpers/cli.js';
import { describePostgres, pgQuery } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

interface WorkerRow {
  id: string;
  state: string;
  task: string;
  pid: number;
  holds: number;
  leases: { runId: string; nodes: number }[];
}

/** Seven runs of the tree, created one after another (newest last): r4 and r6 paused. */
async function sevenRuns(url: string): Promise<void> {
  const store = await openStore(url);
  const engine = await openEngine({ store });
  try {
    for (let i = 0; i < 7; i++) {
      await engine.create(tree, { fanout: 2, depth: 1 }, { runId: `r${i}` });
      // created_at has millisecond resolution: keep the order unambiguous.
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
    await store.setRunState('r4', 'paused', { reason: 'by hand' });
    await store.setRunState('r6', 'paused', { reason: 'by hand' });
  } finally {
    await engine.close();
    await store.close();
  }
}

function ids(stdout: string): string[] {
  return (JSON.parse(stdout) as { runId: string }[]).map((run) => run.runId);
}

async function statusPaging(url: string): Promise<void> {
  await sevenRuns(url);
  const all = await runCli(['status', '--json', '--store', url]);
  expect(ids(all.stdout)).toEqual(['r6', 'r5', 'r4', 'r3', 'r2', 'r1', 'r0']);
  expect(all.stderr).not.toContain('next page');

  const first = await runCli(['status', '--limit', '3', '--store', url]);
  expect(first.code, first.stderr).toBe(0);
  expect(first.stdout.trim().split('\n').map((line) => line.split(' ')[0])).toEqual(['r6', 'r5', 'r4']);
  expect(first.stderr).toContain('Showing 1–3 of 7 run(s)');
  expect(first.stderr).toContain('rlm status --offset 3 --limit 3');

  const second = await runCli(['status', '--limit', '3', '--offset', '3', '--json', '--store', url]);
  expect(ids(second.stdout)).toEqual(['r3', 'r2', 'r1']);
  expect(second.stderr).toContain('Showing 4–6 of 7 run(s)');
  const last = await runCli(['status', '--limit', '3', '--offset', '6', '--json', '--store', url]);
  expect(ids(last.stdout)).toEqual(['r0']);
  expect(last.stderr).toBe('');

  const paused = await runCli(['status', '--state', 'paused', '--limit', '1', '--json', '--store', url]);
  expect(ids(paused.stdout)).toEqual(['r6']);
  expect(paused.stderr).toContain('Showing 1–1 of 2 paused run(s)');
  expect(paused.stderr).toContain('--state paused');
  const none = await runCli(['status', '--state', 'completed', '--store', url]);
  expect(none.stdout.trim()).toBe('No completed runs.');

  const bad = await runCli(['status', '--state', 'done', '--store', url]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('Expected --state to be one of running, paused, completed, failed, cancelled');
  const mixed = await runCli(['status', 'r0', '--limit', '2', '--store', url]);
  expect(mixed.code).toBe(2);
}

async function workersListing(url: string, extra: string[], workers: number): Promise<void> {
  const gates = tempDir();
  const run = startCli(['run', 'test/fixtures/gated.ts', '--input', '{"leaves":4,"dead":0}', '--run', 'held', '--store', url, ...extra], { RLM_TEST_GATE: gates.dir });
  try {
    const listing = async (...flags: string[]): Promise<WorkerRow[]> => {
      const out = await runCli(['workers', '--json', '--store', url, ...flags]);
      // A SQLite file the run has not created yet.
      return out.code === 0 ? (JSON.parse(out.stdout) as WorkerRow[]) : [];
    };
    let rows: WorkerRow[] = [];
    // The root is held at its gate: wait until its worker holds it (and every worker has joined).
    for (let i = 0; i < 100; i++) {
      rows = await listing();
      if (rows.length === workers && rows.some((row) => row.holds === 1)) break;
    }
    expect(rows).toHaveLength(workers);
    expect(rows.every((row) => row.state === 'alive' && row.task === 'gated')).toBe(true);
    const holder = rows.find((row) => row.holds === 1);
    expect(holder?.leases).toEqual([{ runId: 'held', nodes: 1 }]);
    expect(rows.filter((row) => row.holds === 0)).toHaveLength(workers - 1);

    const text = await runCli(['workers', '--store', url]);
    expect(text.stdout).toContain(`${holder?.id}  alive`);
    expect(text.stdout).toContain('holds 1 node(s): held 1');

    // Released: the leaves run, the run ends, its workers stop and hold nothing.
    writeFileSync(join(gates.dir, 'root'), '');
    writeFileSync(join(gates.dir, 'a'), '');
    writeFileSync(join(gates.dir, 'b'), '');
    const done = await run.done;
    expect(done.code, done.stderr).toBe(0);
    const after = await runCli(['workers', '--store', url]);
    expect(after.stdout.trim()).toBe('No live workers.');
    expect(after.stderr).toContain(`${workers} stopped or dead worker(s) not shown`);
    const stopped = await listing('--all');
    expect(stopped.map((row) => [row.state, row.holds])).toEqual(Array.from({ length: workers }, () => ['stopped', 0]));
  } finally {
    run.child.kill('SIGKILL');
    gates.cleanup();
  }
}

describe('rlm status and rlm workers on SQLite', () => {
  it('status pages the runs (--limit, --offset, --state) and says when more exist', async () => {
    const tmp = tempDir();
    try {
      await statusPaging(tmp.url);
    } finally {
      tmp.cleanup();
    }
  });

  it('workers lists the live worker and the node it holds, per run', async () => {
    const tmp = tempDir();
    try {
      const empty = await runCli(['workers', '--store', tmp.url]);
      expect(empty.code, empty.stderr).toBe(2);
      await workersListing(tmp.url, [], 1);
    } finally {
      tmp.cleanup();
    }
  });
});

describePostgres('rlm status and rlm workers on PostgreSQL', (url) => {
  const store = (name: string) => `${url}${url.includes('?') ? '&' : '?'}schema=${name}_${process.pid}`;

  it('status pages the runs (--limit, --offset, --state) and says when more exist', async () => {
    await pgQuery(url, `DROP SCHEMA IF EXISTS rlm_status_${process.pid} CASCADE`);
    await statusPaging(store('rlm_status'));
  });

  it('workers lists two worker processes and which of them holds the node', async () => {
    await pgQuery(url, `DROP SCHEMA IF EXISTS rlm_workers_${process.pid} CASCADE`);
    await workersListing(store('rlm_workers'), ['--workers', '2'], 2);
  });
});
