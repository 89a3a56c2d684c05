/** The thread that checks one run before it resumes (see verify.ts): it reads, answers once, and ends. */
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import { ChecksumError } from '../checksum.js';
import { runProblems } from './doctor.js';
import type { SqliteDatabase } from './sqlite-store.js';
import type { VerifyJob, VerifyReply } from './verify.js';

const job = workerData as VerifyJob;
const Database = createRequire(import.meta.url)('better-sqlite3') as new (path: string, options?: Record<string, unknown>) => SqliteDatabase;

function check(): VerifyReply {
  let db: SqliteDatabase | undefined;
  try {
    db = new Database(job.path, { fileMustExist: true });
    db.pragma('query_only = 1');
    db.pragma('busy_timeout = 10000');
    // One read transaction: the counters and the recount are of one moment, whoever commits meanwhile.
    const read = db;
    return { problems: read.transaction(() => runProblems(read, job.runId))() };
  } catch (error) {
    if (error instanceof ChecksumError) return { damaged: error.message };
    return { error: { message: (error as Error)?.message ?? String(error), code: (error as { code?: unknown })?.code } };
  } finally {
    try {
      db?.close();
    } catch {
      // Read only: nothing to lose.
    }
  }
}

parentPort?.postMessage(check());
