import { openEngine } from '../engine/engine.js';
import { jsonView } from '../engine/json-view.js';
import { EXIT, type ExitCode, type GlobalFlags, openExisting, print } from './common.js';

/** Emitted records as JSON lines (msgpack values tagged, see json-view.ts); with --follow, waits for more until the run ends. Only committed records appear. */
export async function resultsCommand(runId: string, flags: GlobalFlags & { follow?: boolean; after?: number }): Promise<ExitCode> {
  const store = await openExisting(flags);
  // Records of a run whose stored state does not add up are not given out as if it were sound.
  await store.verifyRun?.(runId);
  const engine = await openEngine({ store });
  // One SIGINT ends a follow at once, whether or not a record is on its way (exit 130).
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  try {
    for await (const item of engine.results(runId, { follow: flags.follow, afterSeq: flags.after, signal: stop.signal })) {
      print(JSON.stringify(jsonView(item.record)));
      if (stop.signal.aborted) break;
    }
  } finally {
    process.off('SIGINT', onSignal);
    await engine.close();
    await store.close();
  }
  return stop.signal.aborted ? EXIT.sigint : EXIT.ok;
}
