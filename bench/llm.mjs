#!/usr/bin/env node
/**
 * The recursive LLM pipeline (examples/llm) on rlm beside the same pipeline as a plain recursive script
 * (baselines/llm-plain.ts), both against the local model server (examples/llm/server.ts, a fixed latency per
 * call, run as its own process) with the same number of calls in flight (`node bench/llm.mjs [--quick]`, and the
 * `llm` section of `npm run bench`; alone, `--docs N` and `--latency-ms N` change the corpus and the model's pace):
 * - uninterrupted: wall time from spawn to exit, model calls, tokens the server billed;
 * - SIGKILL once the server has received half the uninterrupted run's calls, then the same command again (rlm
 *   resumes with --run ID; the script can only start over): calls made again, tokens billed in all, wall time of
 *   both processes, and the answer, which must equal the uninterrupted one.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { killGroup, lastWords, measure, RLM_BIN, ROOT } from './lib/proc.mjs';

const n = (value) => Math.round(value).toLocaleString('en-US');
const CONCURRENCY = 8;

/** The model server as a child process; resolves once it prints its URL. `calls` tells of each call it receives. */
async function startServer({ latencyMs, contextTokens }) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'examples/llm/server.ts'), '--port', '0', '--latency-ms', String(latencyMs), '--context-tokens', String(contextTokens), '--log-calls'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const calls = new EventEmitter();
  const url = await new Promise((resolve, reject) => {
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const call = /^call (\d+) /.exec(line);
        if (call) calls.emit('call', Number(call[1]));
        const listening = /listening on (\S+)/.exec(line);
        if (listening) resolve(listening[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`the model server exited (${code}) before listening`)));
  });
  return {
    url,
    calls,
    async stats() {
      const res = await fetch(new URL('/stats', url));
      return res.json();
    },
    stop: () => child.kill('SIGTERM'),
  };
}

/** Runs `args` (rlm or the script) once, or SIGKILLs it as the server receives call number `killAt` and runs `again`. */
async function scenario({ server, args, again, killAt, parse }) {
  const env = { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'bench', OPENAI_MODEL: 'extractive' };
  let exited = false;
  let killedAt = null;
  const first = await measure(args, {
    env,
    timeoutMs: 10 * 60_000,
    onSpawn(child) {
      child.once('exit', () => {
        exited = true;
      });
      if (killAt === undefined) return;
      const onCall = (count) => {
        if (count < killAt || exited) return;
        killedAt = count;
        killGroup(child.pid, 'SIGKILL');
        server.calls.off('call', onCall);
      };
      server.calls.on('call', onCall);
    },
  });
  if (killAt === undefined) return { runs: [first], answer: parse(first), killedAt };
  if (first.signal !== 'SIGKILL') return { runs: [first], answer: null, killedAt, problem: `it ended before the kill: ${lastWords(first)}` };
  const second = await measure(again, { env, timeoutMs: 10 * 60_000 });
  return { runs: [first, second], answer: parse(second), killedAt };
}

function parseAnswer(result) {
  if (result.code !== 0) return null;
  try {
    return JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '');
  } catch {
    return null;
  }
}

/** The llm rows: rlm and the plain script, uninterrupted and killed at half. `quick` shrinks the corpus. */
export async function llmRows({ quick = false, onRow = () => undefined, docs = quick ? 60 : 400, latencyMs = quick ? 20 : 100 } = {}) {
  const contextTokens = 1024;
  const input = { question: 'Who rebuilt the bridge at Brarmere?', corpus: { docs, seed: 1 }, contextTokens };
  const section = `recursive LLM pipeline (examples/llm): ${n(docs)} documents, local model at ${latencyMs} ms a call, ${CONCURRENCY} calls in flight`;
  const rows = [];
  const dir = mkdtempSync(join(tmpdir(), 'rlm-bench-llm-'));
  const rlm = (runId) => [RLM_BIN, 'run', 'examples/llm/task.ts', '--input', JSON.stringify(input), '--run', runId, '--store', `sqlite:${join(dir, `${runId}.db`)}`, '--concurrency', String(CONCURRENCY)];
  const resume = (runId) => [RLM_BIN, 'run', 'examples/llm/task.ts', '--run', runId, '--store', `sqlite:${join(dir, `${runId}.db`)}`, '--concurrency', String(CONCURRENCY)];
  const plain = ['--import', 'tsx', join(ROOT, 'bench/baselines/llm-plain.ts'), JSON.stringify({ input, concurrency: CONCURRENCY })];
  let reference = null;
  const cases = [
    { workload: 'uninterrupted', system: 'rlm run (SQLite)', args: rlm('whole') },
    { workload: 'uninterrupted', system: 'plain recursive script', args: plain },
    { workload: 'SIGKILL at half, then again', system: 'rlm run, resumed with --run ID', args: rlm('killed'), again: resume('killed'), killed: true },
    { workload: 'SIGKILL at half, then again', system: 'plain recursive script, restarted', args: plain, again: plain, killed: true },
  ];
  try {
    for (const spec of cases) {
      const server = await startServer({ latencyMs, contextTokens });
      try {
        const killAt = spec.killed && reference ? Math.ceil(reference.calls / 2) : undefined;
        const outcome = await scenario({ server, args: spec.args, again: spec.again, killAt, parse: parseAnswer });
        const stats = await server.stats();
        const seconds = outcome.runs.reduce((sum, run) => sum + run.seconds, 0);
        const repeated = Object.values(stats.byHash).reduce((sum, count) => sum + count - 1, 0);
        const base = { section, workload: spec.workload, system: spec.system, nodes: null, noRate: true, rssMb: null, floor: null };
        const problem =
          outcome.problem ??
          (outcome.answer === null
            ? `exit ${outcome.runs.at(-1).code ?? outcome.runs.at(-1).signal}: ${lastWords(outcome.runs.at(-1))}`
            : reference && outcome.answer.answer !== reference.answer
              ? `answer ${JSON.stringify(outcome.answer.answer)} differs from the uninterrupted ${JSON.stringify(reference.answer)}`
              : null);
        if (problem) {
          const row = { ...base, seconds: null, status: 'failed', note: problem };
          rows.push(row);
          onRow(row);
          continue;
        }
        reference ??= outcome.answer;
        const tokens = stats.promptTokens + stats.completionTokens;
        const row = {
          ...base,
          seconds,
          rssMb: Math.max(...outcome.runs.map((run) => (run.rssKb ?? 0) / 1024)),
          status: 'ok',
          note: `${n(stats.calls)} model calls, ${n(repeated)} repeated, ${n(tokens)} tokens${outcome.killedAt === null ? '' : `; killed at call ${outcome.killedAt}, then ${outcome.runs[1].seconds.toFixed(2)} s to finish`}`,
          calls: stats.calls,
          repeated,
          tokens,
          killedAt: outcome.killedAt,
          resumeSeconds: outcome.runs[1]?.seconds ?? null,
          answer: outcome.answer.answer,
        };
        rows.push(row);
        onRow(row);
      } finally {
        server.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** The llm rows as their own table. */
export function formatLlmTable(rows) {
  const header = ['case', 'system', 'wall s', 'model calls', 'repeated', 'tokens billed', 'killed at call', 'after the kill s'];
  const lines = rows.map((row) =>
    row.status !== 'ok'
      ? [row.workload, row.system, '', '', '', '', '', `FAILED: ${row.note}`]
      : [row.workload, row.system, row.seconds.toFixed(2), n(row.calls), n(row.repeated), n(row.tokens), row.killedAt === null ? '' : n(row.killedAt), row.resumeSeconds === null ? '' : row.resumeSeconds.toFixed(2)],
  );
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i].length)));
  return [header, ...lines].map((line) => line.map((cell, i) => (i >= 2 ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, docs: { type: 'string' }, 'latency-ms': { type: 'string' } } });
  const rows = await llmRows({
    quick: values.quick,
    ...(values.docs ? { docs: Number(values.docs) } : {}),
    ...(values['latency-ms'] ? { latencyMs: Number(values['latency-ms']) } : {}),
    onRow: (row) => process.stderr.write(`  ${row.status === 'ok' ? `${row.seconds.toFixed(2)} s` : 'FAILED'}  ${row.workload} · ${row.system}${row.status === 'ok' ? '' : ` — ${row.note}`}\n`),
  });
  process.stdout.write(`\n${formatLlmTable(rows)}\n`);
  if (rows.some((row) => row.status !== 'ok')) process.exitCode = 1;
}
