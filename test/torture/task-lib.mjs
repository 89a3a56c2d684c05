/*
 * The worker side of a torture workload: turns a workload spec (see workload.ts) into an rlm task. Plain ESM
 * with no build step, so a worker process starts as fast as `rlm` itself. Every handler is a pure function of
 * its node's input and the spec, except for the external sink (effects) and the first-ever markers (flaky and
 * hanging nodes), both kept in the sink's SQLite file so they hold across processes and crashes.
 *
 * The sink's tables are created by sink.ts (the harness side); the statements here must match them.
 */
import { appendFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const MODULUS = 1_000_003;
const FAILED_CHILD = 1000;

/** FNV-1a, 32 bits: the deterministic part of an effect's value (reference.ts has its own copy). */
function fnv1a(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function openSink(path) {
  const Database = require('better-sqlite3');
  const db = new Database(path);
  db.pragma('busy_timeout = 20000');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  return {
    apply: db.prepare(
      `INSERT INTO sink (idem_key, node, name, value, calls) VALUES (?, ?, ?, ?, 1)
       ON CONFLICT (idem_key) DO UPDATE SET calls = calls + 1 RETURNING value`,
    ),
    mark: db.prepare('INSERT OR IGNORE INTO marks (name) VALUES (?)'),
  };
}

const inputSchema = {
  '~standard': {
    version: 1,
    vendor: 'rlm-torture',
    validate(value) {
      if (value !== null && typeof value === 'object' && typeof value.id === 'string' && (value.pad === undefined || typeof value.pad === 'string')) {
        return { value };
      }
      return { issues: [{ message: 'expected { id: string, pad?: string }' }] };
    },
  },
};

function blockFor(ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // A synchronous loop: the event loop (and so the heartbeat) is blocked, as in a CPU-bound handler.
  }
}

export function makeTask(spec, sinkPath) {
  let sink;
  const ledger = process.env.RLM_TORTURE_LEDGER;
  const sinkOf = () => {
    sink ??= openSink(sinkPath);
    return sink;
  };
  const firstEver = (name) => sinkOf().mark.run(name).changes === 1;
  const childInput = (id) => {
    const pad = spec.nodes[id]?.pad;
    return pad ? { id, pad: 'x'.repeat(pad) } : { id };
  };
  const children = (n) => {
    const list = n.c.map((child) => ({ input: childInput(child) }));
    if (n.p === 'invalidChild') list.push({ input: { id: 404 } });
    return list;
  };
  return {
    name: spec.name ?? 'torture',
    version: 1,
    input: inputSchema,
    key: spec.keyed ? (input) => input.id : undefined,
    order: spec.order,
    deadChildren: spec.passDead ? 'pass' : 'wait',
    limits: {
      maxAttempts: spec.maxAttempts,
      maxDepth: spec.maxDepth,
      maxChildren: spec.maxChildren,
      backoffMs: 5,
      maxBackoffMs: 40,
    },
    async run(input, ctx) {
      if (ledger) appendFileSync(ledger, `run ${input.id}\n`);
      const n = spec.nodes[input.id];
      if (n.p === 'crash') {
        process.kill(process.pid, 'SIGKILL');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000);
      }
      if (n.p === 'hang' && firstEver(`hang:${input.id}`)) blockFor(spec.hangMs);
      if (n.d) await new Promise((resolve) => setTimeout(resolve, n.d));
      let acc = n.v;
      for (let i = 0; i < n.e; i++) {
        const value = await ctx.effect(`e${i}`, (idempotencyKey) => {
          const fresh = JSON.stringify({ h: fnv1a(idempotencyKey) % 1000, nonce: Math.random() });
          return JSON.parse(sinkOf().apply.get(idempotencyKey, input.id, `e${i}`, fresh).value);
        });
        acc += value.h;
      }
      for (let i = 0; i < n.m; i++) ctx.emit({ k: input.id, i });
      if (n.p === 'flaky' && firstEver(`flaky:${input.id}`)) throw Object.assign(new Error(`flaky node ${input.id} fails its first attempt`), { code: 'FLAKY' });
      if (n.p === 'throw') throw Object.assign(new Error(`poison node ${input.id}`), { code: 'POISON' });
      if (n.p === 'nonretry') throw Object.assign(new Error(`non-retryable poison ${input.id}`), { code: 'NON_RETRYABLE' });
      if (n.p === 'nonserial') return { result: { big: 10n } };
      const result = acc % MODULUS;
      const list = children(n);
      if (list.length === 0) return { result };
      if (!n.s) return { result, children: list };
      return {
        result,
        children: (async function* () {
          for (const child of list) {
            await null;
            yield child;
          }
        })(),
      };
    },
    combine: spec.combine
      ? (input, results) => {
          if (ledger) appendFileSync(ledger, `combine ${input.id}\n`);
          let acc = spec.nodes[input.id].v;
          for (const r of results) acc += r !== null && typeof r === 'object' && r.failed === true ? FAILED_CHILD : r;
          return acc % MODULUS;
        }
      : undefined,
  };
}
