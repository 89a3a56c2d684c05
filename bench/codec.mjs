#!/usr/bin/env node
/**
 * The two codecs side by side (`node bench/codec.mjs [--quick]`, and the `codec` section of `npm run bench`):
 * the same workload through `rlm run` on a fresh SQLite store, once on the JSON codec (the default) and once on
 * msgpack, one run each. Measured: wall time from spawn to exit, the run's own time (created → finished, from the
 * store, so without process start-up), the store file's size after a WAL checkpoint, and the bytes of payloads
 * in it (inputs, contexts, results, emitted records, effect values).
 *
 * Workloads: the tree (examples/tree.ts, fanout 10, depth 5: 111,111 nodes) and dir-hash (examples/dir-hash.ts)
 * over a generated directory tree (1,111 directories of 20 small files each: 23,331 nodes).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { lastWords, measure, RLM_BIN } from './lib/proc.mjs';
import { treeSize } from './lib/tree.mjs';

const SUMMARY = /: completed; (\d+) done, (\d+) dead/;
const n = (value) => Math.round(value).toLocaleString('en-US');
const mb = (bytes) => (bytes / 2 ** 20).toFixed(1);

/** A directory tree of `fanout` subdirectories per level down to `depth`, each directory with `files` files. */
function makeDirTree(root, { fanout, depth, files }) {
  let count = 0;
  const fill = (dir, level) => {
    mkdirSync(dir, { recursive: true });
    count++;
    for (let f = 0; f < files; f++) {
      // 64–319 bytes of deterministic content per file.
      const seed = createHash('sha256').update(`${dir}/${f}`).digest();
      writeFileSync(join(dir, `file-${f}.txt`), Buffer.concat(Array.from({ length: 2 + (seed[0] % 8) }, () => seed)));
      count++;
    }
    if (level < depth) for (let d = 0; d < fanout; d++) fill(join(dir, `dir-${d}`), level + 1);
  };
  fill(root, 0);
  return count;
}

/** Bytes of every payload the run stored, by where it is kept. */
function payloadBytes(db, runId) {
  const bytes = (sql) => Number(db.prepare(sql).get(runId).n ?? 0);
  return (
    bytes('SELECT sum(coalesce(length(CAST(input AS BLOB)), 0) + coalesce(length(CAST(context AS BLOB)), 0) + coalesce(length(CAST(result AS BLOB)), 0)) AS n FROM rlm_nodes WHERE run_id = ?') +
    bytes('SELECT sum(length(CAST(record AS BLOB))) AS n FROM rlm_emits WHERE run_id = ?') +
    bytes('SELECT sum(length(CAST(value AS BLOB))) AS n FROM rlm_effects WHERE run_id = ?')
  );
}

/** One `rlm run` of `task` on a fresh store; the row in bench/run.mjs's format, with the codec's figures. */
async function codecRun({ section, workload, codec, task, input, nodes, check, timeoutMs }) {
  const dir = mkdtempSync(join(tmpdir(), 'rlm-bench-codec-'));
  const file = join(dir, 'rlm.db');
  const system = `rlm run (SQLite), codec ${codec}`;
  try {
    const result = await measure([RLM_BIN, 'run', task, '--input', JSON.stringify(input), '--run', 'codec', '--store', `sqlite:${file}`], { timeoutMs });
    const summary = SUMMARY.exec(result.stderr);
    const printed = result.stdout.trim().split('\n').at(-1) ?? '';
    const problem =
      result.code !== 0
        ? `exit ${result.code ?? result.signal}: ${lastWords(result)}`
        : !summary || Number(summary[1]) !== nodes
          ? `${summary?.[1] ?? 'no'} nodes done, expected ${nodes}`
          : check(printed);
    if (problem) return { section, workload, system, nodes, seconds: null, rssMb: null, floor: null, status: 'failed', note: problem, codec };
    const db = new Database(file);
    let runSeconds;
    let payloads;
    try {
      db.pragma('wal_checkpoint(TRUNCATE)');
      const run = db.prepare('SELECT created_at, finished_at FROM rlm_runs WHERE id = ?').get('codec');
      runSeconds = (run.finished_at - run.created_at) / 1000;
      payloads = payloadBytes(db, 'codec');
    } finally {
      db.close();
    }
    const storeBytes = statSync(file).size;
    return {
      section,
      workload,
      system,
      nodes,
      seconds: result.seconds,
      rssMb: result.rssKb === null ? null : result.rssKb / 1024,
      floor: null,
      status: 'ok',
      note: `store ${mb(storeBytes)} MB, payloads ${mb(payloads)} MB; ${n(nodes / runSeconds)} nodes/s without start-up; result ${printed.length > 24 ? `${printed.slice(0, 24)}…` : printed}`,
      codec,
      runSeconds,
      storeBytes,
      payloadBytes: payloads,
      result: printed,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The codec rows: tree and dir-hash, JSON then msgpack. `quick` shrinks both workloads. */
export async function codecRows({ quick = false, onRow = () => undefined } = {}) {
  const rows = [];
  const add = (row) => {
    rows.push(row);
    onRow(row);
  };
  const tree = { fanout: 10, depth: quick ? 3 : 5 };
  const treeNodes = treeSize(tree.fanout, tree.depth);
  const treeSection = `codecs: JSON (default) vs msgpack, \`rlm run\` on SQLite, spawn to exit`;
  for (const [codec, task] of [
    ['json', 'examples/tree.ts'],
    ['msgpack', 'bench/tasks/tree-msgpack.ts'],
  ]) {
    add(
      await codecRun({
        section: treeSection,
        workload: `tree combine (${n(treeNodes)} nodes)`,
        codec,
        task,
        input: tree,
        nodes: treeNodes,
        check: (printed) => (printed === String(treeNodes) ? null : `printed ${printed}, expected ${treeNodes}`),
        timeoutMs: 10 * 60_000,
      }),
    );
  }
  const root = mkdtempSync(join(tmpdir(), 'rlm-bench-dirs-'));
  try {
    const dirNodes = makeDirTree(join(root, 'tree'), { fanout: 10, depth: quick ? 1 : 3, files: 20 });
    let hash = null;
    for (const [codec, task] of [
      ['json', 'examples/dir-hash.ts'],
      ['msgpack', 'bench/tasks/dir-hash-msgpack.ts'],
    ]) {
      const row = await codecRun({
        section: treeSection,
        workload: `dir-hash (${n(dirNodes)} nodes)`,
        codec,
        task,
        input: { path: join(root, 'tree') },
        nodes: dirNodes,
        // Both codecs must compute the same Merkle hash.
        check: (printed) => {
          const value = JSON.parse(printed).hash;
          hash ??= value;
          return value === hash ? null : `hash ${value} differs from the JSON run's ${hash}`;
        },
        timeoutMs: 10 * 60_000,
      });
      add(row);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return rows;
}

/** The codec rows as their own table: per workload, each codec's time and size, msgpack relative to JSON. */
export function formatCodecTable(rows) {
  const header = ['workload', 'codec', 'nodes', 'wall s', 'run s', 'nodes/s (run)', 'store MB', 'payload MB', 'vs JSON (run time, store size)'];
  const lines = rows.map((row) => {
    if (row.status !== 'ok') return [row.workload, row.codec, n(row.nodes), '', '', '', '', '', `FAILED: ${row.note}`];
    const json = rows.find((other) => other.workload === row.workload && other.codec === 'json' && other.status === 'ok');
    const relative = json && row !== json ? `${(row.runSeconds / json.runSeconds).toFixed(2)}× time, ${(row.storeBytes / json.storeBytes).toFixed(2)}× size` : '';
    return [row.workload, row.codec, n(row.nodes), row.seconds.toFixed(2), row.runSeconds.toFixed(2), n(row.nodes / row.runSeconds), mb(row.storeBytes), mb(row.payloadBytes), relative];
  });
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i].length)));
  return [header, ...lines].map((line) => line.map((cell, i) => (i >= 2 && i < 8 ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  const rows = await codecRows({
    quick,
    onRow: (row) => process.stderr.write(`  ${row.status === 'ok' ? `${row.seconds.toFixed(2)} s` : 'FAILED'}  ${row.workload} · ${row.system}\n`),
  });
  process.stdout.write(`\n${formatCodecTable(rows)}\n`);
  if (rows.some((row) => row.status !== 'ok')) process.exitCode = 1;
}
