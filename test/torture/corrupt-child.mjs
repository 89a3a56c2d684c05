/*
 * Runs mutated copies of a SQLite store through rlm in one process, apart from the harness (a native crash
 * would only end this process): for each file, open the store, check it, and resume its run with the task
 * module; after a run that ended, `doctor` says what rlm finds in the file. Prints one JSON line per case. Usage: node corrupt-child.mjs <cases.json>
 *   cases.json: { module, runId, timeoutMs, files: [path…] }
 */
import { readFileSync } from 'node:fs';
import { openEngine } from '../../dist/index.js';
import { SqliteStore } from '../../dist/store/sqlite/index.js';

const { module, runId, timeoutMs, files } = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const task = (await import(module)).default;

function describe(error) {
  return { code: typeof error?.code === 'string' ? error.code : null, name: error?.name ?? null, message: String(error?.message ?? error).slice(0, 300) };
}

for (const file of files) {
  const out = { file, stage: 'open', ok: false };
  const store = new SqliteStore({ path: file, mustExist: true });
  let engine;
  try {
    await store.migrate();
    out.stage = 'check';
    out.integrity = store.integrityCheck().slice(0, 3);
    out.stage = 'resume';
    engine = await openEngine({ store, leaseMs: 2_000, heartbeatMs: 200, pollMs: 10 });
    const handle = await engine.resume(task, runId);
    let timer;
    const outcome = await Promise.race([
      handle.done,
      new Promise((resolve) => {
        timer = setTimeout(() => {
          handle.abort();
          resolve({ state: 'hung' });
        }, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    out.state = outcome.state;
    out.result = outcome.result ?? null;
    out.counts = outcome.counts ?? null;
    out.ok = true;
  } catch (error) {
    out.error = describe(error);
  } finally {
    try {
      await engine?.close();
      await store.close();
    } catch (error) {
      out.closeError = describe(error);
    }
  }
  if (out.ok) {
    // What rlm itself sees in the file the run left: damage in a value the run never read is still refused on read.
    const after = new SqliteStore({ path: file, mustExist: true });
    try {
      out.doctor = (await after.doctor()).problems.slice(0, 3);
    } catch (error) {
      out.doctor = [`${describe(error).code}: ${describe(error).message}`];
    } finally {
      await after.close().catch(() => undefined);
    }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
