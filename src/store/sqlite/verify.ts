/**
 * A run's check before it resumes (runProblems in doctor.ts), on a connection and a thread of its own: the
 * check reads the whole file, and the run goes on meanwhile (the engine waits for it before it reports an
 * outcome). Resuming therefore costs no more on a run of a million nodes than on one of ten.
 */
import { StoreCorruptError } from '../../engine/errors.js';
import { runDamaged } from '../audit.js';
import { classify } from './classify.js';
import { spawnThread } from './spawn-thread.js';

export interface VerifyJob {
  path: string;
  runId: string;
}

/** The problems found; a damaged value (its message names the place); or the error that stopped the check. */
export type VerifyReply = { problems: string[] } | { damaged: string } | { error: { message: string; code?: unknown } };

export function verifyRunApart(path: string, description: string, runId: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const thread = spawnThread('verify-entry', { path, runId } satisfies VerifyJob);
    let settled = false;
    const settle = (error?: unknown) => {
      if (settled) return;
      settled = true;
      if (error === undefined) resolve();
      else reject(error);
    };
    thread.once('message', (reply: VerifyReply) => {
      if ('damaged' in reply) settle(new StoreCorruptError(reply.damaged));
      else if ('error' in reply) settle(classify(Object.assign(new Error(reply.error.message), { code: reply.error.code }), path));
      else settle(reply.problems.length > 0 ? runDamaged(description, runId, reply.problems) : undefined);
      void thread.terminate();
    });
    thread.once('error', (error) => settle(classify(error, path)));
    thread.once('exit', (code) => settle(new Error(`The check of run ${runId} on ${description} ended without an answer (exit ${code}).`)));
  });
}
