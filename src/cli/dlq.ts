import { NotFoundError, UsageError } from '../engine/errors.js';
import { isPersonPause, PERSON_PAUSE, type Store } from '../store/store.js';
import { EXIT, type ExitCode, type GlobalFlags, parseNodeId, print, requireRun, withStore } from './common.js';
import { nodeJson } from './inspect.js';

interface DlqFlags extends GlobalFlags {
  json?: boolean;
  all?: boolean;
  subtree?: string;
}

/** The nodes an operation targets: named ids, a whole subtree's dead nodes, or all of the run's. */
async function targets(store: Store, runId: string, ids: string[], flags: DlqFlags, state: 'dead' | 'parked'): Promise<number[] | 'all'> {
  if (flags.all) return 'all';
  if (flags.subtree) {
    const root = parseNodeId(flags.subtree);
    const out: number[] = [];
    const queue = [root];
    while (queue.length > 0) {
      const id = queue.pop() as number;
      for (const child of await store.listChildren(id, 1_000_000)) {
        if (child.state === state) out.push(child.id);
        queue.push(child.id);
      }
    }
    const self = await store.getNode(root);
    if (self?.state === state) out.push(root);
    return out;
  }
  if (ids.length === 0) throw new UsageError(`Name the nodes (ids from \`rlm dlq list ${runId}\`), or pass --all or --subtree NODE.`);
  return ids.map(parseNodeId);
}

export async function dlqCommand(action: string, runId: string, ids: string[], flags: DlqFlags): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    await requireRun(store, runId);
    switch (action) {
      case 'list': {
        const dead = await store.listNodes(runId, { state: 'dead', limit: 100_000 });
        const rows = dead.map((n) => ({ nodeId: n.id, key: n.key, attempts: n.attempts, error: n.errors[n.errors.length - 1]?.message ?? null }));
        if (flags.json) print(JSON.stringify(rows));
        else if (rows.length === 0) print(`The dead-letter queue of run ${runId} is empty.`);
        else for (const r of rows) print(`${r.nodeId}\t${r.key}\tattempts ${r.attempts}\t${r.error}`);
        return EXIT.ok;
      }
      case 'show': {
        for (const id of ids.map(parseNodeId)) {
          const node = await store.getNode(id);
          if (!node || node.runId !== runId) throw new NotFoundError(`No node ${id} in run ${runId}.`);
          print(flags.json ? JSON.stringify(nodeJson(node)) : JSON.stringify(nodeJson(node), null, 2));
        }
        return EXIT.ok;
      }
      case 'retry': {
        const n = await store.redrive(runId, await targets(store, runId, ids, flags, 'dead'));
        print(`${n} node(s) sent back to the frontier; resume the run with \`rlm run <module> --run ${runId}\` (or let a worker pick them up).`);
        return EXIT.ok;
      }
      case 'drop': {
        const n = await store.dropDead(runId, await targets(store, runId, ids, flags, 'dead'));
        const after = await requireRun(store, runId);
        print(`${n} node(s) dropped from the dead-letter queue; run ${runId} is ${after.state} with ${after.counts.dead} dead node(s) left.`);
        return EXIT.ok;
      }
      default:
        throw new UsageError(`Unknown dlq action \`${action}\`; use list, show, retry or drop.`);
    }
  });
}

export async function cancelCommand(runId: string, nodeText: string, flags: GlobalFlags): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    await requireRun(store, runId);
    if (!store.cancelSubtree) throw new NotFoundError(`${store.description} cannot cancel subtrees.`);
    const n = await store.cancelSubtree(runId, parseNodeId(nodeText));
    print(`${n} unfinished node(s) under ${nodeText} cancelled into the dead-letter queue; \`rlm dlq retry ${runId} --subtree ${nodeText}\` brings them back.`);
    return EXIT.ok;
  });
}

export async function gateCommand(action: 'pause' | 'approve' | 'reject' | 'resume', runId: string, ids: string[], flags: DlqFlags): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    const run = await requireRun(store, runId);
    if (action === 'pause') {
      const changed = await store.setRunState(runId, 'paused', { from: ['running'], reason: `${PERSON_PAUSE} (\`rlm pause\`)` });
      print(
        changed
          ? `Run ${runId} paused: within one commit group its workers start no new step, finish those in flight and hand the rest back; \`rlm resume ${runId}\` lifts it.`
          : `Run ${runId} is ${run.state}, not running.`,
      );
      return EXIT.ok;
    }
    if (action === 'resume') {
      const changed = await store.setRunState(runId, 'running', { from: ['paused'] });
      // Parked nodes and nothing else to run: the run is paused again, for them.
      const after = changed ? await store.settleRun(runId) : run;
      if (!changed) print(`Run ${runId} is ${run.state}, not paused.`);
      else if (after?.state === 'paused') print(`Run ${runId} resumed, and paused again: ${after.pauseReason}.`);
      else print(`Run ${runId} resumed: its workers go on (or \`rlm run <module> --run ${runId}\`).`);
      return EXIT.ok;
    }
    const n = await store.decideParked(runId, await targets(store, runId, ids, flags, 'parked'), action);
    const after = await requireRun(store, runId);
    const held = after.state === 'paused' && isPersonPause(after.pauseReason) ? ` The run stays paused by a person: \`rlm resume ${runId}\` lifts it.` : '';
    print(`${n} parked node(s) ${action === 'approve' ? 'approved' : 'rejected'}.${held}`);
    return EXIT.ok;
  });
}
