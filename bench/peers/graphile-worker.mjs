/**
 * Peer: graphile-worker 0.16 on PostgreSQL. Every job is one tree node; an inner node adds its children in one
 * statement (the schema's own `add_jobs`, graphile-worker's bulk insert) and returns. graphile-worker deletes a
 * job once it succeeds; completions are counted from its `job:success` events. The figure is the time from adding
 * the root until every job has succeeded.
 *
 *   node bench/peers/graphile-worker.mjs '{"fanout":10,"depth":5,"connectionString":"postgres://…","concurrency":16}'
 */
import { EventEmitter } from 'node:events';
import { Logger, run } from 'graphile-worker';
import { resetSchema } from '../lib/pg.mjs';
import { parseArgs, raceDeadline, report, treeSize } from '../lib/tree.mjs';

const { fanout, depth, connectionString, concurrency = 32, schema = 'rlm_bench_graphile_worker', deadlineSeconds = 600 } = parseArgs();
const expected = treeSize(fanout, depth);
const addJobs = `SELECT count(*) FROM ${schema}.add_jobs(ARRAY(SELECT json_populate_recordset(NULL::${schema}.job_spec, $1::json)))`;

let completed = 0;
let settle;
const finished = new Promise((resolve, reject) => {
  settle = { resolve, reject };
});
const events = new EventEmitter();
events.on('job:success', () => {
  if (++completed === expected) settle.resolve();
});
events.on('job:error', ({ error }) => settle.reject(error));

await resetSchema(connectionString, schema);
const runner = await run({
  connectionString,
  schema,
  concurrency,
  maxPoolSize: concurrency + 4,
  pollInterval: 1000,
  noHandleSignals: true,
  events,
  logger: new Logger(() => () => {}),
  taskList: {
    async node(payload, helpers) {
      const { depth: left } = payload;
      if (left === 0) return;
      const specs = [];
      for (let i = 0; i < fanout; i++) specs.push({ identifier: 'node', payload: { depth: left - 1 } });
      await helpers.query(addJobs, [JSON.stringify(specs)]);
    },
  },
});

const started = performance.now();
await runner.addJob('node', { depth });
let ending;
let seconds;
try {
  ending = await raceDeadline(finished, deadlineSeconds);
  seconds = (performance.now() - started) / 1000;
} finally {
  await runner.stop();
}
await resetSchema(connectionString, schema);
report({ nodes: completed, seconds, partial: ending === 'deadline', settings: `concurrency ${concurrency}, add_jobs per node, LISTEN/NOTIFY` });
