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
  | 'HANDLER'
  | 'DEPTH'
  | 'FANOUT'
  | 'MIGRATION'
  | 'TASK_MODULE'
  | 'NOT_FOUND'
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
