#!/usr/bin/env node
/**
 * rlm's benchmark suite (`npm run bench`). Benchmarks, not tests: every figure is a ratio against baselines
 * measured in the same run, on the same machine. Prints a table and writes bench/results/latest.json.
 *
 * Sections (select with --only; the floors the selected rows are measured against always run):
 * - memory:   the tree as plain in-memory recursion (the upper bound), walk and combine
 * - floor:    a minimal hand-written better-sqlite3 loop doing the same durable writes (the floor)
 * - sqlite:   the whole `rlm run` command on a fresh SQLite store: walk, combine, keyed DAG, one effect per node
 * - resume:   SIGKILL `rlm run` midway, restart it with --run ID, time until the first new commit
 * - peers:    BullMQ (Redis), graphile-worker and pg-boss (PostgreSQL) on the smaller tree, rlm beside them
 * - postgres: `rlm run` on PostgreSQL with 1, 2 and 4 worker processes, and a hand-written PostgreSQL floor
 * - codec:    the JSON and msgpack codecs on the tree and dir-hash workloads: time and store size (bench/codec.mjs)
 * - dag:      a memoised DAG with sharing (examples/lattice.ts, every interior key shared by two parents) on SQLite
 *             and PostgreSQL, each beside a hand-written floor doing the same keyed writes
 * - llm:      the recursive LLM pipeline on rlm beside a plain recursive script, uninterrupted and killed at half (bench/llm.mjs)
 * - crawl:    examples/crawl.ts beside Crawlee on a 100,000-page local site, and each killed at half (bench/crawl.mjs; --only crawl or all)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { codecRows, formatCodecTable } from './codec.mjs';
import { crawlRows } from './crawl.mjs';
import { formatLlmTable, llmRows } from './llm.mjs';
import { describeServer } from './lib/pg.mjs';
import { peerRow, startDurableRedis, withDatabase } from './lib/peers.mjs';
import { ROOT, lastWords, measureScript } from './lib/proc.mjs';
import { rlmRow, resumeRow } from './lib/rlm.mjs';
import { latticeResult } from './lib/lattice.mjs';
import { computeRatios, formatTable } from './lib/table.mjs';
import { treeSize } from './lib/tree.mjs';

const SECTIONS = ['memory', 'floor', 'sqlite', 'resume', 'peers', 'postgres', 'codec', 'dag', 'llm', 'crawl'];
const ALIASES = { pg: 'postgres', rlm: 'sqlite', baselines: 'memory,floor', all: SECTIONS.join(',') };
const HELP = `Usage: node bench/run.mjs [--only SECTIONS] [--quick]

  --only a,b   run only these sections: ${SECTIONS.join(', ')} (alias pg = postgres);
               the floor rows the selected sections are measured against always run
  --quick      smaller trees (10^4 nodes main, 10^3 peers and effects) for a fast check
  --help       this text

Environment: RLM_BENCH_PG (admin URL, default postgres://postgres@127.0.0.1:5432/test),
             RLM_BENCH_REDIS (default redis://127.0.0.1:6379).
Exit code 1 when an rlm row printed a wrong result; peers and PostgreSQL rows that cannot run only say so.`;

function parseFlags(argv) {
  // crawl runs only when asked for: Crawlee alone takes about 20 minutes on its 100,000 pages.
  const flags = { only: new Set(SECTIONS.filter((name) => name !== 'crawl')), quick: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${HELP}\n`);
      process.exit(0);
    } else if (arg === '--quick') {
      flags.quick = true;
    } else if (arg === '--only' || arg.startsWith('--only=')) {
      const value = arg.includes('=') ? arg.slice('--only='.length) : argv[++i];
      if (!value) usage('--only needs a list of sections');
      const names = value.split(',').flatMap((name) => (ALIASES[name.trim()] ?? name.trim()).split(','));
      for (const name of names) if (!SECTIONS.includes(name)) usage(`unknown section \`${name}\``);
      flags.only = new Set(names);
    } else {
      usage(`unknown argument \`${arg}\``);
    }
  }
  return flags;
}

function usage(message) {
  process.stderr.write(`bench: ${message}\n\n${HELP}\n`);
  process.exit(2);
}

const flags = parseFlags(process.argv.slice(2));
const FANOUT = 10;
/** Tree depths: main = the reference workload, peers = the peer comparison, effect = one effect per node. */
const DEPTH = flags.quick ? { main: 4, peers: 3, effect: 3 } : { main: 6, peers: 5, effect: 4 };
const MAIN = treeSize(FANOUT, DEPTH.main);
const PEERS = treeSize(FANOUT, DEPTH.peers);
const EFFECT = treeSize(FANOUT, DEPTH.effect);
/** Lattice sides of the dag section: side × side nodes. */
const LATTICE = flags.quick ? { sqlite: 100, postgres: 50 } : { sqlite: 1000, postgres: 200 };
const MINUTE = 60_000;
const REDIS = new URL(process.env.RLM_BENCH_REDIS ?? 'redis://127.0.0.1:6379');
const has = (section) => flags.only.has(section);
const n = (value) => value.toLocaleString('en-US');

/** @type {import('./lib/table.mjs').Row[]} */
const rows = [];
function add(row) {
  rows.push(row);
  const figure = row.status === 'ok' ? `${row.seconds.toFixed(2)} s` : row.status.toUpperCase();
  process.stderr.write(`  ${figure.padStart(10)}  ${row.workload} · ${row.system}${row.status === 'ok' ? '' : ` — ${row.note}`}\n`);
  return row;
}
const heading = (text) => process.stderr.write(`bench: ${text}\n`);

// ---------------------------------------------------------------- baselines

async function memoryRow(shape, depth) {
  const nodes = treeSize(FANOUT, depth);
  const result = await measureScript('bench/baselines/memory.mjs', { shape, fanout: FANOUT, depth }, { timeoutMs: 5 * MINUTE });
  const section = `baselines (${n(nodes)}-node tree)`;
  const workload = shape === 'walk' ? 'tree walk' : 'tree combine';
  const out = result.outcome;
  if (!out || out.nodes !== nodes || out.result !== nodes) {
    return add({ section, workload, system: 'in-memory recursion', nodes, seconds: null, rssMb: null, floor: null, status: 'failed', note: out ? `result ${out.result}` : lastWords(result) });
  }
  return add({ section, workload, system: 'in-memory recursion', nodes, seconds: out.seconds, rssMb: result.rssKb / 1024, floor: { shape, nodes }, status: 'ok', note: 'upper bound: nothing durable' });
}

/** The SQLite floor for one shape and tree depth; rows measured against it name { shape, nodes }. */
async function floorRow(shape, depth) {
  const nodes = treeSize(FANOUT, depth);
  const dir = mkdtempSync(join(tmpdir(), 'rlm-bench-floor-'));
  const file = join(dir, 'floor.db');
  const workload = { walk: 'tree walk', combine: 'tree combine', effect: 'tree walk + effect' }[shape];
  const section = `baselines (${n(nodes)}-node tree)`;
  const system = 'floor: better-sqlite3 loop';
  try {
    const result = await measureScript('bench/baselines/sqlite-floor.mjs', { shape, fanout: FANOUT, depth, file }, { timeoutMs: 10 * MINUTE });
    const out = result.outcome;
    if (!out || out.nodes !== nodes || out.result !== nodes) {
      return add({ section, workload, system, nodes, seconds: null, rssMb: null, floor: null, status: 'failed', note: out ? `result ${out.result}, expected ${nodes}` : lastWords(result) });
    }
    const what = { walk: '1 INSERT/child + 1 UPDATE/node', combine: '+ parent decrement per child, combined result per parent', effect: '+ 1 journal row/node, its own commit' };
    return add({ section, workload, system, nodes, seconds: out.seconds, rssMb: result.rssKb / 1024, floor: { shape, nodes }, isFloor: { shape, nodes }, status: 'ok', note: `${what[shape]}; 1000 nodes/txn, WAL, synchronous=FULL` });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- rlm on SQLite

function sqliteRows() {
  const section = `rlm on SQLite: the whole \`rlm run\` command, spawn to exit (${n(MAIN)}-node tree)`;
  const common = { section, system: 'rlm run (SQLite)', fanout: FANOUT, timeoutMs: 10 * MINUTE };
  return [
    async () => ({
      ...(await rlmRow({ ...common, workload: 'one node (start-up cost)', task: 'examples/tree.ts', depth: 0, floor: null, expectResult: true })),
      noRate: true,
      note: 'wall time of `rlm run` on a one-node tree: node, tsx, the store; included in every rlm row',
    }),
    () => rlmRow({ ...common, workload: 'tree walk', task: 'bench/tasks/tree-walk.ts', depth: DEPTH.main, floor: { shape: 'walk', nodes: MAIN } }),
    () =>
      rlmRow({
        ...common,
        workload: 'tree walk, one group limit',
        task: 'bench/tasks/tree-walk-grouped.ts',
        depth: DEPTH.main,
        floor: { shape: 'walk', nodes: MAIN },
        note: 'every node in one group, limit never binds: the cost of the gate (compare with tree walk)',
      }),
    () =>
      rlmRow({
        ...common,
        workload: 'tree walk, store on the main thread',
        task: 'bench/tasks/tree-walk.ts',
        depth: DEPTH.main,
        floor: { shape: 'walk', nodes: MAIN },
        env: { RLM_SQLITE_THREAD: '0' },
        note: 'RLM_SQLITE_THREAD=0: SQLite between the steps, not beside them',
      }),
    () => rlmRow({ ...common, workload: 'tree combine', task: 'examples/tree.ts', depth: DEPTH.main, floor: { shape: 'combine', nodes: MAIN }, expectResult: true }),
    () =>
      rlmRow({
        ...common,
        workload: 'tree keyed (memoised DAG) + combine',
        task: 'bench/tasks/tree-keyed.ts',
        depth: DEPTH.main,
        floor: { shape: 'combine', nodes: MAIN },
        expectResult: true,
        note: 'key = path; vs the combine floor',
      }),
    () =>
      rlmRow({
        ...common,
        section: `rlm on SQLite: one ctx.effect per node (${n(EFFECT)}-node tree)`,
        workload: 'tree walk + effect',
        task: 'bench/tasks/tree-effect.ts',
        depth: DEPTH.effect,
        floor: { shape: 'effect', nodes: EFFECT },
      }),
  ];
}

// ---------------------------------------------------------------- peers and PostgreSQL

const PEER_SECTION = `durable recursion on queues and PostgreSQL (${n(PEERS)}-node tree, walk: each job spawns its children)`;
const PEER_FLOOR = { shape: 'walk', nodes: PEERS };

/** A peer too slow for the time budget stops here and reports the rate of the jobs it completed. */
const PEER_DEADLINE_SECONDS = flags.quick ? 60 : 300;

async function peerRows() {
  const common = { section: PEER_SECTION, fanout: FANOUT, depth: DEPTH.peers, floor: PEER_FLOOR, timeoutMs: PEER_DEADLINE_SECONDS * 1000 + 2 * MINUTE };
  const deadlineSeconds = PEER_DEADLINE_SECONDS;
  add(
    await rlmRow({
      ...common,
      workload: 'tree walk',
      system: 'rlm run (SQLite)',
      task: 'bench/tasks/tree-walk.ts',
      note: 'for comparison',
    }),
  );
  const redis = await describeRedis(REDIS);
  const bullmq = `BullMQ (Redis :${REDIS.port || 6379})`;
  add(
    redis.error
      ? { ...common, workload: 'tree walk', system: bullmq, nodes: PEERS, seconds: null, rssMb: null, status: 'error', note: `error: ${redis.error}` }
      : await peerRow({
          ...common,
          system: bullmq,
          script: 'bench/peers/bullmq.mjs',
          options: { host: REDIS.hostname, port: Number(REDIS.port || 6379), concurrency: 32, deadlineSeconds },
          note: redis.note,
        }),
  );
  const durable = await startDurableRedis();
  if (durable) {
    try {
      add(
        await peerRow({
          ...common,
          system: 'BullMQ (private Redis, AOF)',
          script: 'bench/peers/bullmq.mjs',
          options: { host: '127.0.0.1', port: durable.port, concurrency: 32, deadlineSeconds },
          note: 'appendfsync always (durable)',
        }),
      );
    } finally {
      durable.stop();
    }
  }
  const pgPeers = [
    { system: 'graphile-worker 0.16 (PostgreSQL)', script: 'bench/peers/graphile-worker.mjs', options: { concurrency: 32, deadlineSeconds }, db: 'rlm_bench_graphile_worker' },
    // pg-boss, the faster of the two, also with as many processes as the rlm rows with --workers.
    ...[1, 2, 4].map((processes) => ({
      system: processes === 1 ? 'pg-boss 10 (PostgreSQL)' : `pg-boss 10, ${processes} processes (PostgreSQL)`,
      script: 'bench/peers/pg-boss.mjs',
      options: { workers: 2, batchSize: 500, deadlineSeconds, processes },
      db: 'rlm_bench_pgboss',
    })),
  ];
  for (const peer of pgPeers) {
    const row = await withDatabase(peer.db, (connectionString) => peerRow({ ...common, system: peer.system, script: peer.script, options: { ...peer.options, connectionString } }));
    add(row.unavailable ? { ...common, workload: 'tree walk', system: peer.system, nodes: PEERS, seconds: null, rssMb: null, status: 'error', note: `error: ${row.unavailable}` } : row);
  }
}

async function postgresRows() {
  const common = { section: PEER_SECTION, fanout: FANOUT, depth: DEPTH.peers, floor: PEER_FLOOR, timeoutMs: 6 * MINUTE };
  const floor = await withDatabase('rlm_bench_pg_floor', (connectionString) =>
    peerRow({ ...common, system: 'floor: hand-written pg loop', script: 'bench/baselines/pg-floor.mjs', options: { connectionString } }),
  );
  add(
    floor.unavailable
      ? { ...common, workload: 'tree walk', system: 'floor: hand-written pg loop', nodes: PEERS, seconds: null, rssMb: null, status: 'error', note: `error: ${floor.unavailable}` }
      : { ...floor, note: '1000 nodes/txn; inserts and updates as one unnest statement each; for context' },
  );
  for (const workers of [1, 2, 4]) {
    const system = workers === 1 ? 'rlm run (PostgreSQL)' : `rlm run --workers ${workers} (PostgreSQL)`;
    const row = await withDatabase(`rlm_bench_rlm_${workers}`, (store) =>
      rlmRow({
        ...common,
        workload: 'tree walk',
        system,
        task: 'bench/tasks/tree-walk.ts',
        store,
        workers,
        onFailure: (result) => (result.code === 0 ? 'failed' : 'unavailable'),
        note: workers === 1 ? 'one process' : `${workers} worker processes under one supervisor`,
      }),
    );
    add(row.unavailable ? { ...common, workload: 'tree walk', system, nodes: PEERS, seconds: null, rssMb: null, status: 'unavailable', note: `unavailable: ${row.unavailable}` } : row);
  }
}

/** Redis's persistence settings, or { error } when it cannot be reached (one attempt, no reconnecting). */
async function describeRedis(url) {
  const { Redis } = await import('ioredis');
  const client = new Redis({ host: url.hostname, port: Number(url.port || 6379), lazyConnect: true, connectTimeout: 3_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    const [, appendonly] = await client.config('GET', 'appendonly');
    const [, save] = await client.config('GET', 'save');
    return { note: appendonly === 'yes' ? 'appendonly yes' : `appendonly no, save '${save}'${save ? '' : ': not durable'}` };
  } catch (error) {
    return { error: `Redis at ${url.host} unreachable: ${error.message}` };
  } finally {
    client.disconnect();
  }
}

// ---------------------------------------------------------------- memoised DAG

/** A DAG floor row (SQLite or PostgreSQL) for a side × side lattice; its result and stored count are checked. */
async function dagFloorRow({ section, system, shape, script, side, options, note }) {
  const nodes = side * side;
  const floor = { shape, nodes };
  const base = { section, workload: 'lattice DAG + combine', system, nodes, floor, isFloor: floor };
  const result = await measureScript(script, { n: side, m: side, ...options }, { timeoutMs: 15 * MINUTE });
  const out = result.outcome;
  const want = latticeResult(side, side);
  if (!out || out.nodes !== nodes || out.stored !== nodes || out.result !== want) {
    return add({ ...base, seconds: null, rssMb: null, status: 'failed', note: out ? `result ${out.result} (${out.stored} stored), expected ${want}` : lastWords(result) });
  }
  return add({ ...base, seconds: out.seconds, rssMb: result.rssKb / 1024, status: 'ok', note });
}

async function dagRows() {
  const side = LATTICE.sqlite;
  const nodes = side * side;
  const section = `memoised DAG: a ${side} × ${side} lattice, node (i, j) → (i + 1, j), (i, j + 1), combine = paths mod 1,000,003 (${n(nodes)} keys)`;
  const dir = mkdtempSync(join(tmpdir(), 'rlm-bench-dag-'));
  try {
    await dagFloorRow({
      section,
      system: 'floor: better-sqlite3 loop',
      shape: 'dag-sqlite',
      script: 'bench/baselines/dag-floor.mjs',
      side,
      options: { file: join(dir, 'floor.db') },
      note: 'keyed INSERT … ON CONFLICT per child, edge per shared child, waiting + done per node, decrement per parent; 1000 nodes/txn, synchronous=FULL',
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const lattice = { task: 'examples/lattice.ts', input: { n: side, m: side }, nodes, result: String(latticeResult(side, side)), expectResult: true };
  add(await rlmRow({ section, workload: 'lattice DAG + combine', system: 'rlm run (SQLite)', ...lattice, floor: { shape: 'dag-sqlite', nodes }, timeoutMs: 15 * MINUTE }));

  const pgSide = LATTICE.postgres;
  const pgNodes = pgSide * pgSide;
  const pgSection = `memoised DAG on PostgreSQL: a ${pgSide} × ${pgSide} lattice (${n(pgNodes)} keys)`;
  const pgFloor = await withDatabase('rlm_bench_pg_dag_floor', (connectionString) =>
    dagFloorRow({
      section: pgSection,
      system: 'floor: hand-written pg loop',
      shape: 'dag-pg',
      script: 'bench/baselines/pg-dag-floor.mjs',
      side: pgSide,
      options: { connectionString },
      note: 'the same writes as the SQLite floor (new keys only inserted), as unnest statements; 1000 nodes/txn',
    }),
  );
  if (pgFloor.unavailable) add({ section: pgSection, workload: 'lattice DAG + combine', system: 'floor: hand-written pg loop', nodes: pgNodes, seconds: null, rssMb: null, floor: null, status: 'error', note: pgFloor.unavailable });
  const pgLattice = { task: 'examples/lattice.ts', input: { n: pgSide, m: pgSide }, nodes: pgNodes, result: String(latticeResult(pgSide, pgSide)), expectResult: true };
  const row = await withDatabase('rlm_bench_rlm_dag', (store) =>
    rlmRow({ section: pgSection, workload: 'lattice DAG + combine', system: 'rlm run (PostgreSQL)', ...pgLattice, store, floor: { shape: 'dag-pg', nodes: pgNodes }, timeoutMs: 15 * MINUTE, onFailure: (result) => (result.code === 0 ? 'failed' : 'unavailable') }),
  );
  add(row.unavailable ? { section: pgSection, workload: 'lattice DAG + combine', system: 'rlm run (PostgreSQL)', nodes: pgNodes, seconds: null, rssMb: null, floor: null, status: 'unavailable', note: row.unavailable } : row);
}

// ---------------------------------------------------------------- environment

/** The commit measured, and whether src/ had uncommitted changes (dist/ is built from the working tree). */
function gitDescribe() {
  try {
    const git = (...args) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = git('status', '--porcelain', '--', 'src') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted src/ changes' : ''}`;
  } catch {
    return 'unknown';
  }
}

async function environment() {
  const env = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    sqlite: new Database(':memory:').prepare('SELECT sqlite_version() AS v').get().v,
    rlm: gitDescribe(),
    loadAtStart: loadavg()[0],
    trees: { fanout: FANOUT, main: MAIN, peers: PEERS, effect: EFFECT },
  };
  if (has('peers') || has('postgres')) {
    try {
      const server = await describeServer();
      env.postgres = `${server.version} (synchronous_commit=${server.synchronous_commit}, fsync=${server.fsync})`;
    } catch (error) {
      env.postgres = `unreachable: ${error.message}`;
    }
  }
  return env;
}

/** Baseline sections first, then the rest; rows keep their order within a section. */
function printOrder(list) {
  const first = new Map();
  list.forEach((row, i) => {
    if (!first.has(row.section)) first.set(row.section, i);
  });
  const rank = (row) => (row.section.startsWith('baselines') ? 0 : 1) * list.length + first.get(row.section);
  return list.map((row, i) => ({ row, i })).sort((a, b) => rank(a.row) - rank(b.row) || a.i - b.i).map(({ row }) => row);
}

// ---------------------------------------------------------------- main

const started = performance.now();
const env = await environment();
heading(`${flags.quick ? 'quick' : 'full'} run of ${[...flags.only].join(', ')} on ${env.cpus}, node ${env.node}`);
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });

// Each floor runs just before the rlm rows measured against it, so both see the machine in the same state;
// the table still prints the baselines first.
if (has('memory') || has('sqlite')) {
  heading('in-memory upper bound');
  await memoryRow('walk', DEPTH.main);
  await memoryRow('combine', DEPTH.main);
}
const [startup, walk, walkMain, combine, keyed, effect] = has('sqlite') ? sqliteRows() : [];
if (has('floor') || has('sqlite')) {
  heading(has('sqlite') ? 'floors, each followed by the rlm rows measured against it' : 'floors');
  await floorRow('walk', DEPTH.main);
  if (startup) add(await startup());
  if (walk) add(await walk());
  if (walkMain) add(await walkMain());
  await floorRow('combine', DEPTH.main);
  if (combine) add(await combine());
  if (keyed) add(await keyed());
  await floorRow('effect', DEPTH.effect);
  if (effect) add(await effect());
}
if (has('resume')) {
  heading('resume latency');
  add(await resumeRow({ section: `resume (${n(MAIN)}-node tree with combine)`, task: 'examples/tree.ts', fanout: FANOUT, depth: DEPTH.main, timeoutMs: 10 * MINUTE }));
}
if (has('peers') || has('postgres')) await floorRow('walk', DEPTH.peers);
if (has('peers')) {
  heading('peers');
  await peerRows();
}
if (has('postgres')) {
  heading('rlm on PostgreSQL');
  await postgresRows();
}
if (has('dag')) {
  heading('memoised DAG');
  await dagRows();
}
const codecs = [];
if (has('codec')) {
  heading('codecs');
  codecs.push(...(await codecRows({ quick: flags.quick, onRow: add })));
}
const llm = [];
if (has('llm')) {
  heading('recursive LLM pipeline');
  llm.push(...(await llmRows({ quick: flags.quick, onRow: add })));
}
if (has('crawl')) {
  heading('crawl beside Crawlee');
  await crawlRows({ quick: flags.quick, onRow: add });
}

env.loadAtEnd = loadavg()[0];
computeRatios(rows);
const table = formatTable(printOrder(rows));
const seconds = (performance.now() - started) / 1000;
process.stdout.write(`\n${table}\n\n`);
if (codecs.length > 0) process.stdout.write(`${formatCodecTable(codecs)}\n\n`);
if (llm.length > 0) process.stdout.write(`${formatLlmTable(llm)}\n\n`);
process.stdout.write(
  `rlm ${env.rlm}; ${env.cpus}, ${env.memoryGiB} GiB, node ${env.node}, SQLite ${env.sqlite}${env.postgres ? `, PostgreSQL ${env.postgres}` : ''}; ` +
    `suite took ${seconds.toFixed(0)} s; ` +
    `1-minute load average ${env.loadAtStart.toFixed(1)} at the start, ${env.loadAtEnd.toFixed(1)} at the end (other work on the machine skews every row).\n` +
    `× floor = nodes/s over the floor's nodes/s for the same shape and tree size.\n`,
);
const resultsFile = join(ROOT, 'bench', 'results', 'latest.json');
writeFileSync(resultsFile, `${JSON.stringify({ env, flags: { only: [...flags.only], quick: flags.quick }, seconds, rows }, null, 2)}\n`);
process.stdout.write(`wrote ${resultsFile}\n`);

const failed = rows.filter((row) => row.status === 'failed');
if (failed.length > 0) {
  process.stderr.write(`\nBENCH FAILED: ${failed.length} row(s) did not produce the expected result:\n`);
  for (const row of failed) process.stderr.write(`  ${row.workload} · ${row.system}: ${row.note}\n`);
  process.exitCode = 1;
}
