/**
 * A poison pill across hosts: two worker processes that share no temp directory (so neither sees the other's
 * flight recorder, as on two machines) take turns dying on a node that kills every process running it. The
 * blame is kept in the store: the pill is charged an attempt each time and ends in the DLQ after maxAttempts,
 * its siblings finish, and the workers stop dying.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { openEngine } from '../../src/engine/engine.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import poison from '../fixtures/poison.js';
import { startCli } from '../helpers/cli.js';
import { describePostgres, pgQuery } from '../helpers/postgres.js';

describePostgres('PostgreSQL: a poison pill across hosts', (url) => {
  const schema = `rlm_poison_hosts_${process.pid}`;
  const temps = [mkdtempSync(join(tmpdir(), 'rlm-host-a-')), mkdtempSync(join(tmpdir(), 'rlm-host-b-'))];
  afterAll(async () => {
    for (const dir of temps) rmSync(dir, { recursive: true, force: true });
    await pgQuery(url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });

  it('ends in the DLQ after maxAttempts though no worker can read another one’s flight recorder', async () => {
    const store = new PostgresStore({ connectionString: url, schema });
    const engine = await openEngine({ store });
    await engine.create(poison, { depth: 2 }, { runId: 'pill' });
    await engine.close();
    const storeUrl = `${url}?schema=${schema}`;
    const args = ['worker', 'test/fixtures/poison.ts', '--store', storeUrl, '--lease-ms', '1500', '--heartbeat-ms', '200'];
    const state = async () =>
      (await pgQuery<{ state: string; n_dead: number; n_done: number }>(url, `SELECT state, n_dead::int AS n_dead, n_done::int AS n_done FROM "${schema}".rlm_runs WHERE id = 'pill'`))[0];
    // Each slot is one "host": its own TMPDIR; a worker that dies is started again there, as a supervisor would.
    let deaths = 0;
    const slots = temps.map((dir) => ({ dir, proc: startCli(args, { TMPDIR: dir }) }));
    try {
      for (;;) {
        const ended = await Promise.race([
          ...slots.map((slot, i) => slot.proc.done.then((exit) => ({ i, exit }))),
          new Promise<null>((resolve) => setTimeout(() => resolve(null), 250)),
        ]);
        if (ended) {
          expect(ended.exit.signal, ended.exit.stderr).toBe('SIGKILL');
          deaths++;
          expect(deaths, 'the pill went on killing workers').toBeLessThanOrEqual(6);
          const slot = slots[ended.i] as (typeof slots)[number];
          slot.proc = startCli(args, { TMPDIR: slot.dir });
        }
        const run = await state();
        if (run && run.state !== 'running') break;
      }
      const run = await state();
      expect(run, `after ${deaths} worker deaths`).toMatchObject({ state: 'completed', n_dead: 1, n_done: 12 });
      const [pill] = await pgQuery<{ key: string; attempts: number; errors: { code: string }[] }>(
        url,
        `SELECT key, attempts, errors FROM "${schema}".rlm_nodes WHERE state = 'dead'`,
      );
      expect(pill).toMatchObject({ key: 'root/1/2', attempts: 3 });
      expect(pill?.errors.at(-1)?.code).toBe('CRASHED');
    } finally {
      for (const slot of slots) slot.proc.child.kill('SIGKILL');
      await Promise.all(slots.map((slot) => slot.proc.done));
    }
  }, 120_000);
});
