import { openEngine } from '../engine/engine.js';
import { jsonView } from '../engine/json-view.js';
import { EXIT, type ExitCode, type GlobalFlags, openExisting, print } from './common.js';

/** Emitted records as JSON lines (msgpack values tagged, see json-view.ts); with --follow, waits for more until the run ends. Only committed records appear. */
export async function resultsCommand(runId: string, flags: GlobalFlags & { follow?: boolean; after?: number }): Promise<ExitCode> {
  const store = await openExisting(flags);
  const engine = await openEngine({ store });
  let stop = false;
  const onSignal = () => {
    stop = true;
  };
  process.once('SIGINT', onSignal);
  try {
    for await (const item of engine.results(runId, { follow: flags.follow, afterSeq: flags.after })) {
      print(JSON.stringify(jsonView(item.record)));
      if (stop) break;
    }
  } finally {
    process.off('SIGINT', onSignal);
    await engine.close();
    await store.close();
  }
  return EXIT.ok;
}
