/** What a SqliteThreadStore and its store thread say to each other. */
import {
  ConfigError,
  NotFoundError,
  RefusedError,
  RlmError,
  type RlmErrorCode,
  StoreCorruptError,
  StoreIoError,
  StoreTooNewError,
  StoreUnavailableError,
} from '../../engine/errors.js';
import type { CommitOp, NewNode, Payload, Store, StepOutcome } from '../store.js';

/** The Store methods the thread answers; each is one call, in order. */
export const STORE_METHODS = [
  'migrate',
  'close',
  'allocateIds',
  'createRun',
  'getRun',
  'listRuns',
  'countRuns',
  'setRunState',
  'settleRun',
  'recordRunCode',
  'setRunEstimate',
  'registerWorker',
  'heartbeat',
  'listWorkers',
  'workerLeases',
  'takeBack',
  'markAlone',
  'releaseWorker',
  'claimNodes',
  'commit',
  'getEffect',
  'childResults',
  'getNode',
  'listChildren',
  'listNodes',
  'listEffects',
  'readEmits',
  'subtreeCounts',
  'subtreeCountsUpTo',
  'depthHistogram',
  'nextWake',
  'acquireGroup',
  'setCostBudget',
  'chargeCost',
  'subtreeCost',
  'sendSignal',
  'getSignal',
  'compact',
  'cancelSubtree',
  'redrive',
  'dropDead',
  'decideParked',
  'setNodeBudget',
  'deleteRun',
  'purgeRuns',
  'restartRun',
  'recount',
  'verifyRun',
] as const satisfies readonly (keyof Store | 'recount')[];

export type StoreMethod = (typeof STORE_METHODS)[number];

export interface Call {
  id: number;
  method: StoreMethod;
  args: unknown[];
}

/** An answer to a call, or a failpoint's beacon (with a flag to raise once it is passed on). */
export type Reply = { id: number; value: unknown } | { id: number; error: WireError } | { beacon: { fp: string; n: number }; flag?: Int32Array };

export interface WireError {
  name: string;
  message: string;
  code: unknown;
  stack: string | undefined;
}

export function errorToWire(error: unknown): WireError {
  const e = error instanceof Error ? error : new Error(String(error));
  return { name: e.name, message: e.message, code: (e as { code?: unknown }).code, stack: e.stack };
}

const CLASSES: Record<string, new (message: string) => RlmError> = {
  ConfigError,
  NotFoundError,
  RefusedError,
  StoreCorruptError,
  StoreIoError,
  StoreTooNewError,
  StoreUnavailableError,
};

/** rlm errors whose constructors take more than a message: they cross as an RlmError of the same name and code. */
const CODED = new Set(['RlmError', 'RunBusyError']);

/** The error the thread threw, as the same class on this side. */
export function errorFromWire(wire: WireError): Error {
  const Class = CLASSES[wire.name];
  let error: Error;
  if (Class) error = new Class(wire.message);
  else if (CODED.has(wire.name) && typeof wire.code === 'string') {
    error = new RlmError(wire.message, wire.code as RlmErrorCode);
    error.name = wire.name;
  }
  else {
    error = new Error(wire.message);
    error.name = wire.name;
    if (wire.code !== undefined) (error as Error & { code: unknown }).code = wire.code;
  }
  error.stack = wire.stack;
  return error;
}

/** Child states in the compact form (see encodeOps). */
const STATES = ['running', 'pending', 'done', 'waiting'] as const;

/** A commit on its way to the store thread (see encodeOps). */
export interface WireCommit {
  flat: unknown[];
  /** Every binary payload of the commit, end to end; the flat array holds each one's index. */
  bytes: Uint8Array;
  /** Where each binary payload ends in `bytes`. */
  ends: number[];
}

/**
 * A commit's ops as one flat array of values. Structured cloning thousands of small objects costs the main
 * thread more than the SQLite work it hands off, so ops travel as numbers and strings, and the common child
 * (unkeyed, priority 0, no context, error, trace or timer, keyed `<parent key>/<ord>`) as 4 to 6 values: id, ord,
 * input, state, and for a child born finished its result and attempts. Any other child travels as itself.
 * Binary payloads (msgpack) go into one buffer that is moved to the thread, not copied: cloned one by one, each
 * would cost an ArrayBuffer of its own there, or the whole pool a Buffer is cut from.
 */
export function encodeOps(ops: readonly CommitOp[]): WireCommit {
  const out: unknown[] = [];
  const parts: Uint8Array[] = [];
  const ends: number[] = [];
  let length = 0;
  const bin = <T extends Payload | null | undefined>(payload: T): T | number => {
    if (!(payload instanceof Uint8Array)) return payload;
    parts.push(payload);
    length += payload.byteLength;
    return ends.push(length) - 1;
  };
  for (const op of ops) {
    if (op.kind === 'effect') {
      out.push(0, op.runId, op.nodeId, op.nodeKey, op.epoch, op.name, bin(op.value));
      continue;
    }
    if (op.kind === 'spawn') out.push(1, op.runId, op.nodeId, op.epoch, op.spawned, op.waits, op.passDead);
    else {
      const o = op.outcome;
      out.push(2, op.runId, op.nodeId, op.epoch, op.attempts, op.waits, op.passDead, op.merged === true, op.ifReady === true);
      if (o.type === 'done' || o.type === 'wait') out.push(o.type, bin(o.result));
      else out.push(o);
      out.push(op.emits.length);
      for (const emit of op.emits) out.push(bin(emit));
    }
    const children = op.children;
    out.push(children.length);
    if (children.length === 0) continue;
    // What the common children share: the parent's key, their depth and their task version.
    const first = children[0] as NewNode;
    const parentKey = first.key.slice(0, first.key.length - String(first.ord).length - 1);
    out.push(parentKey, first.depth, first.version);
    for (const c of children) {
      const state = STATES.indexOf(c.state as (typeof STATES)[number]);
      if (
        state < 0 ||
        c.keyed ||
        c.parentId !== op.nodeId ||
        c.priority !== 0 ||
        c.context !== null ||
        c.error !== null ||
        c.traceparent !== null ||
        c.availableAt !== undefined ||
        c.depth !== first.depth ||
        c.version !== first.version ||
        c.key !== `${parentKey}/${c.ord}`
      ) {
        out.push({ ...c, input: bin(c.input), context: bin(c.context), result: bin(c.result) });
        continue;
      }
      if (state >= 2) out.push(c.id, c.ord, bin(c.input), state, bin(c.result ?? null), c.attempts ?? 0);
      else out.push(c.id, c.ord, bin(c.input), state);
    }
  }
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.byteLength;
  }
  return { flat: out, bytes, ends };
}

export function decodeOps({ flat, bytes, ends }: WireCommit): CommitOp[] {
  const ops: CommitOp[] = [];
  let i = 0;
  const next = <T>(): T => flat[i++] as T;
  /** A payload: text or null as it came, bytes by their index. */
  const pay = <T extends Payload | null | undefined>(value: T | number): T =>
    (typeof value === 'number' ? bytes.subarray(ends[value - 1] ?? 0, ends[value]) : value) as T;
  while (i < flat.length) {
    const kind = next<number>();
    if (kind === 0) {
      ops.push({ kind: 'effect', runId: next(), nodeId: next(), nodeKey: next(), epoch: next(), name: next(), value: pay(next<Payload | number>()) });
      continue;
    }
    let op: CommitOp;
    if (kind === 1) {
      op = { kind: 'spawn', runId: next(), nodeId: next(), epoch: next(), spawned: next(), waits: next(), passDead: next(), children: [] };
    } else {
      const head = {
        runId: next<string>(),
        nodeId: next<number>(),
        epoch: next<number>(),
        attempts: next<number>(),
        waits: next<boolean>(),
        passDead: next<boolean>(),
        merged: next<boolean>(),
        ifReady: next<boolean>(),
      };
      const type = next<StepOutcome | 'done' | 'wait'>();
      const outcome: StepOutcome = typeof type === 'string' ? { type, result: pay(next<Payload | null | number>()) } : type;
      const count = next<number>();
      const emits: Payload[] = [];
      for (let k = 0; k < count; k++) emits.push(pay(next<Payload | number>()));
      op = { kind: 'step', ...head, outcome, emits, children: [] };
    }
    const n = next<number>();
    if (n > 0) {
      const parentKey = next<string>();
      const depth = next<number>();
      const version = next<number>();
      const children: NewNode[] = op.children;
      for (let k = 0; k < n; k++) {
        const head = next<number | NewNode>();
        if (typeof head === 'object') {
          children.push({ ...head, input: pay(head.input), context: pay(head.context), result: pay(head.result) });
          continue;
        }
        const ord = next<number>();
        const input = pay(next<Payload | number>());
        const state = STATES[next<number>()] as NewNode['state'];
        const child: NewNode = {
          id: head,
          parentId: op.nodeId,
          ord,
          key: `${parentKey}/${ord}`,
          keyed: false,
          depth,
          priority: 0,
          version,
          input,
          context: null,
          state,
          error: null,
          traceparent: null,
        };
        if (state === 'done' || state === 'waiting') {
          child.result = pay(next<Payload | null | number>());
          child.attempts = next();
        }
        children.push(child);
      }
    }
    ops.push(op);
  }
  return ops;
}
