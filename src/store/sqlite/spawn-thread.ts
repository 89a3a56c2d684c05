import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * Starts one of this folder's thread entries (`thread-entry` for the store thread, `verify-entry` for a run's
 * check beside it). From the sources (the tests), the thread compiles its TypeScript through tsx, registered
 * first; from dist, it runs the built file. No flags of the process reach it (an --eval's --input-type, say):
 * the thread needs none, and some would stop it.
 */
export function spawnThread(entry: 'thread-entry' | 'verify-entry', workerData: unknown): Worker {
  if (import.meta.url.endsWith('.ts')) {
    // tsx's ESM build of its API (require.resolve finds the CommonJS one beside it).
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
    const url = new URL(`./${entry}.ts`, import.meta.url).href;
    const boot = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(url)}); });`;
    return new Worker(boot, { eval: true, workerData, execArgv: [] });
  }
  return new Worker(new URL(`./${entry}.js`, import.meta.url), { workerData, execArgv: [] });
}
