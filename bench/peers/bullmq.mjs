/**
 * Peer: BullMQ on Redis. Every job is one tree node; an inner node's processor adds its children as jobs
 * (one addBulk) and returns, a leaf returns 1. Completed jobs are kept, as rlm keeps its done nodes. The
 * figure is the time from adding the root until the worker has seen every job complete.
 *
 *   node bench/peers/bullmq.mjs '{"fanout":10,"depth":5,"host":"127.0.0.1","port":6379,"concurrency":64}'
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { parseArgs, raceDeadline, report, treeSize } from '../lib/tree.mjs';

const { fanout, depth, host, port, concurrency = 32, prefix = 'rlm-bench', deadlineSeconds = 600 } = parseArgs();
const expected = treeSize(fanout, depth);
const connection = { host, port, maxRetriesPerRequest: null };
const name = 'tree';
// Fail fast on an unreachable Redis: BullMQ's own connections would retry forever.
const probe = new Redis({ host, port, lazyConnect: true, connectTimeout: 3_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
probe.on('error', () => {});
await probe.connect();
probe.disconnect();
const queue = new Queue(name, { connection, prefix });
await queue.obliterate({ force: true });

let completed = 0;
let settle;
const finished = new Promise((resolve, reject) => {
  settle = { resolve, reject };
});
const worker = new Worker(
  name,
  async (job) => {
    const { depth: left } = job.data;
    if (left === 0) return 1;
    const children = [];
    for (let i = 0; i < fanout; i++) children.push({ name: 'node', data: { depth: left - 1 } });
    await queue.addBulk(children);
    return null;
  },
  { connection, prefix, concurrency, autorun: false },
);
worker.on('completed', () => {
  if (++completed === expected) settle.resolve();
});
worker.on('failed', (job, error) => settle.reject(new Error(`job ${job?.id} failed: ${error.message}`)));
worker.on('error', (error) => settle.reject(error));

const started = performance.now();
await queue.add('node', { depth });
void worker.run();
let ending;
try {
  ending = await raceDeadline(finished, deadlineSeconds);
} finally {
  await worker.close(true);
}
const seconds = (performance.now() - started) / 1000;
await queue.obliterate({ force: true });
await queue.close();
report({ nodes: completed, seconds, partial: ending === 'deadline', settings: `concurrency ${concurrency}, addBulk per node` });
