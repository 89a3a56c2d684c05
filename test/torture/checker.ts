/**
 * The invariants of TORTURE.md §8.3, checked after every episode against the store (read directly, as an
 * auditor would, never through rlm), the sink and the reference:
 * - I1 no lost node: the store's keys are the reference's, each in the reference's final state and DLQ reason
 * - I2 no duplicate completion: one row per key, one child per (parent, position), no doubled record or effect
 * - I3 exact result: the run's state and root result, and the multiset of emitted records
 * - I4 effects applied once: the sink holds each expected idempotency key once and no other; the journal agrees
 * - I5 no zombie left: nothing running, no owner on a finished node (zombie attempts are counted by the harness)
 * - I6 bookkeeping: run counters equal a recount; each parent's unfinished-children counter equals a recount
 * - I7 DLQ: invalid nodes never ran (attempts 0), poison pills used every attempt, each with its reason
 * - I8 store integrity: PRAGMA integrity_check and foreign_key_check (SQLite), constraint queries (PostgreSQL)
 * - I12 commit-sequence continuity: the store has at least every commit a worker acknowledged
 */
import Database from 'better-sqlite3';
import type pg from 'pg';
import { unsealed } from '../helpers/store-check.js';
import type { Expected } from './reference.js';
import type { SinkRow } from './sink.js';

export interface AuditNode {
  id: number;
  parentId: number | null;
  ord: number;
  key: string;
  keyed: boolean;
  state: string;
  phase: string;
  attempts: number;
  epoch: number;
  owner: string | null;
  pendingChildren: number;
  result: string | null;
  lastCode: string | null;
  errors: number;
}

export interface Audit {
  integrity: string[];
  run: { state: string; result: string | null; counts: Record<string, number>; nodeCount: number } | null;
  nodes: AuditNode[];
  edges: { parentId: number; childId: number; ord: number }[];
  emits: string[];
  effects: { nodeKey: string; name: string; value: string }[];
  commitSeq: number;
}

const STATES = ['pending', 'running', 'waiting', 'done', 'dead', 'parked'];

function lastCode(errors: unknown): { code: string | null; count: number } {
  let list: unknown = errors;
  if (typeof errors === 'string') {
    try {
      list = JSON.parse(errors);
    } catch {
      return { code: 'UNREADABLE', count: 0 };
    }
  }
  if (!Array.isArray(list) || list.length === 0) return { code: null, count: 0 };
  const last = list[list.length - 1] as { code?: unknown };
  return { code: typeof last?.code === 'string' ? last.code : null, count: list.length };
}

function nodeOf(row: Record<string, unknown>): AuditNode {
  const errors = lastCode(row.errors);
  return {
    id: Number(row.id),
    parentId: row.parent_id === null ? null : Number(row.parent_id),
    ord: Number(row.ord),
    key: row.key as string,
    keyed: row.keyed === 1 || row.keyed === true,
    state: row.state as string,
    phase: row.phase as string,
    attempts: Number(row.attempts),
    epoch: Number(row.epoch),
    owner: (row.owner as string | null) ?? null,
    pendingChildren: Number(row.pending_children),
    result: (unsealed(row.result) as string | null) ?? null,
    lastCode: errors.code,
    errors: errors.count,
  };
}

function runOf(row: Record<string, unknown> | undefined): Audit['run'] {
  if (!row) return null;
  return {
    state: row.state as string,
    result: (unsealed(row.result) as string | null) ?? null,
    counts: Object.fromEntries(STATES.map((s) => [s, Number(row[`n_${s}`])])),
    nodeCount: Number(row.node_count),
  };
}

const NODE_COLUMNS = 'id, parent_id, ord, key, keyed, state, phase, attempts, epoch, owner, pending_children, result, errors';

/** Reads a SQLite store file directly (read-only). Throws when the file cannot be read at all. */
export function auditSqlite(path: string, runId: string): Audit {
  const db = new Database(path, { readonly: true });
  try {
    db.pragma('busy_timeout = 20000');
    const integrity = (db.prepare('PRAGMA integrity_check').all() as { integrity_check: string }[]).map((r) => r.integrity_check);
    const fk = db.prepare('PRAGMA foreign_key_check').all();
    if (fk.length > 0) integrity.push(`foreign_key_check: ${fk.length} rows`);
    const run = runOf(db.prepare('SELECT * FROM rlm_runs WHERE id = ?').get(runId) as Record<string, unknown> | undefined);
    const nodes = (db.prepare(`SELECT ${NODE_COLUMNS} FROM rlm_nodes WHERE run_id = ? ORDER BY id`).all(runId) as Record<string, unknown>[]).map(nodeOf);
    const edges = (
      db.prepare('SELECT e.parent_id, e.child_id, e.ord FROM rlm_edges e JOIN rlm_nodes n ON n.id = e.child_id WHERE n.run_id = ?').all(runId) as Record<string, number>[]
    ).map((e) => ({ parentId: Number(e.parent_id), childId: Number(e.child_id), ord: Number(e.ord) }));
    const emits = (db.prepare('SELECT record FROM rlm_emits WHERE run_id = ?').all(runId) as { record: string }[]).map((e) => unsealed(e.record) as string);
    const effects = (db.prepare('SELECT node_key, name, value FROM rlm_effects WHERE run_id = ?').all(runId) as Record<string, string>[]).map((e) => ({
      nodeKey: e.node_key as string,
      name: e.name as string,
      value: unsealed(e.value) as string,
    }));
    const seq = db.prepare("SELECT value FROM rlm_meta WHERE key = 'commit_seq'").get() as { value: number } | undefined;
    return { integrity, run, nodes, edges, emits, effects, commitSeq: Number(seq?.value ?? 0) };
  } finally {
    db.close();
  }
}

/** The highest commit sequence number of a SQLite store, or -1 when it cannot be read. */
export function sqliteCommitSeq(path: string): number {
  try {
    const db = new Database(path, { readonly: true });
    try {
      db.pragma('busy_timeout = 20000');
      const row = db.prepare("SELECT value FROM rlm_meta WHERE key = 'commit_seq'").get() as { value: number } | undefined;
      return Number(row?.value ?? 0);
    } finally {
      db.close();
    }
  } catch {
    return -1;
  }
}

/** Reads a PostgreSQL store (schema `public` of the client's database) with plain queries. */
export async function auditPostgres(client: pg.Client, runId: string): Promise<Audit> {
  const q = async (text: string, values: unknown[] = []) => (await client.query(text, values)).rows as Record<string, unknown>[];
  const integrity: string[] = [];
  // Constraint checks the schema cannot declare: a node's parent exists in its run, an edge's ends exist,
  // a journal row belongs to a node of the run.
  const orphans = await q(
    'SELECT count(*)::int AS n FROM rlm_nodes c WHERE c.run_id = $1 AND c.parent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rlm_nodes p WHERE p.id = c.parent_id AND p.run_id = c.run_id)',
    [runId],
  );
  const badEdges = await q(
    'SELECT count(*)::int AS n FROM rlm_edges e WHERE NOT EXISTS (SELECT 1 FROM rlm_nodes n WHERE n.id = e.child_id) OR NOT EXISTS (SELECT 1 FROM rlm_nodes n WHERE n.id = e.parent_id)',
  );
  const badStates = await q("SELECT count(*)::int AS n FROM rlm_nodes WHERE run_id = $1 AND state NOT IN ('pending','running','waiting','done','dead','parked')", [runId]);
  for (const [name, rows] of [
    ['orphan nodes', orphans],
    ['dangling edges', badEdges],
    ['unknown states', badStates],
  ] as const) {
    const n = Number(rows[0]?.n ?? 0);
    if (n > 0) integrity.push(`${name}: ${n}`);
  }
  if (integrity.length === 0) integrity.push('ok');
  const run = runOf((await q('SELECT * FROM rlm_runs WHERE id = $1', [runId]))[0]);
  const nodes = (await q(`SELECT ${NODE_COLUMNS} FROM rlm_nodes WHERE run_id = $1 ORDER BY id`, [runId])).map(nodeOf);
  const edges = (await q('SELECT e.parent_id, e.child_id, e.ord FROM rlm_edges e JOIN rlm_nodes n ON n.id = e.child_id WHERE n.run_id = $1', [runId])).map((e) => ({
    parentId: Number(e.parent_id),
    childId: Number(e.child_id),
    ord: Number(e.ord),
  }));
  const emits = (await q('SELECT record FROM rlm_emits WHERE run_id = $1', [runId])).map((e) => unsealed(e.record) as string);
  const effects = (await q('SELECT node_key, name, value FROM rlm_effects WHERE run_id = $1', [runId])).map((e) => ({
    nodeKey: e.node_key as string,
    name: e.name as string,
    value: unsealed(e.value) as string,
  }));
  const seq = await q('SELECT coalesce(max(seq), 0)::bigint AS s FROM rlm_commits');
  return { integrity, run, nodes, edges, emits, effects, commitSeq: Number(seq[0]?.s ?? 0) };
}

export interface CheckOptions {
  maxAttempts: number;
  passDead: boolean;
  combine: boolean;
  /** The sink's rows; omit to skip I4 (a store checked without its sink, e.g. a snapshot copy). */
  sink?: readonly SinkRow[];
  /** The store's commit sequence must be at least this (I12); omit when a fault removed acknowledged commits. */
  minCommitSeq?: number;
}

export interface CheckResult {
  problems: string[];
  lost: number;
  duplicated: number;
  /** Dead nodes with a CRASHED reason that the reference expects not dead: blamed for a kill the harness made. */
  falseBlames: number[];
}

function multisetDiff(actual: readonly string[], expected: readonly string[]): { missing: string[]; extra: string[] } {
  const counts = new Map<string, number>();
  for (const e of expected) counts.set(e, (counts.get(e) ?? 0) + 1);
  const extra: string[] = [];
  for (const a of actual) {
    const n = counts.get(a) ?? 0;
    if (n === 0) extra.push(a);
    else counts.set(a, n - 1);
  }
  const missing: string[] = [];
  for (const [e, n] of counts) for (let i = 0; i < n; i++) missing.push(e);
  return { missing, extra };
}

/** Checks I1–I8 and I12 on an audit; returns every problem found (empty when the episode is sound). */
export function check(audit: Audit, expected: Expected, options: CheckOptions): CheckResult {
  const problems: string[] = [];
  let lost = 0;
  let duplicated = 0;
  const falseBlames: number[] = [];
  const say = (id: string, text: string) => {
    if (problems.length < 40) problems.push(`${id} ${text}`);
    else if (problems.length === 40) problems.push('… more problems not shown');
  };

  // I8 integrity first: the rest reads rows a damaged file might not hold.
  if (audit.integrity.length !== 1 || audit.integrity[0] !== 'ok') say('I8', `integrity: ${audit.integrity.slice(0, 5).join('; ')}`);
  if (!audit.run) {
    say('I1', `the run ${expected.runId} is missing from the store`);
    return { problems, lost: expected.nodes.size, duplicated, falseBlames };
  }

  // I1 / I2: keys and states.
  const byKey = new Map<string, AuditNode[]>();
  for (const node of audit.nodes) {
    const list = byKey.get(node.key) ?? [];
    list.push(node);
    byKey.set(node.key, list);
  }
  for (const [key, list] of byKey) {
    if (list.length > 1) {
      duplicated += list.length - 1;
      say('I2', `key ${key} has ${list.length} rows (${list.map((n) => `${n.id}:${n.state}`).join(', ')})`);
    }
    if (!expected.nodes.has(key)) {
      duplicated++;
      say('I1', `unexpected node ${key} (${list[0]?.state})`);
    }
  }
  const positions = new Set<string>();
  for (const node of audit.nodes) {
    if (node.parentId === null) continue;
    const at = `${node.parentId}/${node.ord}`;
    if (positions.has(at)) {
      duplicated++;
      say('I2', `two children of node ${node.parentId} at position ${node.ord}`);
    }
    positions.add(at);
  }
  for (const [key, want] of expected.nodes) {
    const node = byKey.get(key)?.[0];
    if (!node) {
      lost++;
      say('I1', `lost node ${key} (expected ${want.state})`);
      continue;
    }
    if (node.state === want.state) {
      if (want.state === 'dead') {
        if (want.codes && !want.codes.includes(node.lastCode ?? 'null')) say('I7', `dead node ${key} has reason ${node.lastCode}, expected ${want.codes.join(' or ')}`);
        if (want.attempts === 'zero' && node.attempts !== 0) say('I7', `node ${key} dead at spawn has ${node.attempts} attempts, expected 0`);
        if (want.attempts === 'max' && node.attempts !== options.maxAttempts) say('I7', `poison node ${key} has ${node.attempts} attempts, expected ${options.maxAttempts}`);
        if (want.attempts === 'some' && (node.attempts < 1 || node.attempts > options.maxAttempts)) say('I7', `node ${key} has ${node.attempts} attempts`);
        if (node.errors === 0) say('I7', `dead node ${key} has no error history`);
      }
      if (want.state === 'done' && want.result !== undefined && expected.nodes.size < 50_000) {
        const got = node.result === null ? null : Number(JSON.parse(node.result));
        if (got !== want.result) say('I3', `node ${key} result ${node.result}, expected ${want.result}`);
      }
      continue;
    }
    if (node.state === 'dead' && node.lastCode === 'CRASHED' && want.state !== 'dead') {
      falseBlames.push(node.id);
      continue;
    }
    if (want.state === 'waiting' && node.state === 'waiting') continue;
    if (node.state === 'pending' || node.state === 'running') lost++;
    say('I1', `node ${key} is ${node.state}${node.lastCode ? ` (${node.lastCode})` : ''}, expected ${want.state}`);
  }

  // I3: the run and its records.
  const wantState = expected.runState;
  if (falseBlames.length === 0) {
    if (audit.run.state !== wantState) say('I3', `run is ${audit.run.state}, expected ${wantState}`);
    const root = audit.run.result === null ? null : Number(JSON.parse(audit.run.result));
    if (wantState === 'completed' && root !== expected.rootResult) say('I3', `root result ${audit.run.result}, expected ${expected.rootResult}`);
    const records = multisetDiff(audit.emits, expected.emits);
    if (records.missing.length > 0) {
      lost += records.missing.length;
      say('I3', `${records.missing.length} emitted records missing (e.g. ${records.missing.slice(0, 3).join(' ')})`);
    }
    if (records.extra.length > 0) {
      duplicated += records.extra.length;
      say('I3', `${records.extra.length} emitted records extra or doubled (e.g. ${records.extra.slice(0, 3).join(' ')})`);
    }
  }

  // I4: effects.
  const journal = new Map<string, string>();
  for (const e of audit.effects) {
    const idem = `${expected.runId}:${e.nodeKey}:${e.name}`;
    if (journal.has(idem)) {
      duplicated++;
      say('I4', `effect ${idem} journaled twice`);
    }
    journal.set(idem, e.value);
  }
  if (options.sink) {
    const seen = new Set<string>();
    const logical = new Map<string, number>();
    for (const row of options.sink) {
      if (!row.idemKey.startsWith(`${expected.runId}:`)) continue;
      seen.add(row.idemKey);
      logical.set(`${row.node}/${row.name}`, (logical.get(`${row.node}/${row.name}`) ?? 0) + 1);
      const want = expected.effects.get(row.idemKey);
      if (!want && expected.optionalEffects.has(row.idemKey)) continue;
      if (!want) {
        duplicated++;
        say('I4', `the sink applied an unexpected effect ${row.idemKey}`);
        continue;
      }
      const value = JSON.parse(row.value) as { h: number };
      if (value.h !== want.h) say('I4', `effect ${row.idemKey}: sink value ${row.value}, expected h=${want.h}`);
      const journaled = journal.get(row.idemKey);
      if (journaled !== undefined && JSON.stringify(JSON.parse(journaled)) !== JSON.stringify(value)) {
        say('I4', `effect ${row.idemKey}: journal ${journaled} differs from the sink's first value ${row.value}`);
      }
    }
    for (const [name, n] of logical) {
      if (n > 1) {
        duplicated += n - 1;
        say('I4', `effect ${name} applied ${n} times under different idempotency keys`);
      }
    }
    for (const idem of expected.effects.keys()) {
      if (!seen.has(idem)) {
        lost++;
        say('I4', `effect ${idem} never applied`);
      } else if (!journal.has(idem)) {
        lost++;
        say('I4', `effect ${idem} applied but not journaled`);
      }
    }
  }

  // I5: no lease left behind.
  for (const node of audit.nodes) {
    if (node.state === 'running') say('I5', `node ${node.key} is still running (owner ${node.owner}) after the run ended`);
    else if (node.owner !== null && node.state !== 'pending') say('I5', `${node.state} node ${node.key} still names owner ${node.owner}`);
  }

  // I6: counters against recounts.
  const recount: Record<string, number> = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const node of audit.nodes) recount[node.state] = (recount[node.state] ?? 0) + 1;
  for (const s of STATES) {
    if (audit.run.counts[s] !== recount[s]) say('I6', `run counter n_${s} = ${audit.run.counts[s]}, recount ${recount[s]}`);
  }
  if (audit.run.nodeCount !== audit.nodes.length) say('I6', `run node_count = ${audit.run.nodeCount}, rows ${audit.nodes.length}`);
  if (options.combine) {
    const byId = new Map(audit.nodes.map((n) => [n.id, n]));
    const unfinished = new Map<number, number>();
    const count = (parentId: number, childId: number) => {
      const child = byId.get(childId);
      if (!child) return;
      if (child.state === 'done' || (child.state === 'dead' && options.passDead)) return;
      unfinished.set(parentId, (unfinished.get(parentId) ?? 0) + 1);
    };
    for (const node of audit.nodes) if (node.parentId !== null) count(node.parentId, node.id);
    for (const edge of audit.edges) count(edge.parentId, edge.childId);
    for (const node of audit.nodes) {
      if (node.state !== 'waiting' && node.state !== 'done') continue;
      const want = node.state === 'done' ? 0 : (unfinished.get(node.id) ?? 0);
      if (node.pendingChildren !== want) say('I6', `${node.state} node ${node.key} counts ${node.pendingChildren} unfinished children, recount ${want}`);
    }
  }

  // I12: every acknowledged commit is in the store.
  if (options.minCommitSeq !== undefined && audit.commitSeq < options.minCommitSeq) {
    lost++;
    say('I12', `store commit_seq ${audit.commitSeq} is below the ${options.minCommitSeq} commits workers acknowledged`);
  }
  return { problems, lost, duplicated, falseBlames };
}
