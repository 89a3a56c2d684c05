import { describe, expect, it } from 'vitest';
import { type Site, startSite } from '../../bench/site.mjs';
import { runCli, startCli } from '../helpers/cli.js';
import { auditSqlite } from '../helpers/store-check.js';
import { tempDir } from '../helpers/temp.js';

const PAGES = 400;
const CONCURRENCY = 8;

interface PageRecord {
  url: string;
  status: number;
  title: string;
  links: number;
}

/** What a page's record must say, from the site's plan alone: its status, title and distinct in-scope links. */
function expectedRecord(site: Site, path: string): Omit<PageRecord, 'url'> {
  const i = site.plan.indexOf(path);
  if (i === null) return { status: 404, title: '', links: 0 };
  const page = site.plan.page(i);
  const links = new Set(page.links.flatMap((link) => (link.path?.startsWith('/site/') && link.path !== path ? [link.path] : [])));
  return { status: 200, title: page.title, links: links.size };
}

describe('examples/crawl.ts survives kill -9', () => {
  it('crawls a synthetic site killed mid-crawl: one record per reachable page, re-fetches only what was in flight, oversized pages dead-lettered', async () => {
    const tmp = tempDir();
    const site = await startSite({ pages: PAGES, seed: 7 });
    try {
      const reach = site.plan.reachable();
      const url = (path: string) => `${site.origin}${path}`;
      // The plan must exercise every case, or the assertions below would prove less than they say.
      expect(reach.missing.length).toBeGreaterThan(0);
      expect(reach.oversized.length).toBeGreaterThan(0);
      const special = [...reach.paths].map((path) => site.plan.indexOf(path)).filter((i): i is number => i !== null).map((i) => site.plan.page(i).kind);
      for (const kind of ['failOnce', 'limitedOnce', 'slow', 'timeoutOnce'] as const) expect(special).toContain(kind);

      const args = ['run', 'examples/crawl.ts', '--run', 'crawl', '--store', tmp.url, '--concurrency', String(CONCURRENCY)];
      const first = startCli([...args, '--input', JSON.stringify({ url: site.url })]);
      const killAt = Math.floor(reach.paths.size * 0.4);
      await expect.poll(() => site.stats().fetches, { timeout: 60_000, interval: 2 }).toBeGreaterThanOrEqual(killAt);
      first.child.kill('SIGKILL');
      const killed = await first.done;
      expect(killed.signal).toBe('SIGKILL');
      const partial = await runCli(['results', 'crawl', '--store', tmp.url]);
      expect(partial.code, partial.stderr).toBe(0);
      const before = partial.stdout.trim().split('\n').filter(Boolean).length;
      expect(before).toBeLessThan(reach.paths.size - reach.oversized.length);

      const resumed = await runCli(args);
      // Exit 3: the run completed with dead-lettered nodes (the oversized pages).
      expect(resumed.code, resumed.stderr).toBe(3);
      expect(resumed.stderr).toContain(`completed; ${reach.paths.size - reach.oversized.length} done, ${reach.oversized.length} dead`);

      // Every reachable page has exactly one record, and it says what the site served.
      const results = await runCli(['results', 'crawl', '--store', tmp.url]);
      expect(results.code, results.stderr).toBe(0);
      const records = results.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as PageRecord);
      const byUrl = new Map(records.map((record) => [record.url, record]));
      expect(byUrl.size).toBe(records.length);
      const fetchedInFull = [...reach.paths].filter((path) => !reach.oversized.includes(path));
      expect([...byUrl.keys()].sort()).toEqual(fetchedInFull.map(url).sort());
      for (const path of fetchedInFull) expect(byUrl.get(url(path)), path).toEqual({ url: url(path), ...expectedRecord(site, path) });
      expect(records.filter((record) => record.status === 404).length).toBe(reach.missing.length);

      // The pages too big to parse are the dead-letter queue, each dead on its first attempt.
      const dlq = await runCli(['dlq', 'list', 'crawl', '--json', '--store', tmp.url]);
      expect(dlq.code, dlq.stderr).toBe(0);
      const dead = JSON.parse(dlq.stdout) as { key: string; attempts: number; error: string }[];
      expect(dead.map((entry) => entry.key).sort()).toEqual(reach.oversized.map(url).sort());
      for (const entry of dead) expect(entry.error).toContain('more than this crawler parses');

      // Fetches: nothing out of scope; each reachable path as often as the site makes a correct crawl ask
      // (twice for a page that fails or defers once); a path more often only if its fetch was in flight at the kill.
      const { counts } = site.stats();
      for (const path of counts.keys()) expect(reach.paths.has(path), `fetched out of scope: ${path}`).toBe(true);
      let extra = 0;
      for (const path of reach.paths) {
        const n = counts.get(path) ?? 0;
        expect(n, path).toBeGreaterThanOrEqual(site.plan.expectedFetches(path));
        extra += n - site.plan.expectedFetches(path);
      }
      expect(extra).toBeLessThanOrEqual(CONCURRENCY);

      const audit = auditSqlite(tmp.db, 'crawl');
      expect(audit.states).toEqual({ done: fetchedInFull.length, dead: reach.oversized.length });
      expect(audit.integrity).toEqual(['ok']);
    } finally {
      await site.close();
      tmp.cleanup();
    }
  }, 120_000);

  it('fetches at most maxPages pages, and declares them as the estimate', async () => {
    const tmp = tempDir();
    const site = await startSite({ pages: PAGES, seed: 7 });
    const maxPages = 100;
    try {
      const run = await runCli(['run', 'examples/crawl.ts', '--run', 'bounded', '--store', tmp.url, '--input', JSON.stringify({ url: site.url, maxPages })]);
      expect([0, 3], run.stderr).toContain(run.code);
      const status = await runCli(['status', 'bounded', '--json', '--store', tmp.url]);
      const { counts, estimate } = JSON.parse(status.stdout) as { counts: { done: number; dead: number }; estimate: number };
      expect(estimate).toBe(maxPages);
      const { counts: fetched } = site.stats();
      const results = await runCli(['results', 'bounded', '--store', tmp.url]);
      const records = results.stdout.trim().split('\n').map((line) => JSON.parse(line) as PageRecord);
      expect(new Set(records.map((record) => record.url)).size).toBe(records.length);
      expect(records.length).toBe(counts.done);
      // Each node is one page fetched: the bound holds on fetches, and a share lost to a page already in the run
      // leaves the crawl below it, though not far on this site (the site has 420 reachable paths).
      expect(fetched.size).toBe(counts.done + counts.dead);
      expect(fetched.size).toBeLessThanOrEqual(maxPages);
      expect(fetched.size).toBeGreaterThan(maxPages / 2);
    } finally {
      await site.close();
      tmp.cleanup();
    }
  }, 60_000);
});
