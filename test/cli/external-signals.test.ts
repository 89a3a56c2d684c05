/*
 * External signals across kill -9, on both stores: a run whose root waits for a signal pauses until it comes;
 * a signal sent before its step waits is kept; nodes wait for theirs holding no worker, survive a kill -9 of
 * the process, and run once their signal comes; a signal is delivered once per name.
 */
import { expect } from 'vitest';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';
import { runCli, startCli } from '../helpers/cli.js';
import { onBothStores } from '../helpers/both-stores.js';

const CHILDREN = 4;

async function signalRun(storeUrl: string): Promise<void> {
  const runId = 'signals';
  const store: Store = await openStore(storeUrl);
  const run = (extra: string[] = []) => ['run', 'test/fixtures/awaits-signals.ts', '--run', runId, '--store', storeUrl, ...extra];
  const signal = (name: string, json: string) => runCli(['signal', runId, name, json, '--store', storeUrl]);
  try {
    // The root waits for `go`: nothing else can move, so the run pauses and `rlm run` exits 4.
    const waiting = await runCli(run(['--input', JSON.stringify({ children: CHILDREN, slowMs: 60_000 })]));
    expect(waiting.code, waiting.stderr).toBe(4);
    expect((await store.listNodes(runId, { state: 'parked' })).map((n) => n.parkReason)).toEqual(['signal: waits for `go` (rlm signal RUN go JSON)']);

    // `review:1` comes before child 1 exists: it is kept. `go` wakes the root.
    expect((await signal('review:1', '{"verdict":"one"}')).stdout).toContain('No node waits for it yet');
    expect((await signal('go', '{"by":"ada"}')).stdout).toContain('1 waiting node(s) go back to the frontier');
    const working = startCli(run());
    // Children 0 and 2 wait for their reviews while the last child works; then the process dies.
    await expect.poll(async () => (await store.listNodes(runId, { state: 'parked' })).length, { timeout: 30_000, interval: 20 }).toBe(2);
    working.child.kill('SIGKILL');
    expect((await working.done).signal).toBe('SIGKILL');

    expect((await signal('review:0', '{"verdict":"zero"}')).code).toBe(0);
    // Once per name: the same payload again is no new delivery, another is refused.
    expect((await signal('review:0', '{"verdict":"zero"}')).stdout).toContain('was delivered before');
    const refused = await signal('review:0', '{"verdict":"changed"}');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('a signal is delivered once per name');
    expect((await signal('review:2', '{"verdict":"two"}')).code).toBe(0);

    const done = await runCli(run(), { RLM_TEST_SLOW_MS: '0' });
    expect(done.code, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toBe('zero,one,two,slow (root)');
    const nodes = await store.listNodes(runId, {});
    expect(nodes.every((node) => node.state === 'done')).toBe(true);
    // Waiting charged no attempt and recorded no error.
    expect(nodes.flatMap((node) => node.errors)).toEqual([]);
  } finally {
    await store.close();
  }
}

onBothStores('external signals', 'waits for signals across a kill -9, keeps one sent early, and delivers each name once', signalRun);
