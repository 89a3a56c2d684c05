import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { Logger } from './observe/logger.js';

/** A value rlm can store: what JSON can represent. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Bounds of one task. Every field is optional; see DEFAULT_LIMITS for the defaults. */
export interface TaskLimits {
  /** Deepest allowed node (the root is depth 0). A deeper child is handled by `depthPolicy`. @default 10_000 */
  maxDepth?: number;
  /**
   * Children one step may spawn. Past it the fan-out alarm parks the node and pauses the run until a person
   * approves (`rlm approve`) or rejects it. @default 100_000
   */
  maxChildren?: number;
  /** Deadline of one attempt in milliseconds; `ctx.signal` aborts at it and a late result is discarded. 0 = none. @default 300_000 */
  timeoutMs?: number;
  /** Attempts before a node goes to the dead-letter queue, crashes of the worker included. @default 3 */
  maxAttempts?: number;
  /** First retry delay in milliseconds; doubles per attempt, with full jitter. @default 1_000 */
  backoffMs?: number;
  /** Ceiling of the retry delay in milliseconds. @default 60_000 */
  maxBackoffMs?: number;
}

/** One child call returned by a step. */
export interface ChildSpec<I> {
  input: I;
  /** Context for the child and its subtree; inherits the parent's when omitted. */
  context?: Json;
  /**
   * Not before this time (a Date, or epoch ms): a durable timer. The child is stored at once and claimed by no
   * worker before then; while it waits it holds no worker slot.
   */
  notBefore?: Date | number;
}

/** Children may be an array, or a (possibly async) iterable persisted in chunks and never held whole. */
export type Children<I> = Iterable<ChildSpec<I>> | AsyncIterable<ChildSpec<I>>;

/** What `run` returns: a result for this node and/or child calls. */
export interface StepResult<I, R> {
  result?: R;
  children?: Children<I>;
}

/** A child that ended in the dead-letter queue, as `combine` sees it when `deadChildren` is `'pass'`. */
export interface ChildFailure {
  readonly failed: true;
  readonly key: string;
  readonly error: string;
}

/** What a step sees of the runtime. */
export interface TaskContext {
  readonly runId: string;
  readonly nodeId: number;
  /** The node's identity within the run: the task's `key(input)`, or its path from the root. */
  readonly key: string;
  readonly depth: number;
  /** 1 on the first attempt. */
  readonly attempt: number;
  /** Inherited from the ancestors (`ChildSpec.context`, or the run's context at the root). */
  readonly context: Json;
  /** Aborts at the attempt's deadline and on shutdown. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly traceId: string;
  /**
   * Runs `fn` at most once per node and effect name: its result is journaled durably before the step goes on,
   * and a retried step gets the journaled value without calling `fn` again. `fn` receives a stable idempotency
   * key (run, node key, effect name) to hand to the external system, which closes the window between the call
   * and the journal write.
   * ```ts
   * const page = await ctx.effect('fetch', (idempotencyKey) => fetchPage(url, { idempotencyKey }));
   * ```
   */
  effect<T>(name: string, fn: (idempotencyKey: string) => Promise<T> | T): Promise<T>;
  /** Records a partial result, committed with this step and streamable while the run goes on. */
  emit(record: unknown): void;
  /**
   * Reserves `amount` of the run's cost budget (tokens, dollars, API calls: the user's units) before an expensive
   * call, atomically across workers. When it would take the run past its budget, the node parks and the run
   * pauses for a person instead. Journaled like an effect: a step that runs again is not charged again.
   * ```ts
   * await ctx.reserve(4_000);                                   // the most this call can cost
   * const answer = await ctx.effect('ask', () => client.chat.completions.create(request));
   * await ctx.spend(answer.usage.total_tokens);                 // what it really cost
   * ```
   */
  reserve(amount: number): Promise<void>;
  /**
   * Settles what the step really spent since its last `spend`: its reservations since then are replaced by
   * `amount` (more or less). A step that reserves and never spends is charged what it reserved.
   */
  spend(amount: number): Promise<void>;
  /** A person approved this node after it parked (`rlm approve`): its handler's gate, or an alarm, is lifted. */
  readonly approved: boolean;
  /** Parks the node for a person with `reason` (throws NeedsApproval); see `approved`. */
  park(reason: string): never;
  /**
   * The payload of the run's signal `name` (`rlm signal RUN NAME JSON`, `engine.signal`). When it has not come
   * yet, the node parks, holding no worker, and runs again from the start once it comes; a signal sent before the
   * wait is kept. Call it before work that must not be done twice (or put that work in an effect).
   */
  waitFor<T = Json>(name: string): Promise<T>;
}

/** A group's limits, across every worker of a run. */
export interface GroupLimits {
  /** At most this many of the group's steps at once. */
  concurrency?: number;
  /** At most this many of the group's steps start per second (a token bucket). */
  perSecond?: number;
  /**
   * Tokens the bucket holds at most: in any one second, at most `perSecond + burst` steps start, and a worker
   * takes up to `burst` tokens per store call (raise it for rates of hundreds a second). @default 1
   */
  burst?: number;
}

/** The definition of a recursive task. */
export interface TaskDefinition<I = unknown, R = unknown> {
  /** Stable name; runs in a store belong to a task by name. */
  name: string;
  /** Version of the stored input/context schema. Bump it with a `migrate` entry when inputs change. @default 1 */
  version?: number;
  /** Validation gate, any Standard Schema (zod, valibot, arktype). Checked before each step and at spawn. */
  input?: StandardSchemaV1<unknown, I>;
  /** Identity within a run. Two calls with one key are one node: dedupe and memoisation. */
  key?: (input: I) => string;
  /** Higher runs first; ties by `order`. */
  priority?: (input: I, info: { depth: number; context: Json }) => number;
  /** Tie-break after priority: depth-first or breadth-first. @default 'dfs' */
  order?: 'dfs' | 'bfs';
  limits?: TaskLimits;
  /**
   * The group a node's steps count against — a crawl's host, an API's provider — for the limits in `groups`;
   * null or undefined: none. Called with the node's (validated) input before each of its steps.
   */
  group?: (input: I) => string | null | undefined;
  /**
   * Limits per group, kept together by every worker of a run: the same for every group, or per group name. A
   * node whose group is full waits, holding no step slot, while other groups go on.
   */
  groups?: GroupLimits | ((group: string) => GroupLimits);
  /** What happens to a child deeper than `maxDepth`: the dead-letter queue, or parked until released. @default 'dlq' */
  depthPolicy?: 'dlq' | 'park';
  /** A dead child blocks its waiting parent until redriven (`'wait'`), or reaches `combine` as a ChildFailure. @default 'wait' */
  deadChildren?: 'wait' | 'pass';
  /** Upgrades from older versions: `migrate[n]` turns a version-n input into a version n+1 input. */
  migrate?: Record<number, (old: unknown) => unknown>;
  /**
   * How inputs, contexts, results, emitted records and effect values are stored. `'json'` holds plain JSON;
   * `'msgpack'` is binary and also keeps Date, Map, Set, BigInt, Uint8Array/Buffer and undefined. Stored values
   * record their codec, so changing this option never breaks a run already in the store. @default 'json'
   */
  codec?: 'json' | 'msgpack';
  /**
   * How many nodes a run of this root input will have in all, its root included, when the task can tell (a full
   * tree of fan-out F and depth D has (F^(D+1) - 1) / (F - 1); a crawl may know its `maxPages`). With it, progress
   * (`rlm run`, `rlm status`, the dashboard) shows a percentage, done / estimate, and an ETA; without it, only what
   * is known and moving. Called once when a run starts or resumes. A wrong estimate only makes progress wrong.
   */
  estimate?: (input: I) => number;
  run(input: I, ctx: TaskContext): StepResult<I, R> | undefined | Promise<StepResult<I, R> | undefined>;
  /** Fan-in: runs once after every child has a result; its return is this node's result. */
  combine?(input: I, childResults: Array<R | ChildFailure>, ctx: TaskContext): R | Promise<R>;
}

/** A task as the engine holds it. */
export type Task<I = unknown, R = unknown> = TaskDefinition<I, R>;

/**
 * Declares a task. Only adds types: a module may export the plain object instead.
 * ```ts
 * export default defineTask({ name: 'tree', run: (input) => ({ result: 1 }) });
 * ```
 */
export function defineTask<I, R = unknown>(definition: TaskDefinition<I, R>): Task<I, R> {
  return definition;
}

/** @internal The limits in force when a task leaves a field unset. */
export const DEFAULT_LIMITS: Required<TaskLimits> = Object.freeze({
  maxDepth: 10_000,
  maxChildren: 100_000,
  timeoutMs: 300_000,
  maxAttempts: 3,
  backoffMs: 1_000,
  maxBackoffMs: 60_000,
});
