/*
 * The dashboard's HTTP server: one page and a JSON API over a Store, on 127.0.0.1 only.
 *
 * GET  /                                          the page
 * GET  /api/runs                                  runs, newest first, with live rates
 * GET  /api/runs/:run                             one run: counts, progress, chart series, DLQ, parked nodes (and
 *                                                 its depth histogram when small or counted already)
 * GET  /api/runs/:run/depths                      the run's depth histogram (a scan of its nodes: asked for apart)
 * GET  /api/runs/:run/nodes/:node                 one node: input, context, result, attempts, errors, effects
 * GET  /api/runs/:run/nodes/:node/tree            the node as a tree row, with its subtree counts
 * GET  /api/runs/:run/nodes/:node/children        a page of its children (?offset=&limit=)
 * POST /api/runs/:run/pause | resume              the run's gate
 * POST /api/runs/:run/retry | drop                dead nodes: { "nodes": [ids] } or { "all": true }
 * POST /api/runs/:run/approve | reject            parked nodes, the same body
 *
 * A local dashboard is still reachable from any web page the user opens, so the server answers only requests
 * addressed to it by a loopback name (no DNS rebinding), and takes actions only as JSON POSTs from its own
 * origin (a cross-site form cannot send them).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '../engine/errors.js';
import type { Store } from '../store/store.js';
import { ApiError, CHILDREN_PAGE, DashboardApi, type NodeAction, errorResponse, parseNodeId, parseRunId } from './api.js';
import { PAGE_SCRIPT, renderPage } from './page.js';

export interface DashboardOptions {
  store: Store;
  /** Port on 127.0.0.1; 0 picks a free one. @default 7070 */
  port?: number;
  /** How often run counters are read for the live rate and the charts, in ms. @default 1_000 */
  sampleMs?: number;
}

export interface Dashboard {
  /** `http://127.0.0.1:<port>/` */
  readonly url: string;
  readonly port: number;
  /** Stops serving and sampling. The store stays open: it belongs to the caller. */
  close(): Promise<void>;
}

export const DEFAULT_PORT = 7070;
const HOST = '127.0.0.1';
const MAX_BODY_BYTES = 64 * 1024;
const NODE_ACTIONS: readonly NodeAction[] = ['retry', 'drop', 'approve', 'reject'];

/**
 * Serves the dashboard until `close()`.
 * ```ts
 * const dashboard = await startDashboard({ store, port: 0 });
 * console.log(dashboard.url); // http://127.0.0.1:40123/
 * ```
 */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const sampleMs = options.sampleMs ?? 1_000;
  const api = new DashboardApi(options.store, sampleMs);
  const scriptHash = createHash('sha256').update(PAGE_SCRIPT).digest('base64');
  const page = renderPage();
  let port = 0;

  const server = createServer((req, res) => {
    handle(req, res).catch((error) => sendError(res, error));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!isLoopbackHost(req.headers.host, port)) throw new ApiError(403, 'This dashboard answers only requests to 127.0.0.1 or localhost.');
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter((part) => part !== '');
    if (req.method === 'GET' && parts.length === 0) return sendPage(res, page, scriptHash);
    if (parts[0] !== 'api') throw new ApiError(404, `Nothing at ${url.pathname}; the dashboard is at /.`);

    const [, collection, runText, sub, nodeText, leaf] = parts;
    if (collection !== 'runs' || parts.length > 6) throw new ApiError(404, `No API route ${url.pathname}.`);
    if (req.method === 'GET') {
      if (runText === undefined) return sendJson(res, await api.overview());
      const runId = parseRunId(runText);
      if (sub === undefined) return sendJson(res, await api.run(runId));
      if (sub === 'depths' && parts.length === 4) return sendJson(res, await api.depths(runId));
      if (sub !== 'nodes' || nodeText === undefined) throw new ApiError(404, `No API route ${url.pathname}.`);
      const nodeId = parseNodeId(nodeText);
      if (leaf === undefined) return sendJson(res, await api.node(runId, nodeId));
      if (leaf === 'tree') return sendJson(res, await api.treeNode(runId, nodeId));
      if (leaf === 'children') {
        const offset = intParam(url, 'offset', 0);
        const limit = intParam(url, 'limit', CHILDREN_PAGE);
        return sendJson(res, await api.children(runId, nodeId, offset, limit));
      }
      throw new ApiError(404, `No API route ${url.pathname}.`);
    }
    if (req.method === 'POST') {
      if (runText === undefined || sub === undefined || parts.length !== 4) throw new ApiError(404, `No API action ${url.pathname}.`);
      const body = await readJson(req, port);
      const runId = parseRunId(runText);
      if (sub === 'pause' || sub === 'resume') return sendJson(res, await api.gate(runId, sub));
      if ((NODE_ACTIONS as readonly string[]).includes(sub)) return sendJson(res, await api.act(runId, sub as NodeAction, body));
      throw new ApiError(404, `No API action \`${sub}\`; use pause, resume, retry, drop, approve or reject.`);
    }
    res.setHeader('Allow', 'GET, POST');
    throw new ApiError(405, `Method ${req.method} is not allowed; the API reads with GET and acts with POST.`);
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      if (error.code === 'EADDRINUSE') reject(new ConfigError(`Port ${options.port ?? DEFAULT_PORT} on ${HOST} is in use; pass --port N, or --port 0 for a free one.`, { cause: error }));
      else if (error.code === 'EACCES') reject(new ConfigError(`Port ${options.port ?? DEFAULT_PORT} on ${HOST} needs privileges; pass --port above 1023, or --port 0.`, { cause: error }));
      else reject(error);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(options.port ?? DEFAULT_PORT, HOST);
  });
  port = (server.address() as AddressInfo).port;

  // The sampler keeps the rate and frontier history even while no page is open.
  const sampler = setInterval(() => {
    api.sample().catch(() => undefined);
  }, sampleMs);
  sampler.unref();
  await api.sample().catch(() => undefined);

  return {
    url: `http://${HOST}:${port}/`,
    port,
    close: () => closeServer(server, sampler),
  };
}

function closeServer(server: Server, sampler: NodeJS.Timeout): Promise<void> {
  clearInterval(sampler);
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Polling pages keep connections alive; without this, close waits for them to time out.
    server.closeAllConnections();
  });
}

function isLoopbackHost(host: string | undefined, port: number): boolean {
  if (!host) return false;
  return host === `${HOST}:${port}` || host === `localhost:${port}` || host === `[::1]:${port}`;
}

function intParam(url: URL, name: string, fallback: number): number {
  const text = url.searchParams.get(name);
  if (text === null) return fallback;
  if (!/^\d{1,9}$/.test(text)) throw new ApiError(400, `Expected \`${name}\` to be an integer >= 0, got \`${text.slice(0, 40)}\`.`);
  return Number(text);
}

async function readJson(req: IncomingMessage, port: number): Promise<unknown> {
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${HOST}:${port}` && origin !== `http://localhost:${port}`) {
    throw new ApiError(403, `Actions are taken only from the dashboard's own page, not from ${origin.slice(0, 100)}.`);
  }
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new ApiError(415, 'Actions take a JSON body (Content-Type: application/json).');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, `The request body is larger than ${MAX_BODY_BYTES} bytes.`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ApiError(400, `The request body is not valid JSON: ${(error as Error).message}`);
  }
}

const COMMON_HEADERS = {
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

function sendPage(res: ServerResponse, html: string, scriptHash: string): void {
  res.writeHead(200, {
    ...COMMON_HEADERS,
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Security-Policy': `default-src 'none'; script-src 'sha256-${scriptHash}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  });
  res.end(html);
}

function sendJson(res: ServerResponse, body: unknown, status = 200): void {
  res.writeHead(status, { ...COMMON_HEADERS, 'Content-Type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

function sendError(res: ServerResponse, error: unknown): void {
  const { status, message } = errorResponse(error);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, { error: message }, status);
}
