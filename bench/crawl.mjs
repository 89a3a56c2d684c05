#!/usr/bin/env node
/**
 * The crawl workload (`node bench/crawl.mjs [--quick] [--pages N] [--concurrency N]`, and the `crawl` section of
 * `npm run bench`): examples/crawl.ts under `rlm run` on a fresh SQLite store, and Crawlee 3's HttpCrawler with its
 * persisted request queue (bench/peers/crawlee.mjs, the same parser and scope code), each crawling its own fresh
 * copy of bench/site.mjs (100,000 pages; 2,000 with --quick) with the same number of requests in flight. Beside
 * them, the same fetch-and-parse code in a plain in-memory loop (bench/baselines/crawl-memory.mjs), the upper bound.
 *
 * Measured: pages/s (in-scope paths fetched, 404s and oversized pages included, over the wall time from spawn to
 * exit), peak RSS, and from the site's own counters that each system fetched every reachable path as often as a
 * correct crawl does (twice for a page that fails or defers once) and nothing out of scope. Then each durable
 * system is SIGKILLed once the site has served half the paths and started again on the same storage: the seconds
 * from that spawn to the site's next request, the pages fetched more often than a correct crawl does, and the
 * time the resumed run took to finish.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { killGroup, lastWords, measure, RLM_BIN } from './lib/proc.mjs';
import { sitePlan, startSite } from './site.mjs';

const SUMMARY = /: completed; (\d+) done, (\d+) dead/;
const n = (value) => Math.round(value).toLocaleString('en-US');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Fetches beyond what a correct crawl makes, and any out of scope, from the site's counters. */
function fetchAudit(site, reach) {
  const { counts, fetches } = site.stats();
  let extra = 0;
  let twice = 0;
  let missing = 0;
  let outOfScope = 0;
  for (const [path, count] of counts) if (!reach.paths.has(path)) outOfScope += count;
  for (const path of reach.paths) {
    const count = counts.get(path) ?? 0;
    const expected = site.plan.expectedFetches(path);
    if (count < expected) missing++;
    if (count > expected) {
      extra += count - expected;
      twice++;
    }
  }
  return { fetches, extra, twice, missing, outOfScope };
}

function auditProblem(audit) {
  if (audit.missing > 0) return `${n(audit.missing)} reachable paths fetched less often than a correct crawl does`;
  if (audit.outOfScope > 0) return `${n(audit.outOfScope)} fetches out of scope`;
  return null;
}

/** The commands of one system: a fresh run, and the same storage resumed. */
function systems({ concurrency }) {
  return {
    memory: {
      system: 'in-memory loop (upper bound)',
      args: (url) => ['--import', 'tsx', 'bench/baselines/crawl-memory.mjs', JSON.stringify({ url, concurrency })],
      check: (result, reach) => {
        const out = parseLast(result);
        if (!out) return `exit ${result.code ?? result.signal}: ${lastWords(result)}`;
        return out.pages + out.failed === reach.paths.size ? null : `${out.pages} pages and ${out.failed} failures, expected ${reach.paths.size} paths`;
      },
      note: 'the example\'s fetchPage in a plain loop; nothing durable',
    },
    rlm: {
      system: 'rlm run (SQLite)',
      args: (url, dir, resume) => [RLM_BIN, 'run', 'examples/crawl.ts', ...(resume ? [] : ['--input', JSON.stringify({ url })]), '--run', 'crawl', '--store', `sqlite:${join(dir, 'rlm.db')}`, '--concurrency', String(concurrency)],
      check: (result, reach) => {
        if (result.code !== 3) return `exit ${result.code ?? result.signal} (3 expected: the oversized pages are dead-lettered): ${lastWords(result)}`;
        const summary = SUMMARY.exec(result.stderr);
        const done = reach.paths.size - reach.oversized.length;
        if (!summary || Number(summary[1]) !== done || Number(summary[2]) !== reach.oversized.length) {
          return `${summary ? `${summary[1]} done, ${summary[2]} dead` : 'no summary'}, expected ${done} done, ${reach.oversized.length} dead`;
        }
        return null;
      },
      note: 'examples/crawl.ts, each fetch journaled (ctx.effect), one record per page',
    },
    crawlee: {
      system: 'Crawlee 3.18 HttpCrawler',
      args: (url, _dir, resume) => ['--import', 'tsx', 'bench/peers/crawlee.mjs', JSON.stringify({ url, concurrency, resume })],
      env: (dir) => ({ CRAWLEE_STORAGE_DIR: dir }),
      check: (result, reach) => {
        const out = parseLast(result);
        if (!out) return `exit ${result.code ?? result.signal}: ${lastWords(result)}`;
        const done = reach.paths.size - reach.oversized.length;
        // More items than pages: a killed run's pages pushed again on resume, reported by the resume row.
        return out.stored >= done ? null : `${out.stored} dataset items, expected ${done}`;
      },
      note: 'persisted request queue and dataset (file system storage), the same parser',
    },
  };
}

function parseLast(result) {
  if (result.code !== 0) return null;
  try {
    return JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '');
  } catch {
    return null;
  }
}

/** One uninterrupted crawl of a fresh site. */
async function crawlRow({ section, spec, pages, floor, isFloor, timeoutMs }) {
  const site = await startSite({ pages, seed: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'rlm-bench-crawl-'));
  const reach = site.plan.reachable();
  const base = { section, workload: 'crawl', system: spec.system, nodes: reach.paths.size, floor, isFloor };
  try {
    const result = await measure(spec.args(site.url, dir, false), { env: spec.env?.(dir) ?? {}, timeoutMs });
    const audit = fetchAudit(site, reach);
    const problem = (result.timedOut ? `timed out after ${result.seconds.toFixed(0)} s` : spec.check(result, reach)) ?? auditProblem(audit);
    if (problem) return { ...base, seconds: null, rssMb: null, status: 'failed', note: problem };
    const twice = audit.extra === 0 ? "no fetch beyond a correct crawl's" : `${n(audit.extra)} fetches beyond a correct crawl's`;
    return { ...base, seconds: result.seconds, rssMb: result.rssKb === null ? null : result.rssKb / 1024, status: 'ok', note: `${spec.note}; ${twice}` };
  } finally {
    await site.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * SIGKILL a crawl once the site has served half the reachable paths, start it again on the same storage, and
 * measure: seconds from that spawn to the site's next request, fetches beyond a correct crawl's, the resumed run's
 * time to finish.
 */
async function resumeRow({ section, spec, pages, concurrency, timeoutMs }) {
  const site = await startSite({ pages, seed: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'rlm-bench-crawl-'));
  const reach = site.plan.reachable();
  const base = { section, workload: 'resume after SIGKILL at 50%', system: spec.system, floor: null, noRate: true };
  const env = spec.env?.(dir) ?? {};
  try {
    let exited = false;
    const first = await measure(spec.args(site.url, dir, false), {
      env,
      timeoutMs,
      onSpawn(child) {
        child.once('exit', () => {
          exited = true;
        });
        void (async () => {
          while (!exited && site.stats().fetches < reach.paths.size / 2) await sleep(10);
          if (!exited) killGroup(child.pid, 'SIGKILL');
        })();
      },
    });
    if (first.signal !== 'SIGKILL') return { ...base, nodes: reach.paths.size, seconds: null, rssMb: null, status: 'failed', note: `the first run ended before it was killed: ${lastWords(first)}` };
    const atKill = site.stats().fetches;
    let firstFetch = null;
    exited = false;
    const resumed = await measure(spec.args(site.url, dir, true), {
      env,
      timeoutMs,
      onSpawn(child, started) {
        child.once('exit', () => {
          exited = true;
        });
        void (async () => {
          while (!exited && site.stats().fetches === atKill) await sleep(2);
          if (site.stats().fetches > atKill) firstFetch = (performance.now() - started) / 1000;
        })();
      },
    });
    const audit = fetchAudit(site, reach);
    const problem = (resumed.timedOut ? `timed out after ${resumed.seconds.toFixed(0)} s` : spec.check(resumed, reach)) ?? auditProblem(audit);
    if (problem) return { ...base, nodes: reach.paths.size, seconds: null, rssMb: null, status: 'failed', note: `the resumed run: ${problem}` };
    if (firstFetch === null) return { ...base, nodes: reach.paths.size, seconds: null, rssMb: null, status: 'failed', note: 'the resumed run made no request' };
    return {
      ...base,
      nodes: reach.paths.size - atKill,
      seconds: firstFetch,
      rssMb: resumed.rssKb === null ? null : resumed.rssKb / 1024,
      status: 'ok',
      note:
        `seconds: spawn to the first request; killed after ${n(atKill)} fetches; ${n(audit.extra)} fetches beyond a correct crawl's ` +
        `(${n(audit.twice)} paths; ${concurrency} in flight at most); the resumed run took ${resumed.seconds.toFixed(1)} s` +
        (parseLast(resumed)?.stored > reach.paths.size - reach.oversized.length ? `; ${n(parseLast(resumed).stored - (reach.paths.size - reach.oversized.length))} records stored twice` : ''),
    };
  } finally {
    await site.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The crawl rows in bench/run.mjs's format; `onRow` sees each as it is measured. */
export async function crawlRows({ quick = false, pages = quick ? 2_000 : 100_000, concurrency = 16, onRow = () => {} } = {}) {
  const reachable = sitePlan({ pages, seed: 1 }).reachable().paths.size;
  const section = `crawl: examples/crawl.ts on bench/site.mjs (${n(pages)} pages, ${n(reachable)} in-scope paths), ${concurrency} requests in flight; × floor = over Crawlee's pages/s`;
  const specs = systems({ concurrency });
  const timeoutMs = Math.max(10 * 60_000, pages * 30);
  const floor = { shape: 'crawl', nodes: reachable };
  const rows = [];
  const add = (row) => {
    rows.push(row);
    onRow(row);
  };
  add(await crawlRow({ section, spec: specs.crawlee, pages, floor, isFloor: floor, timeoutMs }));
  add(await crawlRow({ section, spec: specs.memory, pages, floor, timeoutMs }));
  add(await crawlRow({ section, spec: specs.rlm, pages, floor, timeoutMs }));
  add(await resumeRow({ section, spec: specs.rlm, pages, concurrency, timeoutMs }));
  add(await resumeRow({ section, spec: specs.crawlee, pages, concurrency, timeoutMs }));
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2);
  const value = (name) => {
    const at = argv.indexOf(`--${name}`);
    return at === -1 ? undefined : Number(argv[at + 1]);
  };
  const { computeRatios, formatTable } = await import('./lib/table.mjs');
  const rows = await crawlRows({
    quick: argv.includes('--quick'),
    pages: value('pages'),
    concurrency: value('concurrency'),
    onRow: (row) => process.stderr.write(`  ${row.status === 'ok' ? `${row.seconds.toFixed(2)} s`.padStart(10) : row.status.toUpperCase()}  ${row.workload} · ${row.system}${row.status === 'ok' ? '' : ` — ${row.note}`}\n`),
  });
  computeRatios(rows);
  process.stdout.write(`\n${formatTable(rows)}\n`);
  if (rows.some((row) => row.status === 'failed')) process.exitCode = 1;
}
