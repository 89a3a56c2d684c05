import Database from 'better-sqlite3';
import { seal } from '../../src/store/checksum.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';

export interface TreeStoreOptions {
  runId: string;
  fanout: number;
  depth: number;
}

/**
 * Writes the rows a finished run of examples/tree.ts leaves (a full tree of `fanout` and `depth`, every node done,
 * keys as paths from the root) straight into a SQLite store with SQL: a 10-million-node store in a fraction of the
 * time running its steps would take. Returns the node count. The schema is the store's own (migrated first).
 */
export async function buildTreeStore(path: string, options: TreeStoreOptions): Promise<number> {
  const { runId, fanout: f, depth: d } = options;
  const store = new SqliteStore({ path });
  await store.migrate();
  await store.close();
  const total = (f ** (d + 1) - 1) / (f - 1);
  // Each node's result is its subtree's size, as the tree's combine computes it.
  const sizes = Array.from({ length: d + 1 }, (_, depth) => (f ** (d - depth + 1) - 1) / (f - 1));
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = OFF');
    // Every stored value goes under its checksum, as the store writes it.
    db.function('rlm_seal', { deterministic: true }, (value: unknown) => (typeof value === 'string' ? seal(value) : value));
    const now = Date.now();
    db.transaction(() => {
      const base = (db.prepare("SELECT value FROM rlm_meta WHERE key = 'next_node_id'").get() as { value: number }).value;
      // Heap numbering: the children of node i are i*f+1 … i*f+f, so a breadth-first walk yields ids in order.
      db.prepare(
        `WITH RECURSIVE digits(o) AS (SELECT 0 UNION ALL SELECT o + 1 FROM digits WHERE o < @f - 1),
         t(i, parent, ord, depth, key) AS (
           SELECT 0, NULL, 0, 0, 'root'
           UNION ALL SELECT t.i * @f + digits.o + 1, t.i, digits.o, t.depth + 1, t.key || '/' || digits.o FROM t, digits WHERE t.depth < @d)
         INSERT INTO rlm_nodes (id, run_id, parent_id, ord, key, keyed, depth, priority, order_key, version, state, phase, input, result, created_at, updated_at)
         SELECT @base + i, @runId, CASE WHEN parent IS NULL THEN NULL ELSE @base + parent END, ord, key, 0, depth, 0, -(@base + i), 1, 'done',
                CASE WHEN depth < @d THEN 'combine' ELSE 'run' END, rlm_seal(json_object('fanout', @f, 'depth', @d - depth)),
                rlm_seal(CAST(json_extract(@sizes, '$[' || depth || ']') AS TEXT)), @now, @now
         FROM t`,
      ).run({ f, d, base, runId, now, sizes: JSON.stringify(sizes) });
      db.prepare(
        `INSERT INTO rlm_runs (id, task, task_version, state, input, context, result, frontier_order, node_count, root_id, n_done, created_at, updated_at, finished_at, estimate)
         VALUES (?, 'tree', 1, 'completed', ?, NULL, ?, 'dfs', ?, ?, ?, ?, ?, ?, ?)`,
      ).run(runId, seal(JSON.stringify({ fanout: f, depth: d })), seal(String(total)), total, base, total, now - 60_000, now, now, total);
      db.prepare("UPDATE rlm_meta SET value = ? WHERE key = 'next_node_id'").run(base + total);
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  return total;
}
