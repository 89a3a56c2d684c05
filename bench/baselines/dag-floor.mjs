/**
 * The floor for a memoised DAG on the embedded store: a minimal hand-written better-sqlite3 loop doing the
 * durable writes the lattice (examples/lattice.ts) needs and nothing else, 1000 nodes per transaction, WAL,
 * synchronous=FULL. Per child listed: one keyed INSERT … ON CONFLICT DO NOTHING against a unique index on the key;
 * for a key that exists, one edge row. Per node: one UPDATE to waiting with its unfinished-child count, then one
 * UPDATE to done with its result. Per finished child: one decrement of each parent waiting on it. Nodes run
 * depth-first from an in-memory stack; which keys exist, and who waits on whom, is kept in memory, never re-read.
 *
 *   node bench/baselines/dag-floor.mjs '{"n":1000,"m":1000,"file":"/tmp/dag-floor.db"}'
 */
import Database from 'better-sqlite3';
import { latticeChildren, MOD } from '../lib/lattice.mjs';
import { parseArgs, report } from '../lib/tree.mjs';

const BATCH = 1000;
const { n, m, file } = parseArgs();

const db = new Database(file);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec(`
CREATE TABLE nodes (
  id INTEGER PRIMARY KEY,
  parent_id INTEGER,
  key TEXT NOT NULL,
  input TEXT NOT NULL,
  state TEXT NOT NULL,
  result TEXT,
  pending INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX nodes_key ON nodes (key);
CREATE TABLE edges (parent_id INTEGER NOT NULL, child_id INTEGER NOT NULL, PRIMARY KEY (parent_id, child_id)) WITHOUT ROWID;
`);
const insertNode = db.prepare(`INSERT INTO nodes (parent_id, key, input, state) VALUES (?, ?, ?, 'pending') ON CONFLICT (key) DO NOTHING`);
const insertEdge = db.prepare('INSERT INTO edges (parent_id, child_id) VALUES (?, ?)');
const setWaiting = db.prepare(`UPDATE nodes SET state = 'waiting', pending = ? WHERE id = ?`);
const setDone = db.prepare(`UPDATE nodes SET state = 'done', result = ?, pending = 0 WHERE id = ?`);
const decrement = db.prepare('UPDATE nodes SET pending = pending - 1 WHERE id = ?');
const begin = db.prepare('BEGIN');
const commit = db.prepare('COMMIT');

/** Key → node: its id, the parents waiting on it, and (while it waits) its unfinished children and sum. */
const byKey = new Map();
let rootResult = null;
let nodes = 0;

/** A node finished with `result`: every parent waiting on it counts it; a parent with none left finishes too. */
function finish(node, result) {
  node.done = true;
  node.result = result;
  setDone.run(JSON.stringify(result), node.id);
  if (node.parents.length === 0) rootResult = result;
  for (const parent of node.parents) {
    decrement.run(parent.id);
    parent.sum = (parent.sum + result) % MOD;
    if (--parent.remaining === 0) finish(parent, parent.sum);
  }
  node.parents = [];
}

const started = performance.now();
begin.run();
const key = (i, j) => `${i},${j}`;
const input = (i, j) => JSON.stringify({ n, m, i, j });
const rootId = Number(insertNode.run(null, key(0, 0), input(0, 0)).lastInsertRowid);
const root = { id: rootId, i: 0, j: 0, parents: [], remaining: 0, sum: 0, done: false, result: 0 };
byKey.set(key(0, 0), root);
const stack = [root];
while (stack.length > 0) {
  const node = stack.pop();
  const children = latticeChildren(n, m, node.i, node.j);
  nodes++;
  if (children.length === 0) {
    finish(node, 1);
  } else {
    let unfinished = 0;
    for (const [ci, cj] of children) {
      const childKey = key(ci, cj);
      const inserted = insertNode.run(node.id, childKey, input(ci, cj));
      let child = byKey.get(childKey);
      if (inserted.changes === 1) {
        child = { id: Number(inserted.lastInsertRowid), i: ci, j: cj, parents: [node], remaining: 0, sum: 0, done: false, result: 0 };
        byKey.set(childKey, child);
        stack.push(child);
        unfinished++;
      } else {
        insertEdge.run(node.id, child.id);
        if (child.done) node.sum = (node.sum + child.result) % MOD;
        else {
          child.parents.push(node);
          unfinished++;
        }
      }
    }
    node.remaining = unfinished;
    setWaiting.run(unfinished, node.id);
    if (unfinished === 0) finish(node, node.sum);
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
report({ nodes, seconds, stored, result: rootResult });
