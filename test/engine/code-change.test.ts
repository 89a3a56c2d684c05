/*
 * A task's code changed while its `version` stayed the same: the first time a worker starts on a run, it records
 * its code there and warns when the code recorded before differs under the same version.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, defineTask, NonRetryableError, openEngine } from '../../src/index.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { tempDir } from '../helpers/temp.js';

const fast = { leaseMs: 2_000, heartbeatMs: 200, pollMs: 10 };

describe('a code change under the same task version', () => {
  /** A task whose node always fails: every redrive makes a worker start on the run again. */
  function failing(variant: number, version = 1) {
    return defineTask({
      name: 'counter',
      version,
      limits: { maxAttempts: 1 },
      migrate: version > 1 ? { 1: (old: unknown) => old } : undefined,
      // The variant is part of the function's source: another variant is other code.
      run:
        variant === 1
          ? () => {
              throw new NonRetryableError('one');
            }
          : () => {
              throw new NonRetryableError('two');
            },
    });
  }

  function capture() {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    return { logger: createLogger({ level: 'warn', pretty: false, destination }), warnings: () => lines.filter((line) => line.includes('differs from the code')) };
  }

  it('is warned about once per change when a worker starts on the run; a version bump is not', async () => {
    const tmp = tempDir();
    const store = new SqliteStore({ path: tmp.db });
    const log = capture();
    const engine = await openEngine({ store, ...fast, logger: log.logger });
    try {
      const runId = await engine.create(failing(1), {});
      const again = async (task: ReturnType<typeof failing>) => {
        await store.redrive(runId, 'all');
        return (await engine.resume(task, runId)).done;
      };
      // The first worker records its code; nothing to compare with yet.
      expect((await (await engine.resume(failing(1), runId)).done).state).toBe('failed');
      expect(log.warnings()).toEqual([]);
      await again(failing(2));
      expect(log.warnings()).toHaveLength(1);
      const warning = JSON.parse(log.warnings()[0] as string) as { msg: string; task: string; version: number; runId: string };
      expect(warning).toMatchObject({ task: 'counter', version: 1, runId });
      expect(warning.msg).toContain('Task counter version 1: its code (run, combine, key or migrate) differs');
      expect(warning.msg).toContain('bump `version` (to 2) and add `migrate[1]`');
      // The same changed code again: warned already, and the run records it now.
      await again(failing(2));
      expect(log.warnings()).toHaveLength(1);
      // Changed code under a new version: that is what versions are for.
      await again(failing(1, 2));
      expect(log.warnings()).toHaveLength(1);
      // And a change under that version is warned about again.
      await again(failing(2, 2));
      expect(log.warnings()).toHaveLength(2);
    } finally {
      await engine.close();
      await store.close();
      tmp.cleanup();
    }
  });
});
