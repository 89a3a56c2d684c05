/**
 * A web crawler: one node per page, keyed by its normalised URL, so a page linked from many others (or from
 * itself, through a cycle) is fetched once per run. Each page emits one record, `{ url, status, title, links }`,
 * and its in-scope links become its children. Survives kill -9: a resumed run does not fetch again a page whose
 * fetch was journaled.
 *
 *   node bench/site.mjs --pages 1000 &                          # a synthetic site on http://127.0.0.1:8080/site/
 *   npx rlm run examples/crawl.ts --input '{"url":"http://127.0.0.1:8080/site/"}' --run crawl-1 --concurrency 16
 *   npx rlm results crawl-1                                     # one JSON line per page
 *
 * - Scope: only links on the start URL's origin whose path starts with the start URL's directory.
 * - Links: `<a href>` read by htmlparser2's streaming parser; fragments stripped, URLs normalised (`normalise`).
 * - 4xx: recorded with its status, not retried. 429: deferred by its Retry-After (`RetryLater`). 5xx and
 *   timeouts: thrown, so retried with backoff. A body over `MAX_BYTES` is refused as unparseable
 *   (NonRetryableError): the page ends in the dead-letter queue and the crawl goes on.
 * - `maxDepth` (links from the start page) stops following links. `maxPages` bounds the pages fetched: a page
 *   given `maxPages: n` counts itself and splits the other n - 1 among the links it follows (each gets at least
 *   one), so the run never fetches more than the root's maxPages; a link to a page already in the run brings its
 *   share nowhere, so a crawl may end below the bound. It is also the run's `estimate`.
 */
import { Parser } from 'htmlparser2';
import { defineTask, NonRetryableError, RetryLater } from 'rlm';
import { z } from 'zod';

const Input = z.object({
  url: z.string().url(),
  maxDepth: z.number().int().min(0).optional(),
  /** At most this many pages through this one, itself included (the root's: the whole crawl's bound). */
  maxPages: z.number().int().min(1).optional(),
});
export type CrawlInput = z.infer<typeof Input>;

/** What every page of a run inherits from the start page (the root sets it as its children's context). */
interface Scope {
  origin: string;
  /** The start URL's directory: a followed link's path starts with it. */
  dir: string;
  maxDepth: number | null;
}

/** One page as the crawl records it: `links` is how many in-scope links it followed. */
export interface PageRecord {
  url: string;
  status: number;
  title: string;
  links: number;
}

/** What a fetch left in the journal: the page's status, title and in-scope links, never its body. */
interface Fetched {
  status: number;
  title: string;
  links: string[];
  /** Set when the body was not parsed (over MAX_BYTES): the step dead-letters the page. */
  unparseable?: string;
}

/** The largest body the crawler parses, in bytes; a longer page is refused as unparseable. */
export const MAX_BYTES = 1 << 20;
/** A request that has not answered by then is abandoned and retried, in milliseconds. */
export const FETCH_TIMEOUT_MS = 5_000;
/** The wait when a 429 carries no usable Retry-After, in milliseconds. */
const DEFAULT_RETRY_AFTER_MS = 1_000;

/** One key per page: no fragment, the WHATWG canonical form (lower-case scheme and host, no default port, no dot segments). */
export function normalise(url: string): string {
  const parsed = new URL(url);
  parsed.hash = '';
  if (parsed.search === '?') parsed.search = '';
  return parsed.href;
}

/**
 * The politeness group of a page: its host. Concurrency per host is the process's `--concurrency` for now;
 * this is the one function a per-group limit would key on.
 */
export function host(input: { url: string }): string {
  return new URL(input.url).host;
}

export function scopeOf(startUrl: string, maxDepth: number | undefined): Scope {
  const start = new URL(normalise(startUrl));
  return { origin: start.origin, dir: start.pathname.slice(0, start.pathname.lastIndexOf('/') + 1), maxDepth: maxDepth ?? null };
}

export function inScope(url: URL, scope: Scope): boolean {
  return url.origin === scope.origin && url.pathname.startsWith(scope.dir);
}

/** Milliseconds a Retry-After header asks for (delta-seconds or an HTTP date). */
function retryAfterMs(header: string | null): number {
  if (header === null) return DEFAULT_RETRY_AFTER_MS;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? DEFAULT_RETRY_AFTER_MS : Math.max(0, at - Date.now());
}

/**
 * Reads an HTML body through htmlparser2 as it streams in: the title's text and every `<a href>`, resolved
 * against `base`, normalised, kept when in scope, each once. Stops reading past MAX_BYTES.
 */
export async function readPage(body: ReadableStream<Uint8Array>, base: string, scope: Scope, self: string): Promise<Omit<Fetched, 'status'>> {
  const links = new Set<string>();
  let title = '';
  let inTitle = false;
  let titleDone = false;
  const parser = new Parser(
    {
      onopentag(name, attributes) {
        if (name === 'title' && !titleDone) inTitle = true;
        if (name !== 'a' || attributes.href === undefined) return;
        let url: URL;
        try {
          url = new URL(attributes.href, base);
        } catch {
          return; // Not a URL: nothing to follow.
        }
        if (url.protocol !== 'http:' && url.protocol !== 'https:') return;
        if (!inScope(url, scope)) return;
        const key = normalise(url.href);
        if (key !== self) links.add(key);
      },
      ontext(text) {
        if (inTitle) title += text;
      },
      onclosetag(name) {
        if (name === 'title' && inTitle) {
          inTitle = false;
          titleDone = true;
        }
      },
    },
    { decodeEntities: true },
  );
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    if (bytes > MAX_BYTES) {
      await reader.cancel();
      return { title: '', links: [], unparseable: `the body is over ${MAX_BYTES} bytes, more than this crawler parses` };
    }
    parser.write(decoder.decode(value, { stream: true }));
  }
  parser.write(decoder.decode());
  parser.end();
  return { title: title.trim().replace(/\s+/g, ' '), links: [...links] };
}

/**
 * Fetches one page within FETCH_TIMEOUT_MS (headers and body) or until `signal` aborts. Throws on what should be
 * retried (5xx, a timeout, a reset connection) or deferred (429).
 */
export async function fetchPage(url: string, scope: Scope, signal: AbortSignal): Promise<Fetched> {
  // A timer and a controller of its own rather than AbortSignal.any([signal, AbortSignal.timeout(ms)]): on
  // Node 20 the composite holds its sources weakly, and a collected timeout signal never fires.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException(`no answer from ${url} within ${FETCH_TIMEOUT_MS} ms`, 'TimeoutError')), FETCH_TIMEOUT_MS);
  const stop = () => controller.abort(signal.reason);
  if (signal.aborted) stop();
  signal.addEventListener('abort', stop, { once: true });
  try {
    const res = await fetch(url, { signal: controller.signal, headers: { accept: 'text/html' } });
    if (res.status === 429) {
      await res.body?.cancel();
      throw new RetryLater(retryAfterMs(res.headers.get('retry-after')), { reason: `429 from ${url}` });
    }
    if (res.status >= 500) {
      await res.body?.cancel();
      throw new Error(`HTTP ${res.status} from ${url}`);
    }
    // A redirect ends on another URL: its relative links resolve against where it landed.
    const base = res.url || url;
    if (res.status >= 400 || !res.body || !(res.headers.get('content-type') ?? '').includes('html')) {
      await res.body?.cancel();
      return { status: res.status, title: '', links: [] };
    }
    return { status: res.status, ...(await readPage(res.body, base, scope, url)) };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', stop);
  }
}

export default defineTask<CrawlInput>({
  name: 'crawl',
  input: Input,
  key: ({ url }) => normalise(url),
  // Breadth-first: shallow pages first, so `maxDepth` counts links along a short path.
  order: 'bfs',
  limits: { maxAttempts: 4, backoffMs: 500, maxBackoffMs: 30_000, timeoutMs: 60_000, maxChildren: 10_000 },
  // Without maxPages the size is unknown; an estimate must be a number, so 1, a true lower bound.
  estimate: ({ maxPages }) => maxPages ?? 1,
  async run(input, ctx) {
    const url = normalise(input.url);
    const scope = ctx.depth === 0 ? scopeOf(input.url, input.maxDepth) : (ctx.context as unknown as Scope);
    // The fetch is journaled: a step re-run after a crash (its group not committed yet) reads the page's
    // summary back instead of asking the site again. Only a fetch in flight at the crash is made twice.
    const page = await ctx.effect('fetch', () => fetchPage(url, scope, ctx.signal));
    if (page.unparseable) throw new NonRetryableError(`${url}: ${page.unparseable}`);
    let follow = scope.maxDepth === null || ctx.depth < scope.maxDepth ? page.links : [];
    const share = input.maxPages === undefined ? undefined : input.maxPages - 1;
    if (share !== undefined) follow = follow.slice(0, share);
    const record: PageRecord = { url, status: page.status, title: page.title, links: follow.length };
    ctx.emit(record);
    const context = ctx.depth === 0 ? (scope as unknown as Record<string, string | number | null>) : undefined;
    // The share of this page's bound each followed link gets: as even as it goes, the remainder to the first.
    const childInput = (link: string, i: number): CrawlInput =>
      share === undefined ? { url: link } : { url: link, maxPages: Math.floor(share / follow.length) + (i < share % follow.length ? 1 : 0) };
    return { children: follow.map((link, i) => ({ input: childInput(link, i), context })) };
  },
});
