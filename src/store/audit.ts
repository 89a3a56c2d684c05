/**
 * What `rlm doctor` and a resume check in a store, shared by both stores: counters against recounts, and the
 * report a doctor gives.
 */
import { StoreCorruptError } from '../engine/errors.js';
import type { StateCounts } from './store.js';

/** What a store's doctor found: the checks it ran, and one line per problem (empty: the store is sound). */
export interface DoctorReport {
  /** What was checked, by name (`values` checksums, `rows`, `runs`, …) and how many. */
  checked: Record<string, number>;
  problems: string[];
  /** What is worth knowing but not damage (workers past their lease, say). */
  notes?: string[];
}

const STATES = ['pending', 'running', 'waiting', 'done', 'dead', 'parked'] as const;

/**
 * A run's state counters against a recount of its rows (dropped nodes left the counts). Every state counts
 * exactly, except `done`: compaction
 * deletes finished nodes and keeps the totals, so the rows may hold fewer done nodes than the counter, never more.
 * A state rlm does not know is a damaged row.
 */
export function counterProblems(runId: string, counts: StateCounts, recount: ReadonlyMap<string, number>): string[] {
  const problems: string[] = [];
  for (const [state, n] of recount) {
    if (!(STATES as readonly string[]).includes(state)) problems.push(`run ${JSON.stringify(runId)}: ${n} node(s) in the unknown state ${JSON.stringify(state)}`);
  }
  for (const state of STATES) {
    const rows = recount.get(state) ?? 0;
    const counter = counts[state];
    if (typeof counter !== 'number' || !Number.isSafeInteger(counter)) {
      problems.push(`run ${JSON.stringify(runId)}: its ${state} counter is unreadable (${String(counter)})`);
    } else if (state === 'done' ? counter < rows : counter !== rows) {
      problems.push(`run ${JSON.stringify(runId)}: its ${state} counter says ${counter}, its rows say ${rows}`);
    }
  }
  return problems;
}

/** The error a resume meets on a run whose stored state does not add up. */
export function runDamaged(store: string, runId: string, problems: readonly string[]): StoreCorruptError {
  return new StoreCorruptError(
    `The store ${store} is damaged: run ${runId} does not add up (${problems.slice(0, 3).join('; ')}${problems.length > 3 ? `; ${problems.length - 3} more` : ''}). ` +
      'rlm will not resume it: restore the store from an `rlm snapshot` copy or a backup (`rlm doctor` lists everything it finds).',
  );
}
