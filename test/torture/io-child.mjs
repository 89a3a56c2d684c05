/*
 * SQLite's I/O-error loop applied to rlm, in one process apart from the harness: for k = 1, 2, 3 … a fresh run
 * meets an injected store error at the k-th hit of a failpoint ("once", or "from k onward"), must fail with an
 * RlmError code, and is then resumed without faults to its end, which must be the exact result on a store that
 * passes integrity_check. The loop ends when a run gets through without meeting the k-th hit.
 * Usage: node io-child.mjs <job.json>; prints one JSON line per k and a summary line.
 *   job.json: { module, runId, input, dir, configs: [{ phase, code, onward }…], maxInjections, expected: { state, result } }
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { configureFailpoints, failpoints } from '../../dist/failpoints.js';
import { openEngine } from '../../dist/index.js';
import { SqliteStore } from '../../dist/store/sqlite/index.js';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const task = (await import(job.module)).default;
// One step at a time, each committed alone: as many store calls per run as the workload allows.
const options = { leaseMs: 5_000, heartbeatMs: 1_000, pollMs: 2, commitEverySteps: 1, commitEveryMs: 1, concurrency: 1 };
const db = join(job.dir, 'loop.db');

async function attempt(spec, phase) {
  configureFailpoints(spec);
  const store = new SqliteStore({ path: db });
  let engine;
  try {
    // The workers of earlier attempts died with their store: take their leases back, as a new process would.
    await store.migrate();
    const alive = (await store.listWorkers()).filter((w) => w.state === 'alive').map((w) => w.id);
    if (alive.length > 0) await store.takeBack({ deadIds: alive });
    engine = await openEngine({ store, ...options });
    const exists = await store.getRun(job.runId);
    const handle = exists ? await engine.resume(task, job.runId) : await engine.start(task, job.input, { runId: job.runId });
    const outcome = await handle.done;
    return { state: outcome.state, result: outcome.result ?? null, hits: failpoints.counts()[phase] ?? 0 };
  } catch (error) {
    return {
      error: { code: typeof error?.code === 'string' ? error.code : null, message: String(error?.message ?? error).slice(0, 200) },
      hits: failpoints.counts()[phase] ?? 0,
    };
  } finally {
    try {
      await engine?.close();
    } catch {
      // Its store is poisoned already.
    }
    try {
      await store.close();
    } catch {
      // As above.
    }
    configureFailpoints(undefined);
  }
}

for (const config of job.configs) {
  let injected = 0;
  let uncoded = 0;
  let wrong = 0;
  let through = false;
  for (let k = 1; injected < job.maxInjections; k++) {
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${db}${suffix}`, { force: true });
    const faulted = await attempt(`${config.phase}=throw(${config.code})@${k}${config.onward ? '+' : ''}`, config.phase);
    const out = { k, faulted };
    if (!faulted.error && faulted.hits < k) {
      through = true;
      break;
    }
    injected++;
    if (!/^(STORE_IO|STORE_CORRUPT|STORE_UNAVAILABLE)$/.test(faulted.error?.code ?? '')) uncoded++;
    let after = { error: { code: 'NEVER', message: 'the quiet resume did not end' } };
    for (let i = 0; i < 5; i++) {
      after = await attempt(undefined, config.phase);
      if (!after.error) break;
    }
    const store = new SqliteStore({ path: db });
    const integrity = store.integrityCheck();
    await store.close();
    if (after.error || after.state !== job.expected.state || JSON.stringify(after.result) !== JSON.stringify(job.expected.result) || integrity[0] !== 'ok') {
      wrong++;
      process.stdout.write(`${JSON.stringify({ ...out, after, integrity: integrity.slice(0, 2), wrongRun: true })}\n`);
    }
  }
  process.stdout.write(`${JSON.stringify({ summary: true, config, injected, uncoded, wrong, through })}\n`);
}
