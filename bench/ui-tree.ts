/**
 * How fast the dashboard opens the tree of a big run: writes a finished full tree (fanout 10, depth 7 by default:
 * 11,111,111 nodes) straight into a fresh SQLite store with SQL, serves the dashboard on it, and times in headless
 * Chromium (Debian's, /usr/bin/chromium) the click on the run until its root's ten children are shown, and until all
 * ten show their subtree counts. Prints one JSON line.
 *
 *   npx tsx bench/ui-tree.ts [--fanout 10] [--depth 7] [--keep FILE]
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { startDashboard } from '../src/ui/server.js';
import { timeTreeOpen } from '../test/helpers/tree-open.js';
import { buildTreeStore } from '../test/helpers/tree-store.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const fanout = arg('fanout', 10);
const depth = arg('depth', 7);
const dir = mkdtempSync(join(tmpdir(), 'rlm-ui-bench-'));
const path = join(dir, 'rlm.db');
try {
  let started = performance.now();
  const nodes = await buildTreeStore(path, { runId: 'big', fanout, depth });
  const buildSeconds = (performance.now() - started) / 1000;
  const store = new SqliteStore({ path });
  await store.migrate();
  const dashboard = await startDashboard({ store, port: 0 });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(dashboard.url);
    started = performance.now();
    const times = await timeTreeOpen(page, 'big', fanout, 600_000);
    console.log(
      JSON.stringify({ nodes, storeBytes: statSync(path).size, buildSeconds: Math.round(buildSeconds * 10) / 10, ...times, wallMs: Math.round(performance.now() - started) }),
    );
  } finally {
    await browser.close();
    await dashboard.close();
    await store.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
