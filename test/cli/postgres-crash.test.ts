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
      worker.child.stderr?.on('data', (data: Buffer) => {
        for (const line of data.toString().split('\n')) if (line.includes('rejected') || line.includes('"level":50')) trace.push(`worker ${worker.child.pid}: ${line.slice(0, 1500)}`);
      });
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
        if (result.signal !== 'SIGKILL') trace.push(`worker ${worker.child.pid} exited ${result.code ?? result.signal}: ${result.stderr.slice(-500)}`);
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
    // A trace of the run, printed if it fails: node states every 5 s, and every worker's exit.
    const trace: string[] = [];
    const t0 = Date.now();
    const monitor = setInterval(() => {
      void pgQuery<{ state: string; n: string }>(url, `SELECT state, count(*) AS n FROM ${schema}.rlm_nodes GROUP BY state ORDER BY state`)
        .then((rows) => trace.push(`${((Date.now() - t0) / 1000).toFixed(0)}s commits=${commits} kills=${kills} workers=${workers.size} ${rows.map((r) => `${r.state}=${r.n}`).join(' ')}`))
        .catch((error: Error) => trace.push(`monitor: ${error.message}`));
    }, 5000);
    try {
      const run = startCli(['run', 'examples/tree.ts', '--input', '{"fanout":10,"depth":5}', '--run', 'pg-crash', '--store', store, '--lease-ms', '3000', '--heartbeat-ms', '300']);
      for (let i = 0; i < 4; i++) startWorker();
      // A run that makes no progress for a minute fails with the trace rather than at the test's timeout.
      let lastDone = -1;
      let stalledSince = Date.now();
      const stalled = new Promise<'stalled'>((resolve) => {
        const check = setInterval(() => {
          void pgQuery<{ n: string }>(url, `SELECT count(*) AS n FROM ${schema}.rlm_nodes WHERE state = 'done'`).then(
            async (rows) => {
              const done = Number(rows[0]?.n);
              if (done !== lastDone) {
                lastDone = done;
                stalledSince = Date.now();
              } else if (Date.now() - stalledSince > 60_000) {
                clearInterval(check);
                const live = await pgQuery(url, `SELECT n.id, n.state, n.phase, n.owner, n.epoch, n.attempts, n.pending_children, n.available_at, w.state AS wstate, w.pid, w.lease_until FROM ${schema}.rlm_nodes n LEFT JOIN ${schema}.rlm_workers w ON w.id = n.owner WHERE n.state <> 'done' ORDER BY n.id LIMIT 20`);
                const sessions = await pgQuery(url, "SELECT pid, application_name, state, query FROM pg_stat_activity WHERE application_name LIKE 'rlm%'");
                trace.push(`stalled; live nodes: ${JSON.stringify(live)}`, `sessions: ${JSON.stringify(sessions)}`, `run stderr: ${run.stderr().slice(-3000)}`);
                resolve('stalled');
              }
            },
            () => undefined,
          );
        }, 5000);
        void run.done.then(() => clearInterval(check));
      });
      const outcome = await Promise.race([run.done, stalled]);
      expect(outcome, trace.join('\n')).not.toBe('stalled');
      const result = await run.done;
      await Promise.all(storms);
      expect(result.code, `${result.stderr.slice(-2000)}\n${trace.join('\n')}`).toBe(0);
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
      clearInterval(monitor);
      stopping = true;
      for (const worker of workers) worker.child.kill('SIGKILL');
      await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    }
  }, 600_000);
});
