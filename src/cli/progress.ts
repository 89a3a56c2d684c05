import { estimatedProgress, formatCount, formatDuration, frontierOf } from '../observe/progress.js';
import type { RunRecord } from '../store/store.js';

/** One reading of the run's counters. */
interface Sample {
  t: number;
  finished: number;
  frontier: number;
}

/** Readings kept: enough for the ETA's rate window. */
const WINDOW_MS = 10_000;
/** The rate "now" is over this much of the most recent readings. */
const NOW_MS = 3_000;
/** The frontier's trend compares it with this long ago. */
const TREND_MS = 5_000;

export interface ProgressBarOptions {
  stream?: NodeJS.WriteStream;
  /** Nodes finished before this process began working: rates count only this process's steps. @default 0 */
  baseline?: number;
  /** The time this process began working (performance.now()). @default now */
  startedAt?: number;
}

/**
 * One progress line on a TTY, redrawn in place. When the run's size is known (the task's `estimate`) it shows a
 * bar, the percentage and an ETA; when it is not, only what is known and moving: done, the frontier by state and
 * its trend, the rate now and on average, the elapsed time and the dead-letter queue. Rates count only the steps
 * of this process, from `baseline`.
 */
export class ProgressBar {
  readonly #stream: NodeJS.WriteStream;
  readonly #baseline: number;
  readonly #startedAt: number;
  readonly #samples: Sample[] = [];
  #drawn = false;
  #ended = false;

  constructor(options: ProgressBarOptions = {}) {
    this.#stream = options.stream ?? process.stderr;
    this.#baseline = options.baseline ?? 0;
    this.#startedAt = options.startedAt ?? performance.now();
  }

  static enabled(stream: NodeJS.WriteStream = process.stderr): boolean {
    return stream.isTTY === true && process.env.RLM_NO_PROGRESS === undefined;
  }

  /** Redraws the line; a reading that arrives after `done()` (a poll still in flight) is dropped. */
  update(run: RunRecord, now = performance.now()): void {
    if (this.#ended) return;
    const columns = this.#stream.columns || 120;
    this.#stream.write(`\r${this.line(run, now).slice(0, columns - 1)}\u001b[K`);
    this.#drawn = true;
  }

  /** The progress line for this reading of the run (recorded for the rates and the trend). */
  line(run: RunRecord, now = performance.now()): string {
    const c = run.counts;
    const finished = c.done + c.dead;
    const frontier = frontierOf(c);
    this.#samples.push({ t: now, finished, frontier });
    while (this.#samples.length > 2 && now - (this.#samples[1] as Sample).t > WINDOW_MS) this.#samples.shift();

    const elapsed = (now - this.#startedAt) / 1000;
    const average = elapsed > 0.2 ? Math.max(0, finished - this.#baseline) / elapsed : null;
    const recent = this.#rateOver(NOW_MS, now);
    const progress = estimatedProgress(run, this.#rateOver(WINDOW_MS, now) ?? average);

    const parts: string[] = [];
    if (progress.percent !== null && progress.estimate !== null) {
      const width = 12;
      const filled = Math.floor((progress.percent / 100) * width);
      parts.push(`${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${progress.percent.toFixed(1).padStart(5)}% of ${formatCount(progress.estimate)}`);
      if (progress.pastEstimate) parts.push('past the estimate');
      else if (run.state === 'running') parts.push(`ETA ${progress.etaSeconds === null ? '…' : formatDuration(progress.etaSeconds)}`);
    }
    // Most telling first: a narrow terminal cuts the end of the line.
    parts.push(`done ${formatCount(c.done)}`);
    parts.push(`dlq ${formatCount(c.dead)}`);
    if (c.parked) parts.push(`parked ${formatCount(c.parked)}`);
    parts.push(`${recent === null ? '…' : formatCount(recent)}/s (avg ${average === null ? '…' : formatCount(average)})`);
    parts.push(`elapsed ${formatDuration(elapsed)}`);
    const states = (['pending', 'running', 'waiting'] as const).filter((state) => c[state] > 0).map((state) => `${formatCount(c[state])} ${state}`);
    parts.push(`frontier ${formatCount(frontier)}${this.#trend(now)}${states.length > 0 ? ` (${states.join(', ')})` : ''}`);
    return parts.join(' | ');
  }

  /** Nodes finished per second over the last `spanMs`; null until half a second of readings exists. */
  #rateOver(spanMs: number, now: number): number | null {
    const last = this.#samples[this.#samples.length - 1] as Sample;
    let first: Sample | undefined;
    for (const sample of this.#samples) {
      if (now - sample.t <= spanMs) {
        first = sample;
        break;
      }
    }
    if (!first || last.t - first.t < 500) return null;
    return Math.max(0, last.finished - first.finished) / ((last.t - first.t) / 1000);
  }

  /**
   * ` growing` or ` shrinking` when the frontier's mean over the last half of the trend window moved by a fifth
   * (and at least 5 nodes) from its mean over the first half; ` steady` otherwise. Means, because a depth-first
   * frontier jitters from one reading to the next.
   */
  #trend(now: number): string {
    const recent: number[] = [];
    const before: number[] = [];
    for (const sample of this.#samples) {
      const age = now - sample.t;
      if (age <= TREND_MS / 2) recent.push(sample.frontier);
      else if (age <= TREND_MS) before.push(sample.frontier);
    }
    if (recent.length === 0 || before.length === 0) return '';
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    const change = mean(recent) - mean(before);
    if (Math.abs(change) < Math.max(5, mean(before) / 5)) return ' steady';
    return change > 0 ? ' growing' : ' shrinking';
  }

  /** Ends the line: call it once, after the last `update`. */
  done(): void {
    if (this.#drawn) this.#stream.write('\n');
    this.#drawn = false;
    this.#ended = true;
  }
}
