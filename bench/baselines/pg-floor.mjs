/**
 * A floor for the shared store, for context beside the PostgreSQL rows: the tree walk's durable writes on
 * PostgreSQL from one hand-written loop. The same rows as the SQLite floor (one per child inserted, one per node
 * updated to done with its result), 1000 nodes per transaction; over a network connection each group's inserts
 * and updates go as one multi-row statement each (unnest), since a round trip per row would measure the wire.
 *
 *   node bench/baselines/pg-floor.mjs '{"fanout":10,"depth":5,"connectionString":"postgres://…"}'
 */
import pg from 'pg';
import { parseArgs, report, step } from '../lib/tree.mjs';

const BATCH = 1000;
const { fanout, depth, connectionString } = parseArgs();
const client = new pg.Client({ connectionString });
await client.connect();
await client.query(`
CREATE TABLE nodes (
  id bigint PRIMARY KEY,
  parent_id bigint,
  depth integer NOT NULL,
  input text NOT NULL,
  state text NOT NULL,
  result text,
  pending integer NOT NULL DEFAULT 0
)`);
const insert = `INSERT INTO nodes (id, parent_id, depth, input, state)
  SELECT id, parent_id, depth, input, 'pending' FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[]) AS c(id, parent_id, depth, input)`;
const update = `UPDATE nodes SET state = 'done', result = u.result FROM unnest($1::bigint[], $2::text[]) AS u(id, result) WHERE nodes.id = u.id`;

let nextId = 1;
let born = { id: [], parent: [], depth: [], input: [] };
let done = { id: [], result: [] };
function spawn(parentId, nodeDepth, input) {
  const id = nextId++;
  born.id.push(id);
  born.parent.push(parentId);
  born.depth.push(nodeDepth);
  born.input.push(JSON.stringify(input));
  return id;
}
async function flush() {
  await client.query('BEGIN');
  if (born.id.length > 0) await client.query(insert, [born.id, born.parent, born.depth, born.input]);
  await client.query(update, [done.id, done.result]);
  await client.query('COMMIT');
  born = { id: [], parent: [], depth: [], input: [] };
  done = { id: [], result: [] };
}

let nodes = 0;
const started = performance.now();
const root = { fanout, depth };
const stack = [{ id: spawn(null, 0, root), depth: 0, input: root }];
while (stack.length > 0) {
  const node = stack.pop();
  const out = step(node.input);
  nodes++;
  if (out.children) {
    for (const child of out.children) stack.push({ id: spawn(node.id, node.depth + 1, child.input), depth: node.depth + 1, input: child.input });
  }
  done.id.push(node.id);
  done.result.push(out.children ? null : JSON.stringify(out.result));
  if (nodes % BATCH === 0) await flush();
}
await flush();
const seconds = (performance.now() - started) / 1000;
const stored = (await client.query(`SELECT count(*)::int AS n FROM nodes WHERE state = 'done'`)).rows[0].n;
await client.end();
report({ nodes, seconds, result: stored });
