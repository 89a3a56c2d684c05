import { NotFoundError } from '../engine/errors.js';
import { COST_EFFECT_PREFIX, costOf } from '../store/charges.js';
import type { NodeRecord } from '../store/store.js';
import { payloadView } from '../engine/json-view.js';
import { EXIT, type ExitCode, type GlobalFlags, parseNodeId, print, requireRun, withStore } from './common.js';

export function nodeJson(node: NodeRecord) {
  return {
    nodeId: node.id,
    key: node.key,
    parentId: node.parentId,
    depth: node.depth,
    state: node.state,
    phase: node.phase,
    attempts: node.attempts,
    epoch: node.epoch,
    owner: node.owner,
    version: node.version,
    priority: node.priority,
    pendingChildren: node.pendingChildren,
    parkReason: node.parkReason,
    input: payloadView(node.input),
    context: payloadView(node.context),
    result: payloadView(node.result),
    errors: node.errors,
  };
}

/** One node: input, context, state, attempts and errors, effects, children. */
export async function inspectCommand(runId: string, nodeText: string, flags: GlobalFlags & { json?: boolean; children?: number }): Promise<ExitCode> {
  return withStore(flags, async (store) => {
    await requireRun(store, runId);
    const node = await store.getNode(parseNodeId(nodeText));
    if (!node || node.runId !== runId) throw new NotFoundError(`No node ${nodeText} in run ${runId}.`);
    const [effects, children, subtree, subtreeCost] = await Promise.all([
      store.listEffects(node.id),
      store.listChildren(node.id, flags.children ?? 50),
      store.subtreeCounts(node.id),
      store.subtreeCost(node.id),
    ]);
    const json = {
      ...nodeJson(node),
      effects: effects.map((e) => ({ name: e.name, value: payloadView(e.value), at: new Date(e.at).toISOString() })),
      // What its steps were charged (ctx.reserve, ctx.spend), and its subtree's in all.
      cost: effects.filter((e) => e.name.startsWith(COST_EFFECT_PREFIX)).reduce((sum, e) => sum + costOf(e.value), 0),
      subtreeCost,
      subtree,
      children: children.map((c) => ({ nodeId: c.id, key: c.key, state: c.state })),
    };
    print(flags.json ? JSON.stringify(json) : JSON.stringify(json, null, 2));
    return EXIT.ok;
  });
}
