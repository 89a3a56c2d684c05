/**
 * The crawl's upper bound: examples/crawl.ts's own `fetchPage` (fetch, htmlparser2, scope) driven by a plain
 * in-memory loop with a fixed number of requests in flight, a Set for the URLs seen, and nothing durable.
 * Retries a thrown fetch up to 3 more times at once (no backoff) and waits out a 429's Retry-After.
 *
 *   node --import tsx bench/baselines/crawl-memory.mjs '{"url":"http://127.0.0.1:8080/site/","concurrency":16}'
 *
 * Prints one JSON line: { seconds, pages, failed }.
 */
import { setMaxListeners } from 'node:events';
import { RetryLater } from 'rlm';
import { fetchPage, normalise, scopeOf } from '../../examples/crawl.ts';

const { url, concurrency = 16 } = JSON.parse(process.argv[2] ?? '{}');
const scope = scopeOf(url, undefined);
const start = normalise(url);
const seen = new Set([start]);
const queue = [start];
let pages = 0;
let failed = 0;
let active = 0;
const controller = new AbortController();
// One signal for every request in flight, each adding a listener.
setMaxListeners(0, controller.signal);

async function crawl(page) {
  for (let attempt = 1; ; attempt++) {
    try {
      const fetched = await fetchPage(page, scope, controller.signal);
      if (fetched.unparseable) {
        failed++;
        return;
      }
      pages++;
      for (const link of fetched.links) {
        if (seen.has(link)) continue;
        seen.add(link);
        queue.push(link);
      }
      return;
    } catch (error) {
      if (error instanceof RetryLater) {
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, error.at - Date.now())));
        attempt--;
      } else if (attempt >= 4) {
        failed++;
        return;
      }
    }
  }
}

const started = performance.now();
await new Promise((resolve) => {
  const pump = () => {
    while (active < concurrency && queue.length > 0) {
      active++;
      void crawl(queue.shift()).finally(() => {
        active--;
        if (active === 0 && queue.length === 0) resolve();
        else pump();
      });
    }
  };
  pump();
});
process.stdout.write(`${JSON.stringify({ seconds: (performance.now() - started) / 1000, pages, failed })}\n`);
