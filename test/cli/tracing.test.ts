import Database from 'better-sqlite3';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';

const HOOK = fileURLToPath(new URL('../fixtures/otel-spans.mjs', import.meta.url));

interface SpanLine {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  nodeId: number;
  pid?: number;
}

/** The run's trace and root parent span, as README documents them: SHA-256 of the run id. */
function derived(runId: string): { traceId: string; spanId: string } {
  const hex = createHash('sha256').update(runId).digest('hex');
  return { traceId: hex.slice(0, 32), spanId: hex.slice(32, 48) };
}

function parents(db: string, runId: string): Map<number, number | null> {
  const handle = new Database(db, { readonly: true });
  try {
    const rows = handle.prepare('SELECT id, parent_id FROM rlm_nodes WHERE run_id = ?').all(runId) as { id: number; parent_id: number | null }[];
    return new Map(rows.map((row) => [row.id, row.parent_id]));
  } finally {
    handle.close();
  }
}

/**
 * One trace: every span has the run's trace id, and every step span's parent is a run-phase span of its parent
 * node (the root's: the run's derived span id). Returns the spans of nodes the store does not hold: steps of a
 * killed process whose group was never committed.
 */
function expectOneTrace(spans: SpanLine[], tree: Map<number, number | null>, runId: string): SpanLine[] {
  const run = derived(runId);
  const runPhase = new Map<number, SpanLine[]>();
  for (const span of spans) {
    if (span.name !== 'rlm.step') continue;
    const list = runPhase.get(span.nodeId) ?? [];
    list.push(span);
    runPhase.set(span.nodeId, list);
  }
  expect(new Set(spans.map((span) => span.traceId))).toEqual(new Set([run.traceId]));
  for (const [node, parent] of tree) {
    expect(runPhase.get(node)?.length, `node ${node} has a step span`).toBeGreaterThan(0);
    if (parent !== null) expect(spans.some((span) => span.name === 'rlm.combine' && span.nodeId === parent)).toBe(true);
  }
  const lost: SpanLine[] = [];
  for (const span of spans) {
    const parent = tree.get(span.nodeId);
    if (parent === undefined) lost.push(span);
    else if (parent === null) expect(span.parentSpanId).toBe(run.spanId);
    else expect(runPhase.get(parent)?.map((p) => p.spanId), `parent span of node ${span.nodeId}`).toContain(span.parentSpanId);
  }
  return lost;
}

function onFailpoint(child: ChildProcess, name: string, n: number): Promise<void> {
  return new Promise((resolve) => {
    child.on('message', (message: { fp?: string; n?: number }) => {
      if (message.fp === name && message.n === n) resolve();
    });
  });
}

describe('tracing: one run is one trace', () => {
  it('a run across two processes and a SIGKILL forms one trace: every step span is a child of its parent node span', async () => {
    const tmp = tempDir();
    const file = join(tmp.dir, 'spans.jsonl');
    const env = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${HOOK}`, RLM_TEST_SPANS: file };
    const args = ['run', 'test/fixtures/slow-tree.ts', '--input', '{"fanout":3,"depth":4}', '--run', 'traced', '--store', tmp.url, '--commit-every', '10'];
    try {
      const first = startCli(args, { ...env, RLM_FAILPOINTS: 'commit.beforeCommit=beacon' });
      await onFailpoint(first.child, 'commit.beforeCommit', 4);
      first.child.kill('SIGKILL');
      expect((await first.done).signal).toBe('SIGKILL');
      const second = await runCli(args, env);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stdout.trim()).toBe('121');

      const spans = readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as SpanLine);
      const tree = parents(tmp.db, 'traced');
      expect(tree.size).toBe(121);
      const lost = expectOneTrace(spans, tree, 'traced');
      // Both processes made spans, and the second parented some of its spans on spans the first one made.
      const pids = [...new Set(spans.map((span) => span.pid))];
      expect(pids).toHaveLength(2);
      // Only the killed process ran steps whose nodes were never committed.
      expect(lost.every((span) => span.pid === pids[0])).toBe(true);
      const byId = new Map(spans.map((span) => [span.spanId, span]));
      const across = spans.filter((span) => span.pid !== pids[0] && span.parentSpanId !== null && byId.get(span.parentSpanId)?.pid === pids[0]);
      expect(across.length).toBeGreaterThan(0);
    } finally {
      tmp.cleanup();
    }
  });

  it('ctx.traceId is the run trace without an SDK: the same id in every step', async () => {
    const tmp = tempDir();
    try {
      const run = await runCli(['run', 'test/fixtures/trace-ids.ts', '--input', '{"fanout":2,"depth":2}', '--run', 'plain', '--store', tmp.url]);
      expect(run.code, run.stderr).toBe(0);
      const records = (await runCli(['results', 'plain', '--store', tmp.url])).stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { traceId: string });
      expect(records).toHaveLength(7);
      expect(new Set(records.map((record) => record.traceId))).toEqual(new Set([derived('plain').traceId]));
    } finally {
      tmp.cleanup();
    }
  });

  it('rlm run --workers 2 --otlp URL exports the run as one trace to an OTLP/HTTP collector; ctx.traceId is its id', async () => {
    const tmp = tempDir();
    const bodies: unknown[] = [];
    const paths: string[] = [];
    const collector = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        paths.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
        bodies.push(JSON.parse(body));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const address = collector.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    try {
      const run = await runCli([
        'run',
        'test/fixtures/trace-ids.ts',
        '--input',
        '{"fanout":3,"depth":3}',
        '--run',
        'exported',
        '--store',
        tmp.url,
        '--workers',
        '2',
        '--otlp',
        `http://127.0.0.1:${address.port}`,
      ]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout.trim()).toBe('40');
      expect(paths.every((path) => path === 'POST /v1/traces application/json')).toBe(true);
      type Attribute = { key: string; value: { intValue?: string | number } };
      type OtlpSpan = { name: string; traceId: string; spanId: string; parentSpanId?: string; attributes: Attribute[] };
      const spans: SpanLine[] = (bodies as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] }[]).flatMap((body) =>
        body.resourceSpans.flatMap((resource) =>
          resource.scopeSpans.flatMap((scope) =>
            scope.spans.map((span) => ({
              name: span.name,
              traceId: span.traceId,
              spanId: span.spanId,
              parentSpanId: span.parentSpanId ?? null,
              nodeId: Number(span.attributes.find((attribute) => attribute.key === 'rlm.node.id')?.value.intValue),
            })),
          ),
        ),
      );
      expect(expectOneTrace(spans, parents(tmp.db, 'exported'), 'exported')).toEqual([]);
      const records = (await runCli(['results', 'exported', '--store', tmp.url])).stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { traceId: string });
      expect(new Set(records.map((record) => record.traceId))).toEqual(new Set([derived('exported').traceId]));
    } finally {
      collector.close();
      tmp.cleanup();
    }
  });

  it('--otlp refuses a URL that is not http(s), in one line', async () => {
    const tmp = tempDir();
    try {
      const out = await runCli(['run', 'test/fixtures/trace-ids.ts', '--input', '{"fanout":1,"depth":0}', '--store', tmp.url, '--otlp', 'grpc://127.0.0.1:4317']);
      expect(out.code).toBe(2);
      expect(out.stderr.trim()).toBe('rlm: Expected --otlp to be an http(s) URL (OTLP over HTTP); got `grpc://127.0.0.1:4317`.');
    } finally {
      tmp.cleanup();
    }
  });
});
