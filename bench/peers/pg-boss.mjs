/**
 * Peer: pg-boss 10 on PostgreSQL. Every job is one tree node. Several `work` loops each fetch a batch of jobs,
 * insert all the batch's children in one `insert`, and return (pg-boss then completes the batch). A loop that got
 * jobs notifies itself so it fetches again at once instead of sleeping out its polling interval. The figure is
 * the time from sending the root until the store shows every job completed.
 *
 *   node bench/peers/pg-boss.mjs '{"fanout":10,"depth":5,"connectionString":"postgres://…","workers":4,"batchSize":100}'
 */
import PgBoss from 'pg-boss';
import { resetSchema } from '../lib/pg.mjs';
import { parseArgs, raceDeadline, report, treeSize } from '../lib/tree.mjs';

const { fanout, depth, connectionString, workers = 2, batchSize = 500, schema = 'rlm_bench_pgboss', deadlineSeconds = 600 } = parseArgs();
const expected = treeSize(fanout, depth);
const name = 'tree';

// Completions are counted from the store: start from an empty schema.
await resetSchema(connectionString, schema);
const boss = new PgBoss({ connectionString, schema, max: workers + 4, supervise: false, schedule: false });
let failure = null;
boss.on('error', (error) => {
  failure ??= error;
});
await boss.start();
await boss.createQueue(name);

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

const started = performance.now();
await boss.send(name, { depth });
for (let w = 0; w < workers; w++) ids.push(await boss.work(name, { batchSize, pollingIntervalSeconds: 0.5 }, (jobs) => handle(jobs, w)));
const completedCount = async () =>
  (await boss.getDb().executeSql(`SELECT count(*)::int AS n FROM ${schema}.job WHERE name = $1 AND state = 'completed'`, [name])).rows[0].n;
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
  await boss.stop({ graceful: false, wait: true, close: true });
}
await resetSchema(connectionString, schema);
report({ nodes: completed, seconds, partial: ending === 'deadline', settings: `${workers} work loops × batch ${batchSize}, one insert per batch` });
