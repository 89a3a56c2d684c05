/**
 * Peer: pg-boss 10 on PostgreSQL. Every job is one tree node. Several `work` loops each fetch a batch of jobs,
 * insert all the batch's children in one `insert`, and return (pg-boss then completes the batch). A loop that got
 * jobs notifies itself so it fetches again at once instead of sleeping out its polling interval. With
 * `processes` > 1, that many processes run the loops (this one and `processes - 1` it spawns). The figure is the
 * time from sending the root until the store shows every job completed.
 *
 *   node bench/peers/pg-boss.mjs '{"fanout":10,"depth":5,"connectionString":"postgres://…","workers":4,"batchSize":100,"processes":2}'
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import PgBoss from 'pg-boss';
import { resetSchema } from '../lib/pg.mjs';
import { parseArgs, raceDeadline, report, treeSize } from '../lib/tree.mjs';

const options = parseArgs();
const { fanout, depth, connectionString, workers = 2, batchSize = 500, schema = 'rlm_bench_pgboss', deadlineSeconds = 600, processes = 1, role = 'main' } = options;
const expected = treeSize(fanout, depth);
const name = 'tree';

// Completions are counted from the store: start from an empty schema.
if (role === 'main') await resetSchema(connectionString, schema);
const boss = new PgBoss({ connectionString, schema, max: workers + 4, supervise: false, schedule: false });
let failure = null;
boss.on('error', (error) => {
  failure ??= error;
});
await boss.start();
if (role === 'main') await boss.createQueue(name);

let handled = 0;
let settle;
const allHandled = new Promise((resolve, reject) => {
  settle = { resolve, reject };
});

const ids = [];
async function handle(jobs, self) {
  const children = [];
  for (const job of jobs) {
    const left = job.data.depth;
    if (left > 0) for (let i = 0; i < fanout; i++) children.push({ name, data: { depth: left - 1 } });
  }
  if (children.length > 0) await boss.insert(children);
  handled += jobs.length;
  if (handled >= expected) settle.resolve();
  if (ids[self]) boss.notifyWorker(ids[self]);
}

const startLoops = async () => {
  for (let w = 0; w < workers; w++) ids.push(await boss.work(name, { batchSize, pollingIntervalSeconds: 0.5 }, (jobs) => handle(jobs, w)));
};

if (role === 'worker') {
  // A helper process: run the loops until the main process says stop.
  await startLoops();
  process.once('SIGTERM', () => boss.stop({ graceful: false, wait: true, close: true }).finally(() => process.exit(0)));
  process.stdout.write('ready\n');
} else {
  await main();
}

async function main() {
  const helpers = [];
  for (let p = 1; p < processes; p++) {
    const child = spawn(process.execPath, [process.argv[1], JSON.stringify({ ...options, role: 'worker' })], { stdio: ['ignore', 'pipe', 'inherit'] });
    helpers.push(child);
    await new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`pg-boss helper process exited with ${code}`)));
      createInterface({ input: child.stdout }).once('line', resolve);
    });
  }
  const completedCount = async () =>
    (await boss.getDb().executeSql(`SELECT count(*)::int AS n FROM ${schema}.job WHERE name = $1 AND state = 'completed'`, [name])).rows[0].n;
  if (processes > 1) {
    // Jobs are handled in several processes: only the store knows when all are done.
    (async () => {
      while (!failure && (await completedCount()) < expected) await new Promise((resolve) => setTimeout(resolve, 20));
      settle.resolve();
    })().catch((error) => settle.reject(error));
  }
  const started = performance.now();
  await boss.send(name, { depth });
  await startLoops();
  let completed = 0;
  let ending;
  let seconds;
  try {
    const failed = new Promise((_, reject) => {
      const timer = setInterval(() => {
        if (failure) reject(failure);
      }, 100);
      timer.unref();
    });
    ending = await raceDeadline(Promise.race([allHandled, failed]), deadlineSeconds);
    // A batch is completed after its handler returns: wait until the store says so.
    if (ending === 'done') while ((completed = await completedCount()) < expected) await new Promise((resolve) => setTimeout(resolve, 20));
    else completed = await completedCount();
    seconds = (performance.now() - started) / 1000;
  } finally {
    const exited = helpers.map((child) => (child.exitCode !== null ? null : new Promise((resolve) => child.once('exit', resolve))));
    for (const child of helpers) child.kill('SIGTERM');
    await Promise.all(exited);
    await boss.stop({ graceful: false, wait: true, close: true });
  }
  await resetSchema(connectionString, schema);
  const perProcess = `${workers} work loops × batch ${batchSize}, one insert per batch`;
  report({ nodes: completed, seconds, partial: ending === 'deadline', settings: processes > 1 ? `${processes} processes × ${perProcess}` : perProcess });
}
