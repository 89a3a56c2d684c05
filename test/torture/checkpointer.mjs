/*
 * An operator process that runs WAL checkpoints on a SQLite store while workers write to it, through rlm's own
 * SqliteStore.checkpoint() (which hits the wal.beforeCheckpoint and wal.afterCheckpoint failpoints). The
 * engine never checkpoints by itself (SQLite's auto-checkpoint runs inside commits), so this is the process the
 * torture suite kills around a checkpoint. Usage: node checkpointer.mjs <store.db>; runs until killed.
 */
import { SqliteStore } from '../../dist/store/sqlite/index.js';

const store = new SqliteStore({ path: process.argv[2], mustExist: true });
for (;;) {
  try {
    store.checkpoint();
  } catch (error) {
    process.stderr.write(`checkpoint failed: ${error?.code ?? ''} ${error?.message ?? error}\n`);
    process.exit(1);
  }
  await new Promise((resolve) => setTimeout(resolve, 3));
}
