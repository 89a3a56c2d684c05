import { UsageError } from '../engine/errors.js';
import { redact } from '../ui/api.js';
import { DEFAULT_PORT, startDashboard } from '../ui/server.js';
import { EXIT, type ExitCode, type GlobalFlags, openExisting, print } from './common.js';

/** `rlm ui`: the web dashboard on 127.0.0.1 until Ctrl-C. */
export async function uiCommand(flags: GlobalFlags & { port?: number }): Promise<ExitCode> {
  const port = flags.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new UsageError(`Expected --port to be an integer from 0 to 65535, got \`${port}\`.`);
  const store = await openExisting(flags);
  try {
    const dashboard = await startDashboard({ store, port });
    print(`rlm dashboard on ${dashboard.url} (store ${redact(store.description)}); Ctrl-C stops it.`);
    await new Promise<void>((resolve) => {
      const onSignal = (signal: NodeJS.Signals) => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        // A second signal, or a close that hangs, must not leave the process running.
        process.once(signal, () => process.exit(signal === 'SIGINT' ? EXIT.sigint : EXIT.sigterm));
        setTimeout(() => {
          process.stderr.write('rlm: the dashboard did not stop within 3 s; exiting.\n');
          process.exit(EXIT.failure);
        }, 3_000).unref();
        dashboard.close().then(resolve, resolve);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    });
    return EXIT.ok;
  } finally {
    await store.close();
  }
}
