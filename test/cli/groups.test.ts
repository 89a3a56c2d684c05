/*
 * Groups with limits across worker processes on PostgreSQL, against a real HTTP server that counts requests per
 * host: three processes work one run whose host `limited.test` may see 2 requests at once and 20 a second; one
 * process is killed with SIGKILL while nodes wait on the group and started again. The server never sees the
 * limited host past its limits, the unlimited host runs many at once, and every page is fetched.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startCli } from '../helpers/cli.js';
import { describePostgres, pgQuery } from '../helpers/postgres.js';

interface HostStats {
  now: number;
  most: number;
  starts: number[];
  /** Requests whose client went away before the answer (a killed worker's). */
  aborted: number;
}

const PER_HOST = 60;
const stats = new Map<string, HostStats>();
let server: Server;
let base = '';

beforeAll(async () => {
  server = createServer((req, res) => {
    const host = (req.url ?? '/').split('/')[1] ?? '';
    const s = stats.get(host) ?? { now: 0, most: 0, starts: [], aborted: 0 };
    stats.set(host, s);
    s.now++;
    s.most = Math.max(s.most, s.now);
    s.starts.push(Date.now());
    let open = true;
    const end = () => {
      if (!open) return;
      open = false;
      s.now--;
    };
    res.on('close', () => {
      if (!res.writableFinished) s.aborted++;
      end();
    });
    // Each page takes a while, so requests overlap unless something holds them apart.
    setTimeout(() => {
      end();
      res.end('<html>page</html>');
    }, 30);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

/** The most requests that started within any one second. */
function busiestSecond(starts: number[]): number {
  const sorted = [...starts].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while ((sorted[i] as number) - (sorted[j] as number) >= 1_000) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

describePostgres('groups with limits across worker processes on PostgreSQL', (url) => {
  const schema = `rlm_groups_${process.pid}`;
  const storeUrl = `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`;
  beforeAll(async () => {
    await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  });
  afterAll(async () => {
    await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  });

  it('holds a host to 2 requests at once and 20 a second across 3 processes and a kill -9, while another host runs at full speed', async () => {
    const fast = ['--lease-ms', '2000', '--heartbeat-ms', '200', '--store', storeUrl, '--concurrency', '8'];
    const input = JSON.stringify({ base, perHost: PER_HOST, hosts: ['limited.test', 'free.test'] });
    const run = startCli(['run', 'test/fixtures/grouped-fetch.ts', '--run', 'groups', '--input', input, ...fast]);
    const workers = [1, 2].map(() => startCli(['worker', 'test/fixtures/grouped-fetch.ts', ...fast]));
    try {
      // Kill one worker while the limited host's nodes wait on their group, then start another in its place.
      await expect.poll(() => stats.get('limited.test')?.starts.length ?? 0, { timeout: 60_000, interval: 10 }).toBeGreaterThanOrEqual(15);
      workers[0]?.child.kill('SIGKILL');
      expect((await workers[0]?.done)?.signal).toBe('SIGKILL');
      workers.push(startCli(['worker', 'test/fixtures/grouped-fetch.ts', ...fast]));

      const ended = await run.done;
      expect(ended.code, ended.stderr).toBe(0);
      expect(ended.stdout.trim()).toBe(String(2 * PER_HOST));
    } finally {
      for (const worker of workers) worker.child.kill('SIGTERM');
      await Promise.all(workers.map((worker) => worker.done));
    }
    const limited = stats.get('limited.test') as HostStats;
    const free = stats.get('free.test') as HostStats;
    expect(limited.most).toBeLessThanOrEqual(2);
    // A bucket of 20 a second with a burst of 1: at most 21 requests start in any one second.
    expect(busiestSecond(limited.starts)).toBeLessThanOrEqual(21);
    console.log(
      `groups: limited.test ${limited.starts.length} requests (${limited.aborted} cut off by the kill), at most ${limited.most} at once and ${busiestSecond(limited.starts)} in a second; free.test ${free.starts.length} requests, ${free.most} at once`,
    );
    // Every page was fetched. A page fetched twice is one the killed worker had in flight, or had fetched and
    // not yet committed: its group commit waits at most 50 ms, in which the host allows 20/s × 0.05 s + 1 = 2.
    expect(limited.starts.length).toBeGreaterThanOrEqual(PER_HOST);
    expect(limited.starts.length - PER_HOST).toBeLessThanOrEqual(limited.aborted + 2);
    expect(free.starts.length).toBeGreaterThanOrEqual(PER_HOST);
    expect(free.most).toBeGreaterThan(2);
  });
});
