/*
 * The recursive LLM pipeline (examples/llm) against its local OpenAI-compatible server, started here on a free
 * port: killed with SIGKILL about halfway through its model calls and resumed, it repeats no call but those in
 * flight at the kill and prints the uninterrupted run's answer; under 429s with Retry-After its deferred nodes are
 * charged no attempt, while a 5xx costs one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { makeCorpus, writeCorpus } from '../../examples/llm/corpus.js';
import { type Answer, countTokens, loadCorpus, splitRange } from '../../examples/llm/pipeline.js';
import { type Fault, type ModelServer, type ModelServerOptions, startModelServer } from '../../examples/llm/server.js';
import { retryAfterMs } from '../../examples/llm/task.js';
import { openStore } from '../../src/store/open.js';
import { runCli, startCli } from '../helpers/cli.js';
import { describePostgres, pgQuery } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

const CORPUS = { docs: 30, seed: 5 };
const TOWN = makeCorpus(CORPUS.docs, CORPUS.seed)[17]!;
const QUESTION = `Who rebuilt the bridge at ${TOWN.title}?`;
/** The one sentence of the corpus that answers the question. */
const NEEDLE = TOWN.paragraphs
  .flatMap((paragraph) => paragraph.split(/(?<=\.)\s+/))
  .find((sentence) => sentence.startsWith(`The bridge at ${TOWN.title} `))!;
const CONTEXT_TOKENS = 1024;
const INPUT = { question: QUESTION, corpus: CORPUS, contextTokens: CONTEXT_TOKENS };
const CONCURRENCY = 4;

const servers: ModelServer[] = [];
const temps: Array<ReturnType<typeof tempDir>> = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
  for (const temp of temps.splice(0)) temp.cleanup();
});

async function server(options: ModelServerOptions = {}): Promise<ModelServer> {
  const started = await startModelServer({ contextTokens: CONTEXT_TOKENS, latencyMs: 20, ...options });
  servers.push(started);
  return started;
}

function store(): ReturnType<typeof tempDir> {
  const temp = tempDir('rlm-llm-');
  temps.push(temp);
  return temp;
}

function args(runId: string, url: string, withInput = true): string[] {
  return ['run', 'examples/llm/task.ts', ...(withInput ? ['--input', JSON.stringify(INPUT)] : []), '--run', runId, '--store', url, '--concurrency', String(CONCURRENCY)];
}

const env = (model: ModelServer) => ({ OPENAI_BASE_URL: model.url, OPENAI_API_KEY: 'test-key', OPENAI_MODEL: 'extractive' });

function countByHash(hashes: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const hash of hashes) counts.set(hash, (counts.get(hash) ?? 0) + 1);
  return counts;
}

/** Each node's key, attempts and errors, and the prompt hashes its journaled effects name. */
async function journal(url: string, runId: string) {
  const opened = await openStore(url);
  try {
    const nodes = await opened.listNodes(runId, {});
    return await Promise.all(
      nodes.map(async (node) => ({
        key: node.key,
        state: node.state,
        attempts: node.attempts,
        errors: node.errors.length,
        hashes: (await opened.listEffects(node.id)).map((effect) => effect.name.replace(/^chat:/, '')),
      })),
    );
  } finally {
    await opened.close();
  }
}

async function costSpent(url: string, runId: string): Promise<number | undefined> {
  const opened = await openStore(url);
  try {
    return (await opened.getRun(runId))?.costSpent;
  } finally {
    await opened.close();
  }
}

type Reference = { answer: Answer; hashes: string[]; nodes: Awaited<ReturnType<typeof journal>>; maxInFlight: number };
let referenceRun: Promise<Reference> | undefined;

/** An uninterrupted run (made once for the file): its answer, the hashes of the calls the server saw, its nodes. */
function reference(): Promise<Reference> {
  referenceRun ??= uninterrupted();
  return referenceRun;
}

async function uninterrupted(): Promise<Reference> {
  const model = await server();
  const temp = store();
  const run = await runCli(args('reference', temp.url), env(model));
  expect(run.code, run.stderr).toBe(0);
  const answer = JSON.parse(run.stdout) as Answer;
  const hashes = model.calls().map((call) => call.hash);
  const nodes = await journal(temp.url, 'reference');
  // The task's estimate is the exact node count: the split is known before any call.
  const status = JSON.parse((await runCli(['status', 'reference', '--json', '--store', temp.url])).stdout) as { estimate: number; nodes: number };
  expect(status.estimate).toBe(nodes.length);
  return { answer, hashes, nodes, maxInFlight: model.maxInFlight() };
}

/** Kills a run as the server receives half the uninterrupted run's calls, resumes it, and checks what was paid twice. */
async function killHalfwayAndResume(url: string): Promise<void> {
  const ref = await reference();
  expect(ref.answer.answer).toBe(NEEDLE);
  expect(ref.answer.calls).toBe(ref.hashes.length);
  // An uninterrupted run asks each prompt once.
  expect(countByHash(ref.hashes).size).toBe(ref.hashes.length);
  expect(ref.hashes.length).toBeGreaterThanOrEqual(8);

  const model = await server();
  const first = startCli(args('crash', url), env(model));
  const half = Math.ceil(ref.hashes.length / 2);
  // Killed as the half-way call arrives, so that call at least is in flight.
  model.events.on('call', (call) => {
    if (call.n === half) first.child.kill('SIGKILL');
  });
  const killed = await first.done;
  expect(killed.signal, killed.stderr).toBe('SIGKILL');
  // Everything the killed process sent is read once its sockets are closed.
  await expect.poll(() => model.openConnections(), { timeout: 10_000, interval: 10 }).toBe(0);
  const before = model.calls().map((call) => call.hash);
  expect(countByHash(before).size).toBe(before.length);
  const journaled = new Set((await journal(url, 'crash')).flatMap((node) => node.hashes));
  const inFlight = new Set(before.filter((hash) => !journaled.has(hash)));
  expect(inFlight.size).toBeGreaterThanOrEqual(1);
  expect(inFlight.size).toBeLessThanOrEqual(CONCURRENCY);

  const resumed = await runCli(args('crash', url, false), env(model));
  expect(resumed.code, resumed.stderr).toBe(0);
  expect(JSON.parse(resumed.stdout)).toEqual(ref.answer);
  const counts = countByHash(model.calls().map((call) => call.hash));
  const repeated = [...counts].filter(([, n]) => n > 1).map(([hash]) => hash);
  for (const hash of repeated) {
    expect(inFlight.has(hash), `call ${hash} was repeated though it was journaled before the kill`).toBe(true);
    expect(counts.get(hash)).toBe(2);
  }
  expect(new Set(counts.keys())).toEqual(new Set(ref.hashes));
  expect(model.calls()).toHaveLength(ref.hashes.length + repeated.length);
  // One usage record per call of the answer, however many times its step ran.
  const records = (await runCli(['results', 'crash', '--store', url])).stdout.trim().split('\n');
  expect(records).toHaveLength(ref.answer.calls);
  expect(new Set(records.map((line) => (JSON.parse(line) as { promptHash: string }).promptHash))).toEqual(new Set(ref.hashes));
  // The run's spend counts each call once, as journaled; the provider billed the calls in flight twice.
  expect(await costSpent(url, 'crash')).toBe(ref.answer.promptTokens + ref.answer.completionTokens);
}

describe('a recursive LLM pipeline on rlm', () => {
  it('resumed after kill -9 halfway, repeats only the calls in flight at the kill and gives the same answer', async () => {
    await killHalfwayAndResume(store().url);
  });

  it('defers calls the provider answers with 429 and Retry-After without charging an attempt; a 5xx is retried, charged', async () => {
    const ref = await reference();
    const order = new Map<string, number>();
    const fault = ({ hash, seen }: { hash: string; seen: number }): Fault | undefined => {
      if (!order.has(hash)) order.set(hash, order.size);
      const index = order.get(hash)!;
      // A third of the prompts are refused with 429 as often as maxAttempts: charged, their nodes would die.
      if (index % 3 === 0 && seen < 4) return { status: 429, retryAfterMs: 150 };
      if (index % 3 === 1 && index % 5 === 1 && seen === 0) return { status: 503 };
      return undefined;
    };
    const model = await server({ fault });
    const temp = store();
    const run = await runCli(args('throttled', temp.url), env(model));
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual(ref.answer);

    const throttled = new Set(model.calls().filter((call) => call.status === 429).map((call) => call.hash));
    const failed = new Set(model.calls().filter((call) => call.status === 503).map((call) => call.hash));
    expect(throttled.size).toBeGreaterThanOrEqual(3);
    expect(failed.size).toBeGreaterThanOrEqual(1);
    for (const hash of throttled) expect(model.calls().filter((call) => call.hash === hash).map((call) => call.status)).toEqual([429, 429, 429, 429, 200]);

    const refNodes = new Map(ref.nodes.map((node) => [node.key, node]));
    const nodes = await journal(temp.url, 'throttled');
    expect(nodes.map((node) => node.key).sort()).toEqual([...refNodes.keys()].sort());
    let deferred = 0;
    for (const node of nodes) {
      const charged = node.hashes.filter((hash) => failed.has(hash)).length;
      if (node.hashes.some((hash) => throttled.has(hash))) deferred++;
      expect(node.state).toBe('done');
      // Deferrals add nothing to a node's attempts and errors; each 503 adds one of each.
      expect({ key: node.key, attempts: node.attempts, errors: node.errors }).toEqual({
        key: node.key,
        attempts: refNodes.get(node.key)!.attempts + charged,
        errors: charged,
      });
    }
    expect(deferred).toBeGreaterThanOrEqual(1);
    // A deferred or retried step gets its journaled reservation back: each call is charged once.
    expect(await costSpent(temp.url, 'throttled')).toBe(ref.answer.promptTokens + ref.answer.completionTokens);
  });

  it('stops at its token budget, every call reserved before it is made, and ends with the same answer once raised', async () => {
    const ref = await reference();
    const tokens = ref.answer.promptTokens + ref.answer.completionTokens;
    const model = await server();
    const temp = store();
    const budget = Math.floor(tokens / 2);
    const paused = await runCli([...args('budget', temp.url), '--budget-cost', String(budget)], env(model));
    expect(paused.code, paused.stderr).toBe(4);
    const opened = await openStore(temp.url);
    try {
      const run = await opened.getRun('budget');
      expect(run).toMatchObject({ state: 'paused', costBudget: budget });
      // Reservations never pass the budget, and the calls made so far were paid for within it.
      expect(run!.costSpent).toBeLessThanOrEqual(budget);
      const made = model.calls();
      expect(made.length).toBeGreaterThan(0);
      expect(made.length).toBeLessThan(ref.hashes.length);
      expect(made.reduce((sum, call) => sum + call.promptTokens + call.completionTokens, 0)).toBeLessThanOrEqual(budget);
      expect((await opened.listNodes('budget', { state: 'parked' })).length).toBeGreaterThan(0);

      expect((await runCli(['budget', 'budget', '--cost', String(2 * tokens), '--store', temp.url])).code).toBe(0);
      expect((await runCli(['approve', 'budget', '--all', '--store', temp.url])).code).toBe(0);
      const resumed = await runCli(args('budget', temp.url, false), env(model));
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(JSON.parse(resumed.stdout)).toEqual(ref.answer);
      // Each call charged once, as the provider reported it, across the pause; and no call was made twice.
      expect((await opened.getRun('budget'))?.costSpent).toBe(tokens);
      expect(countByHash(model.calls().map((call) => call.hash)).size).toBe(ref.hashes.length);
      expect(model.calls()).toHaveLength(ref.hashes.length);
    } finally {
      await opened.close();
    }
  });

  it('holds the provider to OPENAI_MAX_IN_FLIGHT calls at once, below --concurrency', async () => {
    const ref = await reference();
    // Unlimited, one process runs up to --concurrency calls at once.
    expect(ref.maxInFlight).toBeGreaterThan(2);
    const model = await server();
    const temp = store();
    const run = await runCli(args('limited', temp.url), { ...env(model), OPENAI_MAX_IN_FLIGHT: '2' });
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual(ref.answer);
    expect(model.maxInFlight()).toBeGreaterThanOrEqual(1);
    expect(model.maxInFlight()).toBeLessThanOrEqual(2);
    expect(model.calls()).toHaveLength(ref.hashes.length);
  });

  it('starts its own local model when OPENAI_BASE_URL is unset, and reads the documents from a directory', async () => {
    const temp = store();
    writeCorpus(join(temp.dir, 'docs'), makeCorpus(CORPUS.docs, CORPUS.seed));
    const input = { question: QUESTION, corpus: { dir: join(temp.dir, 'docs') } };
    const run = await runCli(['run', 'examples/llm/task.ts', '--input', JSON.stringify(input), '--run', 'local', '--store', temp.url], { OPENAI_BASE_URL: '', OPENAI_MODEL: '' });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/OPENAI_BASE_URL is unset; started the local extractive model at http:\/\/127\.0\.0\.1:\d+\/v1/);
    expect((JSON.parse(run.stdout) as Answer).answer).toBe(NEEDLE);
  });
});

describePostgres('a recursive LLM pipeline on rlm, PostgreSQL store', (url) => {
  it('resumed after kill -9 halfway, repeats only the calls in flight at the kill and gives the same answer', async () => {
    const schema = `rlm_llm_${process.pid}`;
    await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    try {
      await killHalfwayAndResume(`${url}${url.includes('?') ? '&' : '?'}schema=${schema}`);
    } finally {
      await pgQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    }
  });
});

describe('the pipeline\'s pure parts', () => {
  it('splits a slice into contiguous, non-empty parts of about equal tokens', () => {
    const { passages } = loadCorpus(CORPUS);
    for (const [from, to, fanout] of [
      [0, passages.length, 4],
      [3, 9, 4],
      [10, 12, 4],
      [5, 40, 7],
    ] as const) {
      const parts = splitRange(passages, from, to, fanout);
      expect(parts).toHaveLength(Math.min(fanout, to - from));
      expect(parts[0]![0]).toBe(from);
      expect(parts.at(-1)![1]).toBe(to);
      for (let i = 0; i < parts.length; i++) {
        expect(parts[i]![1]).toBeGreaterThan(parts[i]![0]);
        if (i > 0) expect(parts[i]![0]).toBe(parts[i - 1]![1]);
      }
    }
    const tokens = splitRange(passages, 0, passages.length, 4).map(([a, b]) => countTokens(passages.slice(a, b).join(' ')));
    expect(Math.max(...tokens) / Math.min(...tokens)).toBeLessThan(1.5);
  });

  it('reads how long a 429 asks to wait from retry-after-ms, or Retry-After in seconds or as a date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs(new Headers({ 'retry-after-ms': '250', 'retry-after': '9' }), now)).toBe(250);
    expect(retryAfterMs(new Headers({ 'retry-after': '3' }), now)).toBe(3_000);
    expect(retryAfterMs(new Headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:05 GMT' }), now)).toBe(5_000);
    expect(retryAfterMs(new Headers(), now)).toBe(1_000);
    expect(retryAfterMs(undefined, now)).toBe(1_000);
  });
});
