import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { METRIC } from './names.js';

/** Prometheus metrics of one engine, in their own registry. */
export class Metrics {
  readonly registry = new Registry();
  readonly steps = new Counter({ name: METRIC.steps, help: 'Steps finished, by outcome.', labelNames: ['outcome'], registers: [this.registry] });
  readonly errors = new Counter({ name: METRIC.errors, help: 'Failed attempts, by error code.', labelNames: ['code'], registers: [this.registry] });
  readonly stepDuration = new Histogram({
    name: METRIC.stepDuration,
    help: 'Duration of one step attempt.',
    buckets: [0.0001, 0.001, 0.01, 0.1, 1, 10, 60],
    registers: [this.registry],
  });
  readonly commitDuration = new Histogram({
    name: METRIC.commitDuration,
    help: 'Duration of one group commit (checkpoint).',
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });
  readonly commitBatch = new Histogram({
    name: METRIC.commitBatch,
    help: 'Operations per group commit.',
    buckets: [1, 10, 100, 500, 1000, 5000],
    registers: [this.registry],
  });
  readonly frontier = new Gauge({ name: METRIC.frontier, help: 'Nodes of the run, by state.', labelNames: ['run', 'state'], registers: [this.registry] });
  readonly dlq = new Gauge({ name: METRIC.dlq, help: 'Nodes in the dead-letter queue.', labelNames: ['run'], registers: [this.registry] });
  readonly leaseExpiries = new Counter({ name: METRIC.leaseExpiries, help: 'Nodes taken back from dead or expired workers.', registers: [this.registry] });
  readonly fenced = new Counter({ name: METRIC.rejectedCommits, help: 'Step writes rejected because their lease had moved on.', registers: [this.registry] });
  readonly effectCalls = new Counter({ name: METRIC.effectCalls, help: 'Effect functions called (journal misses).', registers: [this.registry] });

  /** Serves `/metrics` in Prometheus text on 127.0.0.1:`port`. */
  serve(port: number): Promise<Server> {
    const server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('Not found; metrics are at /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (error: unknown) => res.writeHead(500).end(String(error)),
      );
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  }
}
