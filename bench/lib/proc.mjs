/** Spawning the processes the bench measures: wall time from spawn to exit, peak RSS through rss-probe.mjs. */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const RLM_BIN = join(ROOT, 'bin', 'rlm.mjs');
const PROBE = pathToFileURL(fileURLToPath(new URL('../rss-probe.mjs', import.meta.url))).href;

/** Process groups still running (pid → their RSS file), killed if the bench itself is interrupted. */
const live = new Map();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const [pid, rssFile] of live) {
      killGroup(pid, 'SIGKILL');
      rmSync(rssFile, { force: true });
    }
    process.stderr.write(`\nbench: ${signal}; killed ${live.size} running process group(s).\n`);
    process.exit(130);
  });
}

export function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

let probes = 0;

/**
 * Runs `node <args>` with the RSS probe preloaded (through NODE_OPTIONS, so processes it spawns carry it too).
 * Resolves when it exits, never rejects on a failing exit code: the caller decides what a row shows.
 * `onSpawn(child, startedAt)` may watch the process while it runs (the resume measurement does).
 */
export function measure(args, { env = {}, timeoutMs = 600_000, onSpawn } = {}) {
  const rssFile = join(tmpdir(), `rlm-bench-rss-${process.pid}-${probes++}`);
  writeFileSync(rssFile, '');
  const nodeOptions = [process.env.NODE_OPTIONS, `--import=${PROBE}`].filter(Boolean).join(' ');
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RLM_NO_PROGRESS: '1', ...env, NODE_OPTIONS: nodeOptions, RLM_BENCH_RSS_FILE: rssFile },
    });
    live.set(child.pid, rssFile);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk) => {
      // Keep the tail: a failing process's last words are what the row shows.
      stderr = (stderr + chunk).slice(-64_000);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid, 'SIGKILL');
    }, timeoutMs);
    let exited;
    child.on('exit', (code, signal) => {
      exited = { code, signal, seconds: (performance.now() - started) / 1000 };
    });
    child.on('error', (error) => {
      stderr += `\n${error.message}`;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child.pid);
      // Workers a supervisor left behind must not outlive the row.
      killGroup(child.pid, 'SIGKILL');
      const rss = readRss(rssFile);
      rmSync(rssFile, { force: true });
      exited ??= { code, signal, seconds: (performance.now() - started) / 1000 };
      resolve({
        ...exited,
        stdout,
        stderr,
        timedOut,
        pid: child.pid,
        rssKb: rss.get(child.pid) ?? null,
        rssTotalKb: rss.size > 0 ? [...rss.values()].reduce((a, b) => a + b, 0) : null,
        processes: rss.size,
      });
    });
    onSpawn?.(child, started);
  });
}

function readRss(file) {
  const peaks = new Map();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return peaks;
  }
  for (const line of text.split('\n')) {
    const [pid, kb] = line.trim().split(' ').map(Number);
    if (pid && kb) peaks.set(pid, Math.max(kb, peaks.get(pid) ?? 0));
  }
  return peaks;
}

/** The last meaningful line of a process's stderr, for a row's note. */
export function lastWords(result) {
  if (result.timedOut) return `timed out after ${result.seconds.toFixed(0)} s`;
  const lines = result.stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('at ') && !line.startsWith('{"level":30'));
  const rlmLine = lines.find((line) => line.startsWith('rlm:'));
  const last = rlmLine ?? lines.find((line) => /error/i.test(line)) ?? lines.at(-1) ?? `exit ${result.code ?? result.signal}`;
  return last.length > 160 ? `${last.slice(0, 157)}...` : last;
}

/** Runs a baseline or peer script and parses the one JSON line it prints. */
export async function measureScript(script, options, runOptions) {
  const result = await measure([join(ROOT, script), JSON.stringify(options)], runOptions);
  const line = result.stdout.trim().split('\n').at(-1) ?? '';
  let outcome = null;
  if (result.code === 0) {
    try {
      outcome = JSON.parse(line);
    } catch {
      outcome = null;
    }
  }
  return { ...result, outcome };
}
