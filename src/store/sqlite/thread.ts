import { resolve } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { StoreUnavailableError } from '../../engine/errors.js';
import { reportBeacon } from '../../failpoints.js';
import type { StateCounts, Store, StoreCapabilities } from '../store.js';
import type { SqliteStoreConfig } from './sqlite-store.js';
import { spawnThread } from './spawn-thread.js';
import { verifyRunApart } from './verify.js';
import { type Call, encodeOps, errorFromWire, type Reply, type StoreMethod } from './thread-wire.js';

interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/**
 * The SQLite store on a thread of its own. Every call goes, in order, to one SqliteStore on a worker thread
 * (thread-entry.ts), so SQLite's work overlaps the steps the engine runs meanwhile: the same file, the same
 * transactions, the same guarantees, on both cores. The thread holds the process open only while a call is
 * pending; `close()` ends it.
 */
export class SqliteThreadStore implements Store {
  readonly capabilities: StoreCapabilities = { concurrentWriters: false, notifications: false, orderedCommits: true };
  readonly description: string;
  readonly path: string;
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  /** Why the thread is gone, once it is: every later call fails with it. */
  #gone: Error | undefined;

  constructor(config: SqliteStoreConfig) {
    this.path = resolve(config.path);
    this.description = `sqlite:${this.path}`;
    const workerData = { ...config, path: this.path } satisfies SqliteStoreConfig;
    this.#worker = spawnThread('thread-entry', workerData);
    this.#worker.unref();
    this.#worker.on('message', (reply: Reply) => this.#reply(reply));
    this.#worker.on('error', (error) => this.#end(new StoreUnavailableError(`The SQLite store thread failed: ${error.message}`, { cause: error })));
    this.#worker.on('exit', (code) => this.#end(new StoreUnavailableError(`The SQLite store thread exited (code ${code}).`)));
  }

  #reply(reply: Reply): void {
    if ('beacon' in reply) {
      const flag = reply.flag;
      reportBeacon(reply.beacon, () => {
        if (!flag) return;
        Atomics.store(flag, 0, 1);
        Atomics.notify(flag, 0);
      });
      return;
    }
    const call = this.#pending.get(reply.id);
    if (!call) return;
    this.#pending.delete(reply.id);
    if (this.#pending.size === 0) this.#worker.unref();
    if ('error' in reply) call.reject(errorFromWire(reply.error));
    else call.resolve(reply.value);
  }

  #end(reason: Error): void {
    this.#gone ??= reason;
    for (const call of this.#pending.values()) call.reject(this.#gone);
    this.#pending.clear();
  }

  /** Sends one call; `transfer` lists buffers moved to the thread rather than copied. */
  #call<T>(method: StoreMethod, args: unknown[], transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.#gone) return Promise.reject(this.#gone);
    const id = this.#nextId++;
    if (this.#pending.size === 0) this.#worker.ref();
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#worker.postMessage({ id, method, args } satisfies Call, transfer);
    });
  }

  migrate: Store['migrate'] = () => this.#call('migrate', []);
  async close(): Promise<void> {
    if (this.#gone) return;
    try {
      await this.#call('close', []);
    } finally {
      this.#gone = new StoreUnavailableError(`The store ${this.path} is closed.`);
      // An unreferenced thread's termination keeps nothing alive: the process could end before close() returns,
      // with exit code 0 whatever the command decided (a store error, a pause).
      this.#worker.ref();
      await this.#worker.terminate();
    }
  }
  allocateIds: Store['allocateIds'] = (...args) => this.#call('allocateIds', args);
  createRun: Store['createRun'] = (...args) => this.#call('createRun', args);
  getRun: Store['getRun'] = (...args) => this.#call('getRun', args);
  listRuns: Store['listRuns'] = (...args) => this.#call('listRuns', args);
  countRuns: Store['countRuns'] = (...args) => this.#call('countRuns', args);
  setRunState: Store['setRunState'] = (...args) => this.#call('setRunState', args);
  settleRun: Store['settleRun'] = (...args) => this.#call('settleRun', args);
  recordRunCode: Store['recordRunCode'] = (...args) => this.#call('recordRunCode', args);
  setRunEstimate: Store['setRunEstimate'] = (...args) => this.#call('setRunEstimate', args);
  registerWorker: Store['registerWorker'] = (...args) => this.#call('registerWorker', args);
  heartbeat: Store['heartbeat'] = (...args) => this.#call('heartbeat', args);
  listWorkers: Store['listWorkers'] = (...args) => this.#call('listWorkers', args);
  workerLeases: Store['workerLeases'] = () => this.#call('workerLeases', []);
  takeBack: Store['takeBack'] = (...args) => this.#call('takeBack', args);
  markAlone: NonNullable<Store['markAlone']> = (...args) => this.#call('markAlone', args);
  releaseWorker: Store['releaseWorker'] = (...args) => this.#call('releaseWorker', args);
  claimNodes: Store['claimNodes'] = (...args) => this.#call('claimNodes', args);
  commit: Store['commit'] = (workerId, ops) => {
    const wire = encodeOps(ops);
    return this.#call('commit', [workerId, wire], [wire.bytes.buffer as ArrayBuffer]);
  };
  getEffect: Store['getEffect'] = (...args) => this.#call('getEffect', args);
  childResults: Store['childResults'] = (...args) => this.#call('childResults', args);
  getNode: Store['getNode'] = (...args) => this.#call('getNode', args);
  listChildren: Store['listChildren'] = (...args) => this.#call('listChildren', args);
  listNodes: Store['listNodes'] = (...args) => this.#call('listNodes', args);
  listEffects: Store['listEffects'] = (...args) => this.#call('listEffects', args);
  readEmits: Store['readEmits'] = (...args) => this.#call('readEmits', args);
  subtreeCounts: Store['subtreeCounts'] = (...args) => this.#call('subtreeCounts', args);
  subtreeCountsUpTo: Store['subtreeCountsUpTo'] = (...args) => this.#call('subtreeCountsUpTo', args);
  depthHistogram: Store['depthHistogram'] = (...args) => this.#call('depthHistogram', args);
  nextWake: Store['nextWake'] = (...args) => this.#call('nextWake', args);
  acquireGroup: Store['acquireGroup'] = (...args) => this.#call('acquireGroup', args);
  setCostBudget: Store['setCostBudget'] = (...args) => this.#call('setCostBudget', args);
  chargeCost: Store['chargeCost'] = (...args) => this.#call('chargeCost', args);
  subtreeCost: Store['subtreeCost'] = (...args) => this.#call('subtreeCost', args);
  sendSignal: Store['sendSignal'] = (...args) => this.#call('sendSignal', args);
  getSignal: Store['getSignal'] = (...args) => this.#call('getSignal', args);
  compact: NonNullable<Store['compact']> = (...args) => this.#call('compact', args);
  cancelSubtree: NonNullable<Store['cancelSubtree']> = (...args) => this.#call('cancelSubtree', args);
  redrive: Store['redrive'] = (...args) => this.#call('redrive', args);
  dropDead: Store['dropDead'] = (...args) => this.#call('dropDead', args);
  decideParked: Store['decideParked'] = (...args) => this.#call('decideParked', args);
  setNodeBudget: Store['setNodeBudget'] = (...args) => this.#call('setNodeBudget', args);
  deleteRun: Store['deleteRun'] = (...args) => this.#call('deleteRun', args);
  purgeRuns: Store['purgeRuns'] = (...args) => this.#call('purgeRuns', args);
  restartRun: Store['restartRun'] = (...args) => this.#call('restartRun', args);
  /** Beside the store thread, on a connection of its own: the store thread goes on answering meanwhile. */
  verifyRun: NonNullable<Store['verifyRun']> = (runId) => verifyRunApart(this.path, this.description, runId);
  /** The run's counters recounted from its rows (see SqliteStore.recount). */
  recount(runId: string): Promise<StateCounts> {
    return this.#call('recount', [runId]);
  }
}
