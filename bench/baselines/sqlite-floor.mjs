/**
 * The floor for the embedded store: a minimal hand-written better-sqlite3 loop doing the durable writes the tree
 * needs and nothing else. One INSERT per child, one UPDATE per node (state done + result), 1000 nodes per
 * transaction, WAL, synchronous=FULL. Nodes run depth-first from an in-memory stack, never re-read from the file.
 *
 * Shapes:
 * - walk: the traversal above.
 * - combine: an inner node is updated to waiting with its child count; each finished child also decrements its
 *   parent's counter, and the last one writes the parent's combined result (done). Child results are summed in
 *   memory, as the engine's window does.
 * - effect: walk plus one journal row per node, committed (with the group so far) before the step goes on,
 *   which is what `ctx.effect` promises: one transaction, so one fsync, per node.
 *
 *   node bench/baselines/sqlite-floor.mjs '{"shape":"walk","fanout":10,"depth":6,"file":"/tmp/floor.db"}'
 */
import Database from 'better-sqlite3';
import { combine, parseArgs, report, step } from '../lib/tree.mjs';

const BATCH = 1000;
const { shape, fanout, depth, file } = parseArgs();

const db = new Database(file);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec(`
CREATE TABLE nodes (
  id INTEGER PRIMARY KEY,
  parent_id INTEGER,
  depth INTEGER NOT NULL,
  input TEXT NOT NULL,
  state TEXT NOT NULL,
  result TEXT,
  pending INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE effects (node_id INTEGER NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (node_id, name));
`);
const insertNode = db.prepare(`INSERT INTO nodes (parent_id, depth, input, state) VALUES (?, ?, ?, 'pending')`);
const setDone = db.prepare(`UPDATE nodes SET state = 'done', result = ? WHERE id = ?`);
const setWaiting = db.prepare(`UPDATE nodes SET state = 'waiting', pending = ? WHERE id = ?`);
const decrement = db.prepare('UPDATE nodes SET pending = pending - 1 WHERE id = ?');
const setCombined = db.prepare(`UPDATE nodes SET state = 'done', result = ?, pending = 0 WHERE id = ?`);
const journal = db.prepare('INSERT INTO effects (node_id, name, value) VALUES (?, ?, ?)');
const begin = db.prepare('BEGIN');
const commit = db.prepare('COMMIT');

/** Inner nodes waiting for their children (combine only): id → { parentId, input, remaining, results }. */
const waiting = new Map();

function finish(parentId, result) {
  while (parentId !== null) {
    decrement.run(parentId);
    const parent = waiting.get(parentId);
    parent.results.push(result);
    if (--parent.remaining > 0) return;
    waiting.delete(parentId);
    result = combine(parent.input, parent.results);
    setCombined.run(JSON.stringify(result), parentId);
    parentId = parent.parentId;
  }
  rootResult = result;
}

let rootResult = null;
let nodes = 0;
const started = performance.now();
begin.run();
const root = { fanout, depth };
const rootId = Number(insertNode.run(null, 0, JSON.stringify(root)).lastInsertRowid);
const stack = [{ id: rootId, parentId: null, depth: 0, input: root }];
while (stack.length > 0) {
  const node = stack.pop();
  if (shape === 'effect') {
    journal.run(node.id, 'visit', JSON.stringify(node.id));
    commit.run();
    begin.run();
  }
  const out = step(node.input);
  nodes++;
  if (out.children) {
    for (const child of out.children) {
      const id = Number(insertNode.run(node.id, node.depth + 1, JSON.stringify(child.input)).lastInsertRowid);
      stack.push({ id, parentId: node.id, depth: node.depth + 1, input: child.input });
    }
    if (shape === 'combine') {
      setWaiting.run(out.children.length, node.id);
      waiting.set(node.id, { parentId: node.parentId, input: node.input, remaining: out.children.length, results: [] });
    } else {
      setDone.run(null, node.id);
    }
  } else {
    setDone.run(JSON.stringify(out.result), node.id);
    if (shape === 'combine') finish(node.parentId, out.result);
  }
  if (nodes % BATCH === 0) {
    commit.run();
    begin.run();
  }
}
commit.run();
const seconds = (performance.now() - started) / 1000;
const stored = db.prepare(`SELECT count(*) AS n FROM nodes WHERE state = 'done'`).get().n;
db.close();
report({ nodes, seconds, result: shape === 'combine' ? rootResult : stored });
