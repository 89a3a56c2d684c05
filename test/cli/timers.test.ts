/*
 * Durable timers across kill -9, on both stores: a run whose children wait on their not-before times and then
 * on their own RetryLater is killed while they wait, resumed by a new process, and ends with every child run
 * once, no earlier than its timers allowed, and no attempt charged.
 */
import { expect } from 'vitest';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';
import { runCli, startCli } from '../helpers/cli.js';
import { onBothStores } from '../helpers/both-stores.js';

const CHILDREN = 6;

async function killWhileWaiting(storeUrl: string): Promise<void> {
  const runId = 'timers';
  const args = ['run', 'test/fixtures/timers.ts', '--run', runId, '--store', storeUrl];
  // Long enough that the two status commands below (a second or more each on a loaded machine) see the timers.
  const first = startCli([...args, '--input', JSON.stringify({ children: CHILDREN, delayMs: 5_000 })]);
  const store: Store = await openStore(storeUrl);
  try {
    // Until every child is stored and waiting on its not-before time: then the process holds nothing but timers.
    await expect.poll(async () => (await store.nextWake(runId))?.nodes ?? 0, { timeout: 30_000, interval: 20 }).toBe(CHILDREN);
    first.child.kill('SIGKILL');
    expect((await first.done).signal).toBe('SIGKILL');

    const status = await runCli(['status', runId, '--store', storeUrl]);
    expect(status.stdout).toMatch(new RegExp(`timers: ${CHILDREN} node\\(s\\) wait for their time; the next wakes at \\d{4}-`));
    const json = JSON.parse((await runCli(['status', runId, '--json', '--store', storeUrl])).stdout) as { timers: number; nextWake: string | null };
    expect(json.timers).toBe(CHILDREN);
    expect(Date.parse(json.nextWake ?? '')).toBeGreaterThan(0);

    const resumed = await runCli(args);
    expect(resumed.code, resumed.stderr).toBe(0);
    // Every child ran no earlier than its parent's not-before time and its own RetryLater allowed.
    expect(resumed.stdout.trim()).toBe(String(CHILDREN));
    const nodes = await store.listNodes(runId, {});
    expect(nodes).toHaveLength(CHILDREN + 1);
    expect(nodes.every((node) => node.state === 'done')).toBe(true);
    // Deferrals charge nothing (maxAttempts is 1: a charged one would have ended in the DLQ) and record no error.
    expect(nodes.map((node) => node.attempts)).toEqual(nodes.map(() => 1));
    expect(nodes.flatMap((node) => node.errors)).toEqual([]);
    expect(await store.nextWake(runId)).toBeNull();
  } finally {
    first.child.kill('SIGKILL');
    await store.close();
  }
}

onBothStores('durable timers', 'children waiting on their timers survive kill -9 and run once, on time, uncharged', killWhileWaiting);
