#!/usr/bin/env node
/**
 * A synthetic web site for the crawler (examples/crawl.ts), its test and its bench: `pages` HTML pages under
 * /site/, deterministic from `seed`, each with about 20 links (cycles everywhere: pages link back to random
 * pages, and each to the next one), written in several forms of the same URL (relative, `./`, absolute, with a
 * fragment, with a `..` segment) so a crawler must normalise them to one key. Besides the ordinary pages:
 *
 * - broken links: about 1 link in 50 points at /site/missing-<k>.html, which answers 404;
 * - links out of scope: one per page to /elsewhere/ (same origin, outside the directory) and one to another
 *   origin; a crawler that stays in scope fetches neither;
 * - slow pages (answer after 300 ms), 5xx-once pages (503 on the first request, then 200), 429-once pages
 *   (429 with `Retry-After: 1`, then 200), timeout-once pages (the first request is answered after 8 s, later
 *   ones at once), and oversized pages (1.1 MiB of HTML: more than the crawler agrees to parse).
 *
 * Every request is counted per path; GET /__stats answers `{ fetches, counts: { path: n } }`.
 *
 *   node bench/site.mjs --pages 1000 [--seed 1] [--port 8080] [--latency-ms 0]   # serves http://127.0.0.1:8080/site/
 *
 * `--latency-ms` delays every answer, as a distant site would.
 */
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';

/** How many pages of each special kind a site of `pages` pages has (the rest are ordinary). */
export function kindCounts(pages) {
  return {
    oversized: Math.min(pages >> 4, 3 + Math.floor(pages / 20_000)),
    failOnce: Math.min(pages >> 4, 5 + Math.floor(pages / 1_000)),
    limitedOnce: Math.min(pages >> 4, 3 + Math.floor(pages / 2_000)),
    slow: Math.min(pages >> 4, 3 + Math.floor(pages / 5_000)),
    timeoutOnce: Math.min(pages >> 4, 1 + Math.floor(pages / 50_000)),
  };
}

/** The delay of a slow page and of a timeout-once page's first answer, in milliseconds. */
export const SLOW_MS = 300;
export const TIMEOUT_ONCE_MS = 8_000;
/** Bytes of an oversized page's body (the crawler parses at most 1 MiB). */
export const OVERSIZED_BYTES = 1_100_000;

const LINKS = 20;

function gcd(a, b) {
  return b === 0 ? a : gcd(b, a % b);
}

/** mulberry32: a small deterministic generator, one per page. */
function generator(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The path of page `i`: the start page is the directory itself. */
export function pagePath(i) {
  return i === 0 ? '/site/' : `/site/page-${i}.html`;
}

/**
 * The site's plan: what each path is and links to, computed per page from the seed (nothing is held per page).
 * `page(i)` gives its kind, title and links; each link has the `href` as written and the `path` it means
 * (null for a link to another origin).
 */
export function sitePlan({ pages, seed = 1 }) {
  if (!Number.isInteger(pages) || pages < 1) throw new Error(`Expected \`pages\` to be an integer >= 1, got \`${pages}\``);
  const counts = kindCounts(pages);
  // Special kinds go to pages by a permutation of the indexes, i → (i·a + b) mod pages, with page 0 (the start)
  // always ordinary: b = pages - 1 puts it at the last rank.
  let a = 7919 + (seed % 1000) * 2;
  while (gcd(a, pages) !== 1) a++;
  const bounds = [];
  let at = 0;
  for (const [kind, count] of Object.entries(counts)) {
    at += count;
    bounds.push([kind, at]);
  }
  const kindOf = (i) => {
    const r = Number((BigInt(i) * BigInt(a) + BigInt(pages - 1)) % BigInt(pages));
    for (const [kind, end] of bounds) if (r < end) return kind;
    return 'ordinary';
  };
  const brokenRange = Math.max(1, Math.floor(pages / 20));
  function page(i) {
    const random = generator((seed * 0x9e3779b1) ^ (i * 0x85ebca6b));
    const links = [];
    const forms = [
      (j) => `page-${j}.html`,
      (j) => `./page-${j}.html`,
      (j) => `/site/page-${j}.html`,
      (j) => `page-${j}.html#section-${j % 7}`,
      (j) => `/site/extra/../page-${j}.html`,
      (j) => `HTTP://ORIGIN/site/page-${j}.html#top`,
    ];
    // The start page is linked to as the directory, in two forms.
    const target = (j) => (j === 0 ? { href: random() < 0.5 ? './' : '/site/', path: '/site/' } : null);
    for (let n = 0; n < LINKS; n++) {
      if (random() < 0.02) {
        const k = Math.floor(random() * brokenRange);
        links.push({ href: `missing-${k}.html`, path: `/site/missing-${k}.html` });
        continue;
      }
      const j = n === 0 ? (i + 1) % pages : Math.floor(random() * pages);
      const form = forms[Math.floor(random() * forms.length)];
      links.push(target(j) ?? { href: form(j), path: pagePath(j) });
    }
    links.push({ href: `/elsewhere/page-${i}.html`, path: `/elsewhere/page-${i}.html` });
    links.push({ href: `http://other.invalid/site/page-${i}.html`, path: null });
    return { kind: i === 0 ? 'ordinary' : kindOf(i), title: `Page ${i} & friends`, links };
  }
  /** Page index of a path under /site/, or null (a missing page, or not a page). */
  function indexOf(path) {
    if (path === '/site/') return 0;
    const match = /^\/site\/page-(\d+)\.html$/.exec(path);
    if (!match) return null;
    const i = Number(match[1]);
    return i > 0 && i < pages && String(i) === match[1] ? i : null;
  }
  /** How many requests for a path a correct crawl makes: 2 for a page that fails or defers once, else 1. */
  function expectedFetches(path) {
    const i = indexOf(path);
    if (i === null) return 1;
    const kind = page(i).kind;
    return kind === 'failOnce' || kind === 'limitedOnce' || kind === 'timeoutOnce' ? 2 : 1;
  }
  /**
   * What a crawl from the start page reaches, computed from the plan alone: every in-scope path it fetches
   * (pages and missing ones), which of them are missing (404) or oversized (dead-lettered: their links are
   * never read), and the pages it fetches in full.
   */
  function reachable() {
    const seen = new Set(['/site/']);
    const queue = [0];
    const missing = [];
    const oversized = [];
    for (let q = 0; q < queue.length; q++) {
      const i = queue[q];
      const { kind, links } = page(i);
      if (kind === 'oversized') {
        oversized.push(pagePath(i));
        continue;
      }
      for (const link of links) {
        if (link.path === null || !link.path.startsWith('/site/') || seen.has(link.path)) continue;
        seen.add(link.path);
        const j = indexOf(link.path);
        if (j === null) missing.push(link.path);
        else queue.push(j);
      }
    }
    return { paths: seen, missing, oversized };
  }
  return { pages, seed, counts, page, indexOf, expectedFetches, reachable };
}

function escapeHtml(text) {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The HTML of page `i` as served from `origin`. */
export function renderPage(plan, i, origin) {
  const { title, links, kind } = plan.page(i);
  const items = links.map((link, n) => `<li><a href="${escapeHtml(link.href.replace('ORIGIN', origin.slice('http://'.length)))}">link ${n}</a></li>`).join('\n');
  // Not links: an anchor without href, a mail link, a stylesheet. A crawler that follows only <a href> skips them.
  const extras = '<p><a name="top">top</a> <a href="mailto:site@example.invalid">mail</a></p>';
  const filler = kind === 'oversized' ? `<pre>${'x'.repeat(OVERSIZED_BYTES)}</pre>` : '';
  return (
    `<!doctype html>\n<html><head><title>${escapeHtml(title)}</title><link rel="stylesheet" href="/site/style.css"></head>\n` +
    `<body><h1>${escapeHtml(title)}</h1>${extras}\n<ul>\n${items}\n</ul>${filler}</body></html>\n`
  );
}

/**
 * Starts the site on 127.0.0.1 (`port` 0 picks a free one). Resolves to its start URL, the per-path counts,
 * and `close()`.
 */
export async function startSite({ pages, seed = 1, port = 0, latencyMs = 0 }) {
  const plan = sitePlan({ pages, seed });
  const counts = new Map();
  let fetches = 0;
  const timers = new Set();
  const later = (ms, fn) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };
  const server = createServer((req, res) => {
    if (latencyMs > 0 && !req.url?.startsWith('/__stats')) later(latencyMs, () => answer(req, res));
    else answer(req, res);
  });
  const answer = (req, res) => {
    const path = new URL(req.url ?? '/', 'http://site').pathname;
    if (path === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ fetches, counts: Object.fromEntries(counts) }));
      return;
    }
    fetches++;
    const n = (counts.get(path) ?? 0) + 1;
    counts.set(path, n);
    const html = (body) => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    const i = plan.indexOf(path);
    if (i === null) {
      const body = path.startsWith('/elsewhere/') ? '<!doctype html><title>Elsewhere</title><p>out of scope</p>' : '<!doctype html><title>Not found</title><p>no such page</p>';
      res.writeHead(path.startsWith('/elsewhere/') ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
      res.end(body);
      return;
    }
    const origin = `http://${req.headers.host ?? '127.0.0.1'}`;
    const { kind } = plan.page(i);
    if (kind === 'failOnce' && n === 1) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('busy, try again');
    } else if (kind === 'limitedOnce' && n === 1) {
      res.writeHead(429, { 'content-type': 'text/plain', 'retry-after': '1' });
      res.end('slow down');
    } else if (kind === 'slow') {
      later(SLOW_MS, () => html(renderPage(plan, i, origin)));
    } else if (kind === 'timeoutOnce' && n === 1) {
      later(TIMEOUT_ONCE_MS, () => html(renderPage(plan, i, origin)));
    } else {
      html(renderPage(plan, i, origin));
    }
  };
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const address = server.address();
  const origin = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}`;
  return {
    url: `${origin}/site/`,
    origin,
    plan,
    stats: () => ({ fetches, counts: new Map(counts) }),
    close: () =>
      new Promise((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function flag(argv, name, fallback) {
  const at = argv.indexOf(`--${name}`);
  if (at === -1) return fallback;
  const value = Number(argv[at + 1]);
  if (!Number.isInteger(value) || value < 0) {
    process.stderr.write(`site: --${name} needs a whole number, got \`${argv[at + 1]}\`\n`);
    process.exit(2);
  }
  return value;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2);
  const site = await startSite({ pages: flag(argv, 'pages', 1000), seed: flag(argv, 'seed', 1), port: flag(argv, 'port', 8080), latencyMs: flag(argv, 'latency-ms', 0) });
  const reach = site.plan.reachable();
  process.stderr.write(
    `site: ${site.plan.pages} pages at ${site.url} (${reach.paths.size} in-scope paths reachable, ${reach.missing.length} missing, ` +
      `${reach.oversized.length} oversized); fetch counts at ${site.origin}/__stats\n`,
  );
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => site.close().then(() => process.exit(0)));
}
