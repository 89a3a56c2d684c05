import type { ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { AggregatorRegistry, Counter, Gauge, Histogram, type MetricObjectWithValues, type MetricValue, Registry } from 'prom-client';
import { NODE_STATES, type RunRecord } from '../store/store.js';
import { METRIC } from './names.js';

/** One registry's metrics as `getMetricsAsJSON` gives them: what a worker process hands its supervisor. */
export type MetricsSnapshot = MetricObjectWithValues<MetricValue<string>>[];

/**
 * Prometheus metrics of one engine, in their own registry.
 *
 * Counters and histograms move on the hot path (a prom-client increment per step, an observation per group
 * commit). The run gauges (`rlm_frontier_nodes`, `rlm_dlq_nodes`) cost nothing there: they are read from the
 * store's run counters when `/metrics` is scraped (see `watchRuns`), so they are exact whichever process moved
 * the nodes.
 */
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
  readonly frontier = new Gauge({
    name: METRIC.frontier,
    help: "Nodes of the run by state, from the store's run counters when scraped.",
    labelNames: ['run', 'state'],
    registers: [this.registry],
  });
  readonly dlq = new Gauge({
    name: METRIC.dlq,
    help: "Nodes of the run in the dead-letter queue, from the store's run counters when scraped.",
    labelNames: ['run'],
    registers: [this.registry],
  });
  readonly leaseExpiries = new Counter({ name: METRIC.leaseExpiries, help: 'Nodes taken back from dead or expired workers.', registers: [this.registry] });
  readonly fenced = new Counter({ name: METRIC.rejectedCommits, help: 'Step writes rejected because their lease had moved on.', registers: [this.registry] });
  readonly effectCalls = new Counter({ name: METRIC.effectCalls, help: 'Effect functions called (journal misses).', registers: [this.registry] });

  #runs: (() => Promise<readonly RunRecord[]>) | null = null;
  #peers: (() => Promise<MetricsSnapshot[]>) | null = null;

  /**
   * The runs whose gauges this registry serves: `source` is read at each scrape, and the gauges show exactly the
   * runs it returns (a run that left it leaves the gauges too).
   */
  watchRuns(source: () => Promise<readonly RunRecord[]>): void {
    this.#runs = source;
  }

  /**
   * Other registries served summed with this one (a supervisor's worker processes): counters and histograms add
   * up; the run gauges come from this registry alone, since the workers do not watch runs.
   */
  aggregate(peers: () => Promise<MetricsSnapshot[]>): void {
    this.#peers = peers;
  }

  async #updateRunGauges(): Promise<void> {
    if (!this.#runs) return;
    const runs = await this.#runs();
    this.frontier.reset();
    this.dlq.reset();
    for (const run of runs) {
      for (const state of NODE_STATES) this.frontier.set({ run: run.id, state }, run.counts[state]);
      this.dlq.set({ run: run.id }, run.counts.dead);
    }
  }

  /** The registry's metrics in Prometheus text, run gauges read now, peers summed in. */
  async text(): Promise<string> {
    await this.#updateRunGauges();
    if (!this.#peers) return this.registry.metrics();
    const snapshots = [await this.registry.getMetricsAsJSON(), ...(await this.#peers())];
    return AggregatorRegistry.aggregate(snapshots).metrics();
  }

  /** Serves `/metrics` in Prometheus text on 127.0.0.1:`port`. */
  serve(port: number): Promise<Server> {
    const server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('Not found; metrics are at /metrics\n');
        return;
      }
      this.text().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (error: unknown) => res.writeHead(500).end(`Could not collect the metrics: ${String(error)}\n`),
      );
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  }
}

interface MetricsRequest {
  rlm: 'metrics?';
  id: number;
}
interface MetricsReply {
  rlm: 'metrics';
  id: number;
  metrics: MetricsSnapshot;
}

/**
 * A supervised worker process answers its supervisor's requests for its metrics over the IPC channel. The
 * channel does not keep the process alive.
 */
export function answerMetricsRequests(metrics: Metrics): void {
  if (!process.send) return;
  process.on('message', (message: MetricsRequest) => {
    if (message?.rlm !== 'metrics?') return;
    void metrics.registry.getMetricsAsJSON().then((snapshot) => {
      const reply: MetricsReply = { rlm: 'metrics', id: message.id, metrics: snapshot };
      if (process.connected) process.send?.(reply);
    });
  });
  process.channel?.unref();
}

let nextRequest = 0;

/**
 * Asks each worker process for its metrics; a process that does not answer within `timeoutMs` (busy, exiting)
 * is left out of this scrape.
 */
export async function requestMetrics(children: Iterable<ChildProcess>, timeoutMs = 2_000): Promise<MetricsSnapshot[]> {
  const ask = (child: ChildProcess): Promise<MetricsSnapshot | null> =>
    new Promise((resolve) => {
      if (!child.connected) return resolve(null);
      const id = ++nextRequest;
      const onMessage = (message: MetricsReply) => {
        if (message?.rlm !== 'metrics' || message.id !== id) return;
        done(message.metrics);
      };
      const timer = setTimeout(() => done(null), timeoutMs);
      const done = (value: MetricsSnapshot | null) => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(value);
      };
      const onExit = () => done(null);
      child.on('message', onMessage);
      child.once('exit', onExit);
      child.send({ rlm: 'metrics?', id } satisfies MetricsRequest, (error) => error && done(null));
    });
  const answers = await Promise.all([...children].map(ask));
  return answers.filter((answer): answer is MetricsSnapshot => answer !== null);
}
