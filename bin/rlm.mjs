#!/usr/bin/env node
import { main } from '../dist/cli/main.js';

/**
 * Ends the process with `code` once stdout and stderr have flushed. Left to end by itself, the process would
 * first tear its handles down, and a signal arriving then would kill it with no exit code.
 */
function exit(code) {
  process.exitCode = code;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

main(process.argv).then(exit, (error) => {
  console.error(error);
  exit(1);
});
