/** How SQLite's errors reach the user: each driver code mapped to the RlmError a caller can act on. */
import { StoreCorruptError, StoreIoError, StoreUnavailableError } from '../../engine/errors.js';

/** Maps a driver error to the RlmError a caller can act on. Disk errors are fatal for the connection. */
export function classify(error: unknown, path: string): unknown {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string') return error;
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new StoreCorruptError(
      `The store file ${path} is damaged or is not an rlm store (${code}). rlm will not run on it: ` +
        'restore it from an `rlm snapshot` copy, or move it aside to start afresh.',
      { cause: error },
    );
  }
  if (code === 'SQLITE_CONSTRAINT_CHECK') {
    // rlm writes only the values its schema allows: a write that breaks a CHECK constraint met a damaged row.
    return new StoreCorruptError(
      `The store file ${path} is damaged: a stored row holds a value outside rlm's schema (${(error as Error).message}). rlm will not run on it: ` +
        'restore it from an `rlm snapshot` copy, or move it aside to start afresh (`rlm doctor` lists what it finds).',
      { cause: error },
    );
  }
  if (code === 'SQLITE_CONSTRAINT_NOTNULL') {
    // rlm never writes NULL where its schema forbids one: a row that holds one (so that `epoch + 1` is NULL)
    // was damaged outside rlm.
    return new StoreCorruptError(
      `The store file ${path} is damaged: a stored row holds an empty value where rlm never writes one (${(error as Error).message}). rlm will not run on it: ` +
        'restore it from an `rlm snapshot` copy, or move it aside to start afresh.',
      { cause: error },
    );
  }
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED') {
    return new StoreUnavailableError(
      `The store file ${path} stayed locked by another process past the busy timeout (${code}): a worker frozen inside a write (SIGSTOP, a debugger, a full disk)? ` +
        'This write did not happen (committed work is safe); run the same command again once that process has gone on or been stopped.',
      { cause: error },
    );
  }
  if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_FULL' || code === 'SQLITE_READONLY' || code.startsWith('SQLITE_CANTOPEN')) {
    return new StoreIoError(
      `The store file ${path} could not be written (${code}). rlm stopped rather than go on after a disk error: ` +
        'free space or fix permissions, then run the same command again to resume.',
      { cause: error },
    );
  }
  return error;
}
