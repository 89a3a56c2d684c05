import type { Page } from 'playwright-core';

export interface TreeOpenTimes {
  /** From the click on the run to its root's children rows in the tree, in ms (the page's clock). */
  rowsShownMs: number;
  /** From the click to every one of those rows showing its subtree counts, in ms. */
  allCountedMs: number;
}

/**
 * Clicks run `runId` in the dashboard's list and times, on the page's own clock, how long its tree takes to show the
 * root's `children` child rows and then their subtree counts. The page's clock, because the test process may serve
 * the dashboard itself, and a long store read there would delay the test's view of the page but not the page.
 */
export async function timeTreeOpen(page: Page, runId: string, children: number, timeoutMs = 120_000): Promise<TreeOpenTimes> {
  await page.locator(`[data-testid=run-row][data-run="${runId}"]`).waitFor();
  await page.evaluate(`(() => {
    const times = (window.__treeOpen = {});
    const link = document.querySelector('[data-testid=run-row][data-run=' + JSON.stringify(${JSON.stringify(runId)}) + ']');
    const started = performance.now();
    const check = () => {
      const rows = [...document.querySelectorAll('#tree > li[data-testid=tree-node] > ul > li[data-testid=tree-node]')];
      if (rows.length < ${children}) return;
      if (times.rowsShownMs === undefined) times.rowsShownMs = performance.now() - started;
      if (times.allCountedMs === undefined && rows.every((row) => / done/.test(row.querySelector(':scope > .line .counts').textContent))) {
        times.allCountedMs = performance.now() - started;
        observer.disconnect();
      }
    };
    const observer = new MutationObserver(check);
    observer.observe(document.body, { subtree: true, childList: true, characterData: true });
    link.click();
  })()`);
  // Polled from here: the dashboard's content security policy refuses the page-side evaluation waitForFunction uses.
  const deadline = Date.now() + timeoutMs;
  let times = (await page.evaluate('window.__treeOpen')) as Partial<TreeOpenTimes>;
  while (times.allCountedMs === undefined) {
    if (Date.now() > deadline) throw new Error(`The tree of run ${runId} did not show ${children} counted child rows within ${timeoutMs} ms (${JSON.stringify(times)}).`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    times = (await page.evaluate('window.__treeOpen')) as Partial<TreeOpenTimes>;
  }
  return { rowsShownMs: Math.round(times.rowsShownMs ?? Number.NaN), allCountedMs: Math.round(times.allCountedMs) };
}
