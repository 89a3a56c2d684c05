/**
 * Peer: Crawlee 3 (`HttpCrawler`, no browser) crawling bench/site.mjs the way examples/crawl.ts does: the same
 * parser and scope code (imported from the example, so this runs under tsx), one dataset item per page, links
 * added to Crawlee's persisted request queue (its uniqueKey is the normalised URL, so a page is queued once).
 * Storage is Crawlee's default file system storage under CRAWLEE_STORAGE_DIR; `resume: true` keeps it (no purge)
 * and continues the queue a killed run left. Concurrency is fixed (min = max), as rlm's `--concurrency` is.
 *
 *   CRAWLEE_STORAGE_DIR=/tmp/x node --import tsx bench/peers/crawlee.mjs '{"url":"http://127.0.0.1:8080/site/","concurrency":16}'
 *
 * Prints one JSON line: { seconds, pages, records, failed }.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Configuration, HttpCrawler, log, NonRetryableError, RequestQueue } from '@crawlee/http';
import { MAX_BYTES, normalise, readPage, scopeOf } from '../../examples/crawl.ts';

const { url, concurrency = 16, resume = false } = JSON.parse(process.argv[2] ?? '{}');
if (!process.env.CRAWLEE_STORAGE_DIR) throw new Error('Set CRAWLEE_STORAGE_DIR to a fresh directory: Crawlee keeps its queue and dataset there.');
log.setLevel(log.LEVELS.WARNING);

const scope = scopeOf(url, undefined);
const config = new Configuration({ persistStorage: true, purgeOnStart: !resume });
const requestQueue = await RequestQueue.open(null, { config });
let records = 0;
const crawler = new HttpCrawler(
  {
    requestQueue,
    minConcurrency: concurrency,
    maxConcurrency: concurrency,
    maxRequestRetries: 3,
    navigationTimeoutSecs: 5,
    requestHandlerTimeoutSecs: 60,
    statusMessageLoggingInterval: 3600,
    async requestHandler({ request, response, body, pushData }) {
      const self = normalise(request.url);
      const status = response.statusCode ?? 0;
      let page = { title: '', links: [] };
      if (status < 400) {
        const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
        if (bytes.byteLength > MAX_BYTES) throw new NonRetryableError(`${self}: the body is over ${MAX_BYTES} bytes, more than this crawler parses`);
        page = await readPage(new Blob([bytes]).stream(), request.loadedUrl ?? request.url, scope, self);
      }
      await pushData({ url: self, status, title: page.title, links: page.links.length });
      records++;
      if (page.links.length > 0) await requestQueue.addRequests(page.links.map((link) => ({ url: link, uniqueKey: link })));
    },
    failedRequestHandler() {},
  },
  config,
);

const started = performance.now();
const stats = await crawler.run(resume ? undefined : [{ url: normalise(url), uniqueKey: normalise(url) }]);
const seconds = (performance.now() - started) / 1000;
let stored = null;
try {
  stored = readdirSync(join(process.env.CRAWLEE_STORAGE_DIR, 'datasets', 'default')).filter((name) => name.endsWith('.json')).length;
} catch {
  // No dataset directory: nothing was stored.
}
process.stdout.write(`${JSON.stringify({ seconds, pages: stats.requestsFinished, failed: stats.requestsFailed, records, stored })}\n`);
