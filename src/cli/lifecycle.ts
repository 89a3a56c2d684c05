import { UsageError } from '../engine/errors.js';
import { EXIT, type ExitCode, type GlobalFlags, parseJson, print, requireRun, withStore } from './common.js';

/** `rlm cancel ID`: the whole run ends as `cancelled`; its workers start no new step of it and hand its nodes back. */
export async function cancelRunCommand(runId: string, flags: GlobalFlags): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    const run = await requireRun(store, runId);
    const changed = await store.setRunState(runId, 'cancelled', { from: ['running', 'paused', 'failed'] });
    if (!changed) {
      print(`Run ${runId} is ${run.state}; only a running, paused or failed run can be cancelled.`);
      return EXIT.ok;
    }
    print(
      `Run ${runId} cancelled: its workers finish their steps in flight and start no new one. ` +
        `\`rlm run <module> --run ${runId} --restart\` starts it again from its root input; \`rlm rm ${runId}\` deletes it.`,
    );
    return EXIT.ok;
  });
}

/** `rlm rm ID`: deletes a run and everything it owns. */
export async function rmCommand(runIds: string[], flags: GlobalFlags & { force?: boolean }): Promise<ExitCode> {
  if (runIds.length === 0) throw new UsageError('Name the runs to delete (ids from `rlm status`).');
  return withStore(flags, async (store) => {
    for (const runId of runIds) await requireRun(store, runId);
    for (const runId of runIds) {
      const nodes = await store.deleteRun(runId, { force: flags.force });
      print(`Run ${runId} deleted with its ${nodes} node(s), their effects and emitted records.`);
    }
    return EXIT.ok;
  });
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Reads a duration such as `7d`, `12h`, `30m`, `45s` or `500ms` into milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(text.trim());
  if (!match) throw new UsageError(`Expected a duration such as 7d, 12h, 30m or 45s, got \`${text}\`.`);
  return Math.round(Number(match[1]) * (UNITS[match[2] as string] as number));
}

/** `rlm purge --older-than 7d`: deletes finished runs (completed, failed, cancelled) that finished longer ago than that. */
export async function purgeCommand(flags: GlobalFlags & { olderThan?: string; json?: boolean }): Promise<ExitCode> {
  if (flags.olderThan === undefined) throw new UsageError('Pass --older-than DURATION (such as 7d): finished runs that finished longer ago are deleted.');
  const age = parseDuration(flags.olderThan);
  return withStore(flags, async (store) => {
    const purged = await store.purgeRuns(Date.now() - age);
    if (flags.json) print(JSON.stringify(purged));
    else print(purged.length === 0 ? `No finished run is older than ${flags.olderThan}.` : `${purged.length} finished run(s) deleted: ${purged.join(', ')}.`);
    return EXIT.ok;
  });
}

/** `rlm signal ID NAME [JSON]`: delivers a run's named signal; nodes waiting for it (ctx.waitFor) run again. */
export async function signalCommand(runId: string, name: string, payloadText: string | undefined, flags: GlobalFlags): Promise<ExitCode> {
  const payload = payloadText === undefined ? null : parseJson(payloadText, 'the signal payload');
  return withStore(flags, async (store) => {
    const run = await requireRun(store, runId);
    const { sent, woke } = await store.sendSignal(runId, name, JSON.stringify(payload));
    const waiting = woke > 0 ? ` ${woke} waiting node(s) go back to the frontier.` : ' No node waits for it yet: a step that waits for it will get it at once.';
    const resume = woke > 0 && run.state !== 'running' ? ` Resume the run (\`rlm run <module> --run ${runId}\`) if no worker is on it.` : '';
    print(`Run ${runId}: signal ${name} ${sent ? 'delivered' : 'was delivered before, with this payload'}.${waiting}${resume}`);
    return EXIT.ok;
  });
}

/** `rlm budget ID [N] [--cost C]`: sets a run's node budget and/or cost budget (raising one lets approved parked nodes run on). */
export async function budgetCommand(runId: string, budgetText: string | undefined, flags: GlobalFlags & { cost?: number }): Promise<ExitCode> {
  if (budgetText === undefined && flags.cost === undefined) throw new UsageError('Give the node budget (`rlm budget ID N`), the cost budget (`--cost C`), or both.');
  const budget = budgetText === undefined ? undefined : Number(budgetText);
  if (budget !== undefined && (!Number.isInteger(budget) || budget < 1)) throw new UsageError(`Expected the budget to be an integer >= 1, got \`${budgetText}\`.`);
  return withStore(flags, async (store) => {
    const run = await requireRun(store, runId);
    const parked = run.counts.parked;
    const next = parked > 0 ? ` ${parked} parked node(s) wait: \`rlm approve ${runId} --all\` lets them run.` : '';
    if (budget !== undefined) {
      const count = await store.setNodeBudget(runId, budget);
      const full = budget <= count ? ` The run has ${count} node(s) already: every new child is parked until the budget is above that.` : '';
      print(`Run ${runId}: node budget ${budget} (${count} node(s) created so far).${flags.cost === undefined ? next : ''}${full}`);
    }
    if (flags.cost !== undefined) {
      await store.setCostBudget(runId, flags.cost);
      const full = flags.cost <= run.costSpent ? ` Its steps were charged ${run.costSpent} already: every reservation is refused until the budget is above that.` : '';
      print(`Run ${runId}: cost budget ${flags.cost} (${run.costSpent} charged so far).${next}${full}`);
    }
    return EXIT.ok;
  });
}
