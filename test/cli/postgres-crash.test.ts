import { expect, it } from 'vitest';
import { type CliResult, startCli } from '../helpers/cli.js';
import { describePostgres, pgQuery } from '../helpers/postgres.js';
import { seeded } from '../helpers/random.js';

describePostgres('PostgreSQL: many worker processes, kills and backend terminations', (url) => {
  it('a 111,111-node tree run by 4 workers, SIGKILLed and restarted at random, plus a pg_terminate_backend storm, ends exact', async () => {
    const schema = `rlm_crash_${process.pid}`;
    const store = `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`;
    const random = seeded(0x9e11);
    await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    const workers = new Set<ReturnType<typeof startCli>>();
    let kills = 0;
    let pendingKills = 0;
    let restarts = 0;
    let stopping = false;
    let commits = 0;
    let terminated = 0;
    const storms: Promise<void>[] = [];
    // The storm: at 20, 60 and 100 group commits across all workers, terminate every rlm session.
    const storm = () => {
      storms.push(
        pgQuery<{ pid: number }>(url, "SELECT pg_terminate_backend(pid) AS pid FROM pg_stat_activity WHERE application_name LIKE 'rlm%' AND pid <> pg_backend_pid()").then(
          (rows) => {
            terminated += rows.length;
          },
        ),
      );
    };
    const startWorker = () => {
      const worker = startCli(['worker', 'examples/tree.ts', '--store', store, '--lease-ms', '3000', '--heartbeat-ms', '300'], {
        RLM_FAILPOINTS: 'commit.beforeCommit=beacon',
      });
      workers.add(worker);
      worker.child.on('message', (message: { fp?: string }) => {
        if (message.fp !== 'commit.beforeCommit') return;
        commits++;
        if (commits === 20 || commits === 60 || commits === 100) storm();
        // Every few commits across all workers, a random worker is killed just before its COMMIT.
        if (commits % 6 === 0 && kills + pendingKills < 12 && !stopping) {
          const victims = [...workers];
          const victim = victims[Math.floor(random() * victims.length)];
          if (victim?.child.exitCode === null && victim.child.signalCode === null) {
            pendingKills++;
            victim.child.kill('SIGKILL');
          }
        }
      });
      void worker.done.then((result: CliResult) => {
        workers.delete(worker);
        if (result.signal === 'SIGKILL') {
          kills++;
          pendingKills--;
        }
        if (!stopping) {
          restarts++;
          startWorker();
        }
      });
    };
    try {
      const run = startCli(['run', 'examples/tree.ts', '--input', '{"fanout":10,"depth":5}', '--run', 'pg-crash', '--store', store, '--lease-ms', '3000', '--heartbeat-ms', '300']);
      for (let i = 0; i < 4; i++) startWorker();
      const result = await run.done;
      await Promise.all(storms);
      expect(result.code, result.stderr.slice(-2000)).toBe(0);
      expect(result.stdout.trim()).toBe('111111');
      expect(kills).toBeGreaterThanOrEqual(5);
      expect(terminated).toBeGreaterThan(0);
      const states = await pgQuery<{ state: string; n: string }>(url, `SELECT state, count(*) AS n FROM ${schema}.rlm_nodes GROUP BY state`);
      expect(states.map((r) => [r.state, Number(r.n)])).toEqual([['done', 111_111]]);
      const duplicates = await pgQuery<{ n: string }>(
        url,
        `SELECT count(*) AS n FROM (SELECT parent_id, ord FROM ${schema}.rlm_nodes WHERE parent_id IS NOT NULL GROUP BY parent_id, ord HAVING count(*) > 1) d`,
      );
      expect(Number(duplicates[0]?.n)).toBe(0);
      console.log(`postgres crash test: ${kills} worker kills, ${restarts} restarts, ${terminated} backends terminated`);
    } finally {
      stopping = true;
      for (const worker of workers) worker.child.kill('SIGKILL');
      await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    }
  }, 600_000);
});
