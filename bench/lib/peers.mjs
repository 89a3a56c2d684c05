/** Peer rows: the same durable recursion on BullMQ, graphile-worker and pg-boss, each in its own process. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase, dropDatabase } from './pg.mjs';
import { lastWords, measureScript } from './proc.mjs';
import { treeSize } from './tree.mjs';

/** Runs one peer script and turns its outcome into a row; a peer that fails shows its error and the bench goes on. */
export async function peerRow({ section, system, script, options, fanout, depth, floor, timeoutMs, note = '' }) {
  const expected = treeSize(fanout, depth);
  const base = { section, workload: 'tree walk', system, nodes: expected, floor };
  let result;
  try {
    result = await measureScript(script, { fanout, depth, ...options }, { timeoutMs });
  } catch (error) {
    return { ...base, seconds: null, rssMb: null, status: 'error', note: `error: ${error.message}` };
  }
  const outcome = result.outcome;
  if (!outcome) return { ...base, seconds: null, rssMb: null, status: 'error', note: `error: ${lastWords(result)}` };
  // A peer that spawns processes of its own is measured over all of them, as rlm's --workers rows are.
  const rssKb = result.processes > 1 ? result.rssTotalKb : result.rssKb;
  const rssMb = rssKb === null ? null : rssKb / 1024;
  if (outcome.partial) {
    // Too slow for the bench's time budget: the rate of the jobs it completed by the deadline stands in.
    const partial = `PARTIAL: stopped at the ${options.deadlineSeconds} s deadline after ${outcome.nodes.toLocaleString('en-US')} of ${expected.toLocaleString('en-US')} jobs`;
    return { ...base, nodes: outcome.nodes, seconds: outcome.seconds, rssMb, status: 'ok', note: [partial, outcome.settings, note].filter(Boolean).join('; ') };
  }
  if (outcome.result !== undefined && outcome.result !== expected) return { ...base, seconds: null, rssMb: null, status: 'error', note: `error: ${outcome.result} rows stored, expected ${expected}` };
  if (outcome.nodes !== expected) return { ...base, seconds: null, rssMb: null, status: 'error', note: `error: ${outcome.nodes} jobs completed, expected ${expected}` };
  return { ...base, seconds: outcome.seconds, rssMb, status: 'ok', note: [outcome.settings, note].filter(Boolean).join('; ') };
}

/** Runs `fn(url)` against a fresh PostgreSQL database `name`, dropped afterwards whatever happens. */
export async function withDatabase(name, fn) {
  let url;
  try {
    url = await createDatabase(name);
  } catch (error) {
    return { unavailable: `PostgreSQL: ${error.message}` };
  }
  try {
    return await fn(url);
  } finally {
    await dropDatabase(name).catch(() => {});
  }
}

async function reachable(port) {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * A private redis-server with the append-only file fsynced on every write (the durable setting), on a free port
 * in a temp directory; `stop()` kills it and removes the directory. Resolves to null when redis-server is missing.
 */
export async function startDurableRedis() {
  let port = 6390;
  while (await reachable(port)) port++;
  const dir = mkdtempSync(join(tmpdir(), 'rlm-bench-redis-'));
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], {
    stdio: 'ignore',
  });
  const failed = new Promise((resolve) => server.once('error', () => resolve(true)));
  const stop = () => {
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 100; i++) {
    if (await Promise.race([failed, new Promise((resolve) => setTimeout(() => resolve(false), 50))])) {
      stop();
      return null;
    }
    if (await reachable(port)) return { port, stop };
  }
  stop();
  return null;
}
