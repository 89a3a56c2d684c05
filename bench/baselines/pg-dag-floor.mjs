/**
 * The floor for a memoised DAG on the shared store: the lattice's durable writes (examples/lattice.ts) on
 * PostgreSQL from one hand-written loop, as bench/baselines/dag-floor.mjs does them on SQLite: per child listed a
 * keyed insert against a unique index on the key (ON CONFLICT DO NOTHING), an edge row for a key that exists, each
 * node written waiting with its unfinished-child count and then done with its result, each parent decremented once
 * per finished child. 1000 nodes per transaction; over a network connection each group's writes go as a few
 * multi-row statements (unnest), since a round trip per row would measure the wire. Which keys exist, and who
 * waits on whom, is kept in memory.
 *
 *   node bench/baselines/pg-dag-floor.mjs '{"n":200,"m":200,"connectionString":"postgres://…"}'
 */
import pg from 'pg';
import { latticeChildren, MOD } from '../lib/lattice.mjs';
import { parseArgs, report } from '../lib/tree.mjs';

const BATCH = 1000;
const { n, m, connectionString } = parseArgs();
const client = new pg.Client({ connectionString });
await client.connect();
await client.query(`
CREATE TABLE nodes (
  id bigint PRIMARY KEY,
  parent_id bigint,
  key text NOT NULL,
  input text NOT NULL,
  state text NOT NULL,
  result text,
  pending integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX nodes_key ON nodes (key);
CREATE TABLE edges (parent_id bigint NOT NULL, child_id bigint NOT NULL, PRIMARY KEY (parent_id, child_id));`);
const insert = `INSERT INTO nodes (id, parent_id, key, input, state)
  SELECT id, parent_id, key, input, 'pending' FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS c(id, parent_id, key, input)
  ON CONFLICT (key) DO NOTHING`;
const edges = 'INSERT INTO edges (parent_id, child_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])';
const waiting = `UPDATE nodes SET state = 'waiting', pending = u.pending FROM unnest($1::bigint[], $2::int[]) AS u(id, pending) WHERE nodes.id = u.id`;
const done = `UPDATE nodes SET state = 'done', result = u.result, pending = 0 FROM unnest($1::bigint[], $2::text[]) AS u(id, result) WHERE nodes.id = u.id`;
const decrement = `UPDATE nodes SET pending = nodes.pending - d.n FROM (SELECT id, count(*)::int AS n FROM unnest($1::bigint[]) AS id GROUP BY id) d WHERE nodes.id = d.id`;

let group = { born: [[], [], [], []], edges: [[], []], waiting: [[], []], done: [[], []], decrements: [] };
async function flush() {
  await client.query('BEGIN');
  if (group.born[0].length > 0) await client.query(insert, group.born);
  if (group.edges[0].length > 0) await client.query(edges, group.edges);
  if (group.waiting[0].length > 0) await client.query(waiting, group.waiting);
  if (group.decrements.length > 0) await client.query(decrement, [group.decrements]);
  if (group.done[0].length > 0) await client.query(done, group.done);
  await client.query('COMMIT');
  group = { born: [[], [], [], []], edges: [[], []], waiting: [[], []], done: [[], []], decrements: [] };
}

const byKey = new Map();
let nextId = 1;
let rootResult = null;
let nodes = 0;
const key = (i, j) => `${i},${j}`;
function spawn(parentId, i, j) {
  const node = { id: nextId++, i, j, parents: [], remaining: 0, sum: 0, done: false, result: 0 };
  byKey.set(key(i, j), node);
  group.born[0].push(node.id);
  group.born[1].push(parentId);
  group.born[2].push(key(i, j));
  group.born[3].push(JSON.stringify({ n, m, i, j }));
  return node;
}
function finish(node, result) {
  node.done = true;
  node.result = result;
  group.done[0].push(node.id);
  group.done[1].push(JSON.stringify(result));
  if (node.parents.length === 0) rootResult = result;
  for (const parent of node.parents) {
    group.decrements.push(parent.id);
    parent.sum = (parent.sum + result) % MOD;
    if (--parent.remaining === 0) finish(parent, parent.sum);
  }
  node.parents = [];
}

const started = performance.now();
const stack = [spawn(null, 0, 0)];
while (stack.length > 0) {
  const node = stack.pop();
  const children = latticeChildren(n, m, node.i, node.j);
  nodes++;
  if (children.length === 0) {
    finish(node, 1);
  } else {
    let unfinished = 0;
    for (const [ci, cj] of children) {
      let child = byKey.get(key(ci, cj));
      if (!child) {
        child = spawn(node.id, ci, cj);
        stack.push(child);
      } else {
        group.edges[0].push(node.id);
        group.edges[1].push(child.id);
      }
      if (child.done) node.sum = (node.sum + child.result) % MOD;
      else {
        child.parents.push(node);
        unfinished++;
      }
    }
    node.remaining = unfinished;
    group.waiting[0].push(node.id);
    group.waiting[1].push(unfinished);
    if (unfinished === 0) finish(node, node.sum);
  }
  if (nodes % BATCH === 0) await flush();
}
await flush();
const seconds = (performance.now() - started) / 1000;
const stored = (await client.query(`SELECT count(*)::int AS n FROM nodes WHERE state = 'done'`)).rows[0].n;
await client.end();
report({ nodes, seconds, stored, result: rootResult });
