import { ConfigError } from './errors.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';

/** Options of one engine (one worker process). Every field is optional. */
export interface EngineOptions {
  /** Steps run at once in this process. Raise it for I/O-bound handlers. @default 8 */
  concurrency?: number;
  /** How long a worker's claim on its nodes lasts without a heartbeat, in ms. @default 30_000 */
  leaseMs?: number;
  /** Heartbeat interval in ms; must be well under `leaseMs`. @default 10_000 */
  heartbeatMs?: number;
  /** Group commit: commit after this many finished steps. 1 commits every step. @default 1_000 */
  commitEverySteps?: number;
  /** Group commit: commit at most this long after the first uncommitted step, in ms. @default 50 */
  commitEveryMs?: number;
  /** Leased nodes held in memory per worker; children past it wait in the store. @default 4_096 */
  windowSize?: number;
  /** Most nodes leased per claim when the window runs dry. @default 1_024 */
  claimBatch?: number;
  /** Children persisted per transaction when a step returns an iterable. @default 1_000 */
  spawnChunk?: number;
  /** How long an idle worker waits before looking for work again, in ms. @default 100 */
  pollMs?: number;
  /** Graceful stop: how long in-flight steps may take to finish, in ms. @default 10_000 */
  graceMs?: number;
  /** Compact the run's store (see Store.compact) every this many group commits; 0 = never. @default 0 */
  compactEveryCommits?: number;
  /** Stop gracefully once the resident set passes this many bytes (exit 75). 0 = no ceiling. @default 0 */
  maxRssBytes?: number;
  logger?: Logger;
  metrics?: Metrics;
}

export const DEFAULTS = {
  concurrency: 8,
  leaseMs: 30_000,
  heartbeatMs: 10_000,
  commitEverySteps: 1_000,
  commitEveryMs: 50,
  windowSize: 4_096,
  claimBatch: 1_024,
  spawnChunk: 1_000,
  pollMs: 100,
  graceMs: 10_000,
  maxRssBytes: 0,
  compactEveryCommits: 0,
} as const;

export type ResolvedEngineOptions = Readonly<{ [K in keyof typeof DEFAULTS]: number }> & { readonly logger?: Logger; readonly metrics?: Metrics };

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function integer(name: string, value: number, min: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new ConfigError(`Expected \`${name}\` to be an integer >= ${min}, got \`${String(value)}\` (${typeof value}).`);
  }
}

export function resolveOptions(options: EngineOptions = {}): ResolvedEngineOptions {
  const resolved = { ...DEFAULTS, ...withoutUndefined(options) };
  integer('concurrency', resolved.concurrency, 1);
  integer('leaseMs', resolved.leaseMs, 10);
  integer('heartbeatMs', resolved.heartbeatMs, 1);
  integer('commitEverySteps', resolved.commitEverySteps, 1);
  integer('commitEveryMs', resolved.commitEveryMs, 0);
  integer('windowSize', resolved.windowSize, 1);
  integer('claimBatch', resolved.claimBatch, 1);
  integer('spawnChunk', resolved.spawnChunk, 1);
  integer('pollMs', resolved.pollMs, 1);
  integer('graceMs', resolved.graceMs, 0);
  integer('maxRssBytes', resolved.maxRssBytes, 0);
  integer('compactEveryCommits', resolved.compactEveryCommits, 0);
  if (resolved.heartbeatMs >= resolved.leaseMs) {
    throw new ConfigError(
      `Expected \`heartbeatMs\` (${resolved.heartbeatMs}) to be less than \`leaseMs\` (${resolved.leaseMs}); leases would expire between heartbeats.`,
    );
  }
  return Object.freeze(resolved);
}
