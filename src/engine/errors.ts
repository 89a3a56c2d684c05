/**
 * The RlmError family: one class per failure a caller might handle, each with a stable string code.
 * Catch by `instanceof` or `code`, never by message text; the CLI maps codes to exit codes.
 */
export type RlmErrorCode =
  | 'CONFIG'
  | 'USAGE'
  | 'INVALID_INPUT'
  | 'NOT_SERIALIZABLE'
  | 'STALE_LEASE'
  | 'STORE_UNAVAILABLE'
  | 'STORE_CORRUPT'
  | 'STORE_TOO_NEW'
  | 'STORE_IO'
  | 'CYCLE'
  | 'TIMEOUT'
  | 'CRASHED'
  | 'NON_RETRYABLE'
  | 'RETRY_LATER'
  | 'COST_BUDGET'
  | 'NEEDS_APPROVAL'
  | 'WAITING_FOR_SIGNAL'
  | 'HANDLER'
  | 'DEPTH'
  | 'FANOUT'
  | 'MIGRATION'
  | 'TASK_MODULE'
  | 'NOT_FOUND'
  | 'RUN_BUSY'
  | 'REFUSED'
  | 'VERSION';

export class RlmError extends Error {
  override name = 'RlmError';
  constructor(
    message: string,
    readonly code: RlmErrorCode,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Bad options or a bad task definition: fix the configuration and start again. */
export class ConfigError extends RlmError {
  override name = 'ConfigError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'CONFIG', options);
  }
}

/** Bad command-line usage. */
export class UsageError extends RlmError {
  override name = 'UsageError';
  constructor(message: string) {
    super(message, 'USAGE');
  }
}

/** An operation that would delete a run's nodes while live workers hold leases on them. */
export class RunBusyError extends RlmError {
  override name = 'RunBusyError';
  constructor(
    readonly runId: string,
    readonly leased: number,
    what: string,
  ) {
    super(
      `Run ${runId} has ${leased} node(s) leased by live workers; ${what} would pull them from under those workers. ` +
        `Pause it first (\`rlm pause ${runId}\`) and wait for its workers to go idle, or pass --force.`,
      'RUN_BUSY',
    );
  }
}

/** An operation the store refuses because of the state it found; the message says why and what to do instead. */
export class RefusedError extends RlmError {
  override name = 'RefusedError';
  constructor(message: string) {
    super(message, 'REFUSED');
  }
}

/** A run, node or worker that does not exist. */
export class NotFoundError extends RlmError {
  override name = 'NotFoundError';
  constructor(message: string) {
    super(message, 'NOT_FOUND');
  }
}

/** An input that fails the task's schema. Never retried. */
export class InvalidInputError extends RlmError {
  override name = 'InvalidInputError';
  constructor(
    message: string,
    readonly issues: readonly { message: string; path?: readonly unknown[] }[],
  ) {
    super(message, 'INVALID_INPUT');
  }
}

/** A value that cannot be stored (a function, a cycle, a BigInt under JSON). Never retried. */
export class NotSerializableError extends RlmError {
  override name = 'NotSerializableError';
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(message, 'NOT_SERIALIZABLE');
  }
}

/**
 * Throw from a handler to send the node to the dead-letter queue at once, without retries.
 * ```ts
 * if (res.status === 404) throw new NonRetryableError(`No page at ${url}`);
 * ```
 */
export class NonRetryableError extends RlmError {
  override name = 'NonRetryableError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'NON_RETRYABLE', options);
  }
}

/**
 * Throw from a handler to run the node again later: after `delay` ms, or at a Date. A durable timer: it
 * survives crashes and restarts, and the node holds no worker slot while it waits. The attempt is not counted
 * unless `charge` is set (a 429 with Retry-After is the service's pace, not the node's failure); a charged one
 * counts toward `maxAttempts` like any failure and is recorded in the node's errors.
 * ```ts
 * if (res.status === 429) throw new RetryLater(Number(res.headers.get('retry-after') ?? 1) * 1000);
 * ```
 */
export class RetryLater extends RlmError {
  override name = 'RetryLater';
  /** When the node may run again, in epoch ms. */
  readonly at: number;
  readonly charge: boolean;
  constructor(delay: number | Date, options: { charge?: boolean; reason?: string } = {}) {
    const at = delay instanceof Date ? delay.getTime() : Date.now() + delay;
    if (!Number.isFinite(at)) throw new ConfigError(`RetryLater takes a delay in ms or a Date, got ${String(delay)}.`);
    super(options.reason ?? `Retry after ${new Date(at).toISOString()}.`, 'RETRY_LATER');
    this.at = at;
    this.charge = options.charge ?? false;
  }
}

/**
 * A reservation (`ctx.reserve`) would take the run past its cost budget: the node parks and the run pauses for
 * a person, who raises the budget (`rlm budget ID --cost N`) and approves the parked nodes.
 */
export class CostBudgetError extends RlmError {
  override name = 'CostBudgetError';
  constructor(amount: number, spent: number, budget: number) {
    super(
      `cost budget: reserving ${amount} would take the run past its budget of ${budget} (${spent} charged so far); raise it with \`rlm budget RUN --cost N\`, then \`rlm approve RUN --all\``,
      'COST_BUDGET',
    );
  }
}

/**
 * Throw from a handler (or call `ctx.park(reason)`) to park the node for a person: `rlm approve` runs it again
 * with `ctx.approved` true, `rlm reject` dead-letters it. The run goes on with its other nodes; no attempt is
 * counted.
 */
export class NeedsApproval extends RlmError {
  override name = 'NeedsApproval';
  constructor(reason: string) {
    super(reason, 'NEEDS_APPROVAL');
  }
}

/** Thrown by `ctx.waitFor(name)` when the signal has not come yet: the node parks until it does. */
export class WaitingForSignal extends RlmError {
  override name = 'WaitingForSignal';
  readonly signalName: string;
  constructor(name: string) {
    super(`Waiting for signal \`${name}\`.`, 'WAITING_FOR_SIGNAL');
    this.signalName = name;
  }
}

/** A step outlived its lease; its result was discarded. */
export class StaleLeaseError extends RlmError {
  override name = 'StaleLeaseError';
  constructor(
    readonly nodeId: number,
    readonly heldEpoch: number,
  ) {
    super(
      `Node ${nodeId} was taken over (this worker held epoch ${heldEpoch}, the store has moved on); its result was discarded. ` +
        'A step outlived its lease: raise `leaseMs` or make the handler honour ctx.signal.',
      'STALE_LEASE',
    );
  }
}

/** The store cannot be reached or opened. */
export class StoreUnavailableError extends RlmError {
  override name = 'StoreUnavailableError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'STORE_UNAVAILABLE', options);
  }
}

/** The store file is damaged or is not an rlm store. rlm refuses to run on it. */
export class StoreCorruptError extends RlmError {
  override name = 'StoreCorruptError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'STORE_CORRUPT', options);
  }
}

/** The store was written by a newer rlm. */
export class StoreTooNewError extends RlmError {
  override name = 'StoreTooNewError';
  constructor(message: string) {
    super(message, 'STORE_TOO_NEW');
  }
}

/** A disk or I/O failure: the connection is not trusted again (fsyncgate); the worker stops. */
export class StoreIoError extends RlmError {
  override name = 'StoreIoError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'STORE_IO', options);
  }
}

/** A task module that cannot be loaded or is not a task. */
export class TaskModuleError extends RlmError {
  override name = 'TaskModuleError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'TASK_MODULE', options);
  }
}

/** Turns anything thrown into a message, a code and a stack, without ever throwing itself. */
export function describeThrown(thrown: unknown): { message: string; code: string | null; stack: string | null } {
  try {
    if (thrown instanceof RlmError) return { message: thrown.message, code: thrown.code, stack: thrown.stack ?? null };
    if (thrown instanceof Error) {
      const code = typeof (thrown as { code?: unknown }).code === 'string' ? (thrown as unknown as { code: string }).code : null;
      return { message: thrown.message || thrown.name, code, stack: thrown.stack ?? null };
    }
    if (typeof thrown === 'string') return { message: thrown, code: null, stack: null };
    if (thrown === null || thrown === undefined) return { message: `A handler threw ${String(thrown)}`, code: null, stack: null };
    return { message: `A handler threw a non-Error: ${safeString(thrown)}`, code: null, stack: null };
  } catch {
    return { message: 'A handler threw a value that cannot be described', code: null, stack: null };
  }
}

function safeString(value: unknown): string {
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text.slice(0, 500);
  } catch {
    try {
      return Object.prototype.toString.call(value);
    } catch {
      return '[unprintable]';
    }
  }
}
