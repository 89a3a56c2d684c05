import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';

function onFailpoint(child: ChildProcess, name: string, n: number): Promise<void> {
  return new Promise((resolve) => {
    child.on('message', (message: { fp?: string; n?: number }) => {
      if (message.fp === name && message.n === n) resolve();
    });
  });
}

/** A task module with no imports; `leaf` is part of its code, `version` its declared version. */
function taskModule(leaf: number, version: number): string {
  return `export default {
  name: 'edited',
  version: ${version},
  ${version > 1 ? 'migrate: { 1: (old) => old },' : ''}
  async run({ fanout, depth }) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (depth === 0) return { result: ${leaf} };
    return { children: Array.from({ length: fanout }, () => ({ input: { fanout, depth: depth - 1 } })) };
  },
  combine: (_input, results) => results.reduce((a, b) => a + b, 0),
};
`;
}

describe('a task module changed between a stop and a resume (real processes)', () => {
  async function stopMidway(module: string, runId: string, url: string): Promise<void> {
    const first = startCli(['run', module, '--input', '{"fanout":4,"depth":4}', '--run', runId, '--store', url, '--commit-every', '16'], {
      RLM_FAILPOINTS: 'commit.beforeCommit=beacon',
    });
    await onFailpoint(first.child, 'commit.beforeCommit', 3);
    first.child.kill('SIGTERM');
    const stopped = await first.done;
    expect(stopped.code, stopped.stderr).toBe(143);
    expect(stopped.stderr).not.toContain('differs from the code');
  }

  it('warns on resume when the code changed but the version did not; a version bump resumes quietly', async () => {
    const tmp = tempDir();
    const module = join(tmp.dir, 'edited.mjs');
    const resume = (runId: string) => runCli(['run', module, '--run', runId, '--store', tmp.url]);
    try {
      writeFileSync(module, taskModule(1, 1));
      await stopMidway(module, 'same-version', tmp.url);
      writeFileSync(module, taskModule(2, 1));
      const warned = await resume('same-version');
      expect(warned.code, warned.stderr).toBe(0);
      expect(warned.stderr).toContain('Task edited version 1: its code (run, combine, key or migrate) differs from the code that worked on run same-version before');
      expect(warned.stderr).toContain('bump `version` (to 2) and add `migrate[1]`');

      writeFileSync(module, taskModule(1, 1));
      await stopMidway(module, 'bumped', tmp.url);
      writeFileSync(module, taskModule(2, 2));
      const quiet = await resume('bumped');
      expect(quiet.code, quiet.stderr).toBe(0);
      expect(quiet.stderr).not.toContain('differs from the code');
      // Unchanged code resumes quietly too.
      await stopMidway(module, 'unchanged', tmp.url);
      const same = await resume('unchanged');
      expect(same.code, same.stderr).toBe(0);
      expect(same.stderr).not.toContain('differs from the code');
    } finally {
      tmp.cleanup();
    }
  });
});
