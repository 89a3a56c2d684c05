/*
 * Cost budgets and handler gates across worker processes, on SQLite and PostgreSQL: 200 leaves of 1 unit each
 * under a budget of 100, worked by 4 processes, one of them killed with SIGKILL mid-run. The run pauses with
 * exactly 100 units charged, never more; raising the budget and approving completes it with exactly 200, and the
 * leaf that parked itself runs once a person approves it.
 */
import { expect } from 'vitest';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';
import { runCli, startCli } from '../helpers/cli.js';
import { onBothStores } from '../helpers/both-stores.js';

const LEAVES = 200;

async function budgetRun(storeUrl: string): Promise<void> {
  const runId = 'budgeted';
  const common = ['--store', storeUrl, '--lease-ms', '2000', '--heartbeat-ms', '200'];
  const module = 'test/fixtures/budgeted.ts';
  const store: Store = await openStore(storeUrl);
  const first = startCli(['run', module, '--run', runId, '--input', JSON.stringify({ leaves: LEAVES }), '--budget-cost', '100', ...common]);
  await expect.poll(async () => (await store.getRun(runId))?.state, { timeout: 30_000, interval: 20 }).toBe('running');
  const workers = [1, 2, 3].map(() => startCli(['worker', module, ...common]));
  try {
    // One worker dies with reservations made and steps in flight; another takes its place.
    await expect.poll(async () => (await store.getRun(runId))?.costSpent ?? 0, { timeout: 30_000, interval: 5 }).toBeGreaterThanOrEqual(30);
    workers[0]?.child.kill('SIGKILL');
    expect((await workers[0]?.done)?.signal).toBe('SIGKILL');
    workers.push(startCli(['worker', module, ...common]));

    const paused = await first.done;
    expect(paused.code, paused.stderr).toBe(4);
    const run = await store.getRun(runId);
    expect(run).toMatchObject({ state: 'paused', costBudget: 100, costSpent: 100 });
    const parked = await store.listNodes(runId, { state: 'parked' });
    expect(parked.some((node) => node.parkReason?.startsWith('cost budget: reserving 1 would take the run past its budget of 100'))).toBe(true);
    expect(parked.some((node) => node.parkReason === 'gate: leaf 0 looks odd: a person checks it')).toBe(true);
    // A worker still connected to the paused run charges nothing more.
    expect((await store.getRun(runId))?.costSpent).toBe(100);

    const status = await runCli(['status', runId, ...common.slice(0, 2)]);
    expect(status.stdout).toContain('cost: 100 charged of a budget of 100');
    expect((await runCli(['budget', runId, '--cost', String(LEAVES), ...common.slice(0, 2)])).code).toBe(0);
    expect((await runCli(['approve', runId, '--all', ...common.slice(0, 2)])).code).toBe(0);
    const finished = await runCli(['run', module, '--run', runId, ...common]);
    expect(finished.code, `${finished.stderr}\n${JSON.stringify(await store.getRun(runId))}\n${JSON.stringify((await store.listNodes(runId, { state: "parked" })).map((n) => n.parkReason))}`).toBe(0);
    expect(finished.stdout.trim()).toBe(String(LEAVES));
  } finally {
    for (const worker of workers) worker.child.kill('SIGTERM');
    await Promise.all(workers.map((worker) => worker.done));
  }
  try {
    const run = await store.getRun(runId);
    expect(run).toMatchObject({ state: 'completed', costSpent: LEAVES });
    // Every leaf was charged exactly once, whatever the kill re-ran, and no attempt was charged for a park.
    expect(await store.subtreeCost(run?.rootId as number)).toBe(LEAVES);
    const nodes = await store.listNodes(runId, {});
    expect(nodes.flatMap((node) => node.errors)).toEqual([]);
    const inspect = JSON.parse((await runCli(['inspect', runId, String(nodes.find((n) => n.depth === 1)?.id), '--json', '--store', storeUrl])).stdout) as { cost: number };
    expect(inspect.cost).toBe(1);
  } finally {
    await store.close();
  }
}

onBothStores('cost budgets and handler gates', 'pauses 4 processes at exactly the budget across a kill -9, and completes once raised and approved', budgetRun);
