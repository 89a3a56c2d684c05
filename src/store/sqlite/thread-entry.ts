/**
 * The store thread: one SqliteStore on a worker thread, answering the calls of a SqliteThreadStore (thread.ts).
 * SQLite's work (binding, B-trees, the WAL's writes and fsyncs) then runs beside the steps instead of between them.
 */
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { failpoints } from '../../failpoints.js';
import { SqliteStore, type SqliteStoreConfig } from './sqlite-store.js';
import { type Call, decodeOps, errorToWire, type Reply, STORE_METHODS, type WireCommit } from './thread-wire.js';

if (!parentPort) throw new Error('thread-entry.js runs only as a worker thread of SqliteThreadStore.');
const port: MessagePort = parentPort;
const store = new SqliteStore(workerData as SqliteStoreConfig);
const methods = new Set<string>(STORE_METHODS);

failpoints.relay = (beacon, wait) => {
  if (!wait) {
    port.postMessage({ beacon } satisfies Reply);
    return;
  }
  // A kill or a stop follows: hold this thread until the main thread has passed the beacon on.
  const flag = new Int32Array(new SharedArrayBuffer(4));
  port.postMessage({ beacon, flag } satisfies Reply);
  Atomics.wait(flag, 0, 0, 2_000);
};

/**
 * Calls run one at a time in arrival order, with a turn of this thread's event loop between them: while groups
 * keep arriving the port would otherwise never let V8 run its own tasks (finishing a garbage collection), and
 * the thread's memory would grow for as long as the run lasts.
 */
const queue: Call[] = [];
let draining = false;

port.on('message', (call: Call) => {
  queue.push(call);
  if (!draining) {
    draining = true;
    setImmediate(drain);
  }
});

async function drain(): Promise<void> {
  const call = queue.shift();
  if (call) await answer(call);
  if (queue.length > 0) setImmediate(drain);
  else draining = false;
}

async function answer(call: Call): Promise<void> {
  try {
    if (!methods.has(call.method)) throw new Error(`The store thread has no method ${call.method}.`);
    const fn = (store as unknown as Record<string, (...args: unknown[]) => unknown>)[call.method];
    // A commit's ops come flat (see encodeOps).
    const args = call.method === 'commit' ? [call.args[0], decodeOps(call.args[1] as WireCommit)] : call.args;
    const value = await fn?.apply(store, args);
    port.postMessage({ id: call.id, value } satisfies Reply);
  } catch (error) {
    port.postMessage({ id: call.id, error: errorToWire(error) } satisfies Reply);
  }
}
