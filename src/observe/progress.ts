/*
 * What a run's progress honestly is, shared by `rlm run`'s progress line, `rlm status` and the dashboard.
 *
 * - A run's size is unknown unless its task declares `estimate`: the frontier of a depth-first run is a few
 *   nodes wide whatever is left, so done / (done + frontier) says nothing and is never shown as a percentage.
 * - With an estimate, the percentage is finished nodes (done and dead) over the estimate, held below 100 until
 *   the run has really ended, and the ETA is what is left at the given rate.
 */
import type { RunRecord, StateCounts } from '../store/store.js';

/** Nodes still to finish that the store knows of: pending, running and waiting (parked nodes wait for a person). */
export function frontierOf(counts: StateCounts): number {
  return counts.pending + counts.running + counts.waiting;
}

export interface EstimatedProgress {
  /** Nodes the run is expected to have in all, or null when its size is unknown. */
  estimate: number | null;
  /** Finished nodes over the estimate, 0 to 100 with one decimal; 100 only once the run completed. Null when unknown. */
  percent: number | null;
  /** Seconds left at `rate`; null when the size is unknown, nothing moves, or the run has ended. */
  etaSeconds: number | null;
  /** More nodes finished than the estimate said the run has: the percentage stops at 99.9 and the ETA is unknown. */
  pastEstimate: boolean;
}

/** Percentage and ETA of a run at `rate` nodes per second (null: no rate known yet). */
export function estimatedProgress(run: Pick<RunRecord, 'state' | 'counts' | 'estimate'>, rate: number | null): EstimatedProgress {
  const estimate = run.estimate;
  if (estimate === null) return { estimate: null, percent: null, etaSeconds: null, pastEstimate: false };
  const finished = run.counts.done + run.counts.dead;
  if (run.state === 'completed') return { estimate, percent: 100, etaSeconds: null, pastEstimate: false };
  const pastEstimate = finished >= estimate;
  const percent = Math.min(99.9, Math.floor((finished / estimate) * 1000) / 10);
  const ended = run.state === 'failed' || run.state === 'cancelled';
  const etaSeconds = ended || pastEstimate || rate === null || rate <= 0 ? null : Math.ceil((estimate - finished) / rate);
  return { estimate, percent, etaSeconds, pastEstimate };
}

/** A duration for people: `42s`, `3m 05s`, `2h 07m`, `3d 04h`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3_600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3_600)}h ${String(Math.floor((s % 3_600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d ${String(Math.floor((s % 86_400) / 3_600)).padStart(2, '0')}h`;
}

/** A count with thousands separators, as every progress display shows it. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
