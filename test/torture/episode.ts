/**
 * What every process-level episode shares: its store (a SQLite file, or a fresh PostgreSQL database), its sink
 * and task module, the workers it spawns (each beacon and each death counted in the report), the quiet completion
 * after the faults, and the final verification against the reference.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { type Audit, auditPostgres, auditSqlite, type CheckResult, check, sqliteCommitSeq } from './checker.js';
import { allExited, type Beacon, DEFAULT_BEACONS, type ExitInfo, FaultLog, failpointSpec, WorkerProcess } from './harness.js';
import { type Expected, reference } from './reference.js';
import type { Report } from './report.js';
import { createSink, readSink, sinkTotals } from './sink.js';
import { rootInput, type WorkloadSpec, writeTaskModule } from './workload.js';

export interface Backend {
  kind: 'sqlite' | 'postgres';
  /** The --store URL. */
  url: string;
  /** The SQLite file, for file-level faults. */
  dbPath?: string;
  /** The PostgreSQL database of this episode. */
  database?: string;
  audit(runId: string): Promise<Audit>;
  /** Highest commit sequence number in the store; -1 when unreadable. */
  commitSeq(): Promise<number>;
  /** The state of the latest worker registered by process `pid` ('alive', 'dead', 'stopped'), or null. */
  workerState(pid: number): Promise<string | null>;
  /** Drops the store, or keeps it (and copies it into `dir` when it lives elsewhere) for a failed episode. */
  dispose(keep: boolean, dir?: string): Promise<void>;
}

async function dumpDatabase(url: string, path: string): Promise<void> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  await promisify(execFile)('/usr/lib/postgresql/15/bin/pg_dump', ['--no-owner', '-f', path, url], { timeout: 60_000 });
}

export function sqliteBackend(dir: string): Backend {
  const dbPath = join(dir, 'rlm.db');
  return {
    kind: 'sqlite',
    url: `sqlite:${dbPath}`,
    dbPath,
    audit: async (runId) => auditSqlite(dbPath, runId),
    commitSeq: async () => sqliteCommitSeq(dbPath),
    workerState: async (pid) => {
      try {
        const db = new Database(dbPath, { readonly: true });
        try {
          db.pragma('busy_timeout = 5000');
          const row = db.prepare('SELECT state FROM rlm_workers WHERE pid = ? ORDER BY started_at DESC LIMIT 1').get(pid) as { state: string } | undefined;
          return row?.state ?? null;
        } finally {
          db.close();
        }
      } catch {
        return null;
      }
    },
    dispose: async () => undefined,
  };
}

/** A client on the maintenance database of a server URL, for CREATE/DROP DATABASE and backend terminations. */
export async function adminClient(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'torture-admin' });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A fresh database on the server of `url` (a copy of `template` when given), dropped on dispose unless kept. */
export async function postgresBackend(url: string, database: string, template?: string): Promise<Backend> {
  const admin = await adminClient(url);
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${database}"${template ? ` TEMPLATE "${template}"` : ''}`);
  } finally {
    await admin.end();
  }
  const episodeUrl = withDatabase(url, database);
  const withClient = async <T>(fn: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = await adminClient(episodeUrl);
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  return {
    kind: 'postgres',
    url: episodeUrl,
    database,
    audit: (runId) => withClient((client) => auditPostgres(client, runId)),
    commitSeq: () =>
      withClient(async (client) => {
        const rows = await client.query('SELECT coalesce(max(seq), 0)::bigint AS s FROM rlm_commits').catch(() => ({ rows: [{ s: -1 }] }));
        return Number(rows.rows[0]?.s ?? -1);
      }).catch(() => -1),
    workerState: (pid) =>
      withClient(async (client) => {
        const rows = await client.query('SELECT state FROM rlm_workers WHERE pid = $1 ORDER BY started_at DESC LIMIT 1', [pid]);
        return (rows.rows[0]?.state as string | undefined) ?? null;
      }).catch(() => null),
    dispose: async (keep, dir) => {
      if (keep) {
        // The database stays; a dump goes with the episode's files, in case the server does not (a private cluster).
        if (dir) await dumpDatabase(episodeUrl, join(dir, 'store.sql')).catch(() => undefined);
        return;
      }
      const drop = await adminClient(url).catch(() => null);
      if (!drop) return;
      try {
        await drop.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      } catch {
        // Left for the next run's DROP … IF EXISTS.
      } finally {
        await drop.end().catch(() => undefined);
      }
    },
  };
}

export interface EpisodeEnv {
  index: number;
  kind: string;
  seed: number;
  dir: string;
  report: Report;
  /** One line that replays this episode alone. */
  replay: string;
  /** Budget of the whole episode, in ms. */
  budgetMs: number;
}

export interface SpawnOptions {
  /** Failpoint rules, e.g. `{ 'commit.beforeCommit': 'kill@3' }`; every default beacon is added. */
  rules?: Record<string, string>;
  beacons?: readonly string[];
  env?: Record<string, string>;
  label?: string;
  /** Extra engine flags (they follow the episode's, so they win). */
  flags?: string[];
  /** `rlm worker` instead of `rlm run` (joins every run of the task, never exits on its own). */
  worker?: boolean;
  /** Another URL for the same store (through a proxy). */
  store?: string;
}

export type KillTag = 'random' | 'allAtOnce' | 'recovery';

/** One episode on one store: spawns workers, counts what happens to them, and verifies the end state. */
export class Episode {
  readonly env: EpisodeEnv;
  readonly backend: Backend;
  readonly spec: WorkloadSpec;
  readonly runId: string;
  expected: Expected;
  readonly modulePath: string;
  readonly sinkPath: string;
  readonly log = new FaultLog();
  readonly flags: string[];
  readonly procs: WorkerProcess[] = [];
  readonly problems: string[] = [];
  readonly #deadline: number;
  readonly #tags = new Map<WorkerProcess, KillTag>();
  readonly #counted = new Set<WorkerProcess>();
  /** Commits acknowledged (afterCommit beacons) since the last quiet point, for I12. */
  #acked = 0;
  #seqAtQuiet = -1;
  /** A fault removed acknowledged commits (WAL truncation): I12 does not hold for this episode. */
  lostCommitsOnPurpose = false;
  finalExit: ExitInfo | null = null;
  /** Spec ids of nodes blamed for harness kills and left dead (see complete). */
  blamedIds = new Set<string>();

  constructor(env: EpisodeEnv, backend: Backend, spec: WorkloadSpec, flags: string[]) {
    this.env = env;
    this.backend = backend;
    this.spec = spec;
    this.runId = `t${env.index}`;
    this.flags = flags;
    this.#deadline = Date.now() + env.budgetMs;
    this.sinkPath = join(env.dir, 'sink.db');
    createSink(this.sinkPath);
    this.modulePath = writeTaskModule(env.dir, spec, this.sinkPath);
    this.expected = reference(spec, this.runId);
  }

  get remainingMs(): number {
    return Math.max(1_000, this.#deadline - Date.now());
  }

  get overBudget(): boolean {
    return Date.now() > this.#deadline;
  }

  runArgs(extra: string[] = [], store = this.backend.url): string[] {
    return ['run', this.modulePath, '--input', JSON.stringify(rootInput(this.spec)), '--run', this.runId, '--store', store, ...this.flags, ...extra];
  }

  spawn(options: SpawnOptions = {}): WorkerProcess {
    const args = options.worker
      ? ['worker', this.modulePath, '--store', options.store ?? this.backend.url, ...this.flags, ...(options.flags ?? [])]
      : this.runArgs(options.flags, options.store);
    const proc = new WorkerProcess(args, {
      env: options.env,
      failpoints: failpointSpec(options.rules ?? {}, options.beacons ?? DEFAULT_BEACONS),
      label: options.label,
      log: this.log,
      onBeacon: (beacon) => this.#beacon(beacon),
    });
    this.procs.push(proc);
    return proc;
  }

  /** Any `rlm` command on this episode's store (status, dlq, approve, snapshot…). */
  command(
    args: string[],
    options: { rules?: Record<string, string>; beacons?: readonly string[]; env?: Record<string, string>; script?: string; label?: string; store?: string } = {},
  ): WorkerProcess {
    const proc = new WorkerProcess(options.script ? args : [...args, '--store', options.store ?? this.backend.url], {
      env: options.env,
      script: options.script,
      label: options.label,
      failpoints: options.rules || options.beacons ? failpointSpec(options.rules ?? {}, options.beacons ?? []) : '',
      log: this.log,
      onBeacon: (beacon) => this.#beacon(beacon),
    });
    this.procs.push(proc);
    return proc;
  }

  #beacon(beacon: Beacon): void {
    const hits = this.env.report.phases.hits;
    hits[beacon.fp] = (hits[beacon.fp] ?? 0) + 1;
    if (beacon.fp === 'commit.afterCommit') this.#acked++;
  }

  tag(proc: WorkerProcess, tag: KillTag): void {
    this.#tags.set(proc, tag);
  }

  /** Waits for every process of this episode, within its budget; then counts each death once. */
  async settle(procs: readonly WorkerProcess[] = this.procs): Promise<void> {
    try {
      await allExited(procs, this.remainingMs);
    } catch (error) {
      this.problems.push(`budget: ${(error as Error).message}`);
      for (const p of procs) p.signal('SIGCONT');
      for (const p of procs) p.signal('SIGKILL', 'over budget');
      await Promise.all(procs.map((p) => p.exited));
      throw new Error(`episode over budget: ${(error as Error).message}`);
    }
    for (const p of procs) this.account(p);
  }

  /** Counts how a finished process died: a harness kill, a failpoint kill (at which phase), or its own poison. */
  account(proc: WorkerProcess): void {
    if (this.#counted.has(proc) || proc.alive) return;
    this.#counted.add(proc);
    if (!proc.killed) return;
    const r = this.env.report;
    r.kills.sigkill++;
    if (this.backend.kind === 'sqlite') r.kills.sqlite++;
    else r.kills.postgres++;
    const tag = this.#tags.get(proc);
    if (proc.signals.includes('SIGKILL')) {
      if (tag === 'allAtOnce') r.kills.allAtOnce++;
      else if (tag === 'recovery') r.kills.duringRecovery++;
      r.kills.random++;
      if (proc.killContext === 'in-commit') r.kills.midCommit++;
      return;
    }
    const rule = /(^|;)([\w.]+)=kill@(\d+)/.exec(proc.failpoints);
    const phase = rule?.[2];
    const at = Number(rule?.[3]);
    const hasCrashPoison = Object.values(this.spec.nodes).some((n) => n.p === 'crash');
    if (phase && (proc.hitsOf(phase) >= at || (!hasCrashPoison && proc.hitsOf(phase) === at - 1))) {
      r.kills.failpoint++;
      r.phases.kills[phase] = (r.phases.kills[phase] ?? 0) + 1;
      if (phase === 'commit.beforeCommit' || phase === 'commit.afterCommit') r.kills.midCommit++;
      if (phase === 'effect.afterCall') r.kills.effectWindow++;
      if (tag === 'recovery') r.kills.duringRecovery++;
      return;
    }
    r.kills.poisonSelf++;
  }

  /**
   * Resolves once the store has declared the worker of process `pid` dead (its lease expired and another worker
   * took its nodes back), polling the store: the one event here no process reports. Resolves false when `until`
   * ends first.
   */
  async declaredDead(pid: number, until: Promise<unknown>): Promise<boolean> {
    let over = false;
    void until.then(() => {
      over = true;
    });
    while (!over && !this.overBudget) {
      if ((await this.backend.workerState(pid)) === 'dead') return true;
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
    return false;
  }

  /** Marks a quiet point (no process running): I12 counts acknowledged commits from here. */
  async quiet(): Promise<void> {
    this.#acked = 0;
    this.#seqAtQuiet = await this.backend.commitSeq();
  }

  /** I12 at a quiet point after faults: the store holds at least every commit acknowledged since the last one. */
  async checkCommitSeq(): Promise<void> {
    if (this.lostCommitsOnPurpose || this.#seqAtQuiet < 0) return this.quiet();
    const now = await this.backend.commitSeq();
    if (now >= 0 && now < this.#seqAtQuiet + this.#acked) {
      this.problems.push(`I12 store commit_seq ${now} < ${this.#seqAtQuiet} + ${this.#acked} commits acknowledged since`);
    }
    return this.quiet();
  }

  /**
   * Runs the episode's run to its end without faults: resumes after poison pills kill the worker, approves a
   * parked fan-out, and redrives nodes blamed for a kill the harness made. Resolves with the final exit.
   */
  async complete(): Promise<void> {
    let redrives = 0;
    for (let attempt = 0; attempt < 40; attempt++) {
      const proc = this.spawn({ label: `final${attempt}` });
      await this.settle([proc]);
      const exit = proc.exit as ExitInfo;
      if (proc.killed) continue;
      if (exit.code === 4) {
        await this.settle([this.command(['approve', this.runId, '--all'])]);
        continue;
      }
      if (exit.code !== 0 && exit.code !== 3) {
        this.problems.push(`the quiet run exited ${exit.code}: ${tail(exit.stderr)}`);
        if (attempt >= 2) return;
        continue;
      }
      this.finalExit = exit;
      if (redrives >= 3) return;
      // A node blamed for crashes the harness caused (it ran alone as a suspect when killed): redrive it.
      const audit = await this.backend.audit(this.runId);
      const blamed = check(audit, this.expected, this.checkOptions()).falseBlames;
      if (blamed.length === 0) return;
      this.env.report.falseBlames += blamed.length;
      if (this.spec.passDead && this.spec.combine) {
        // Their parents combined them as failures already: a redrive cannot undo that. The node stays dead, and
        // the reference is worked out again with it dead, as a crash poison would be.
        const keys = new Set(audit.nodes.filter((n) => blamed.includes(n.id)).map((n) => n.key));
        const ids = new Set([...this.expected.nodes.values()].filter((n) => keys.has(n.key) && n.id !== null).map((n) => n.id as string));
        for (const id of this.blamedIds) ids.add(id);
        this.blamedIds = ids;
        const before = this.expected;
        this.expected = reference(this.spec, this.runId, { blamed: ids });
        // Their descendants may have run in a timeline a WAL cut rolled back: their effects reached the sink.
        for (const idem of before.effects.keys()) if (!this.expected.effects.has(idem)) this.expected.optionalEffects.add(idem);
        this.log.note(`nodes blamed for harness kills stay dead (dead children pass): ${[...keys].join(' ')}`);
        return;
      }
      redrives++;
      this.log.note(`redriving ${blamed.length} node(s) blamed for harness kills: ${blamed.join(' ')}`);
      await this.settle([this.command(['dlq', 'retry', this.runId, ...blamed.map(String)])]);
    }
    this.problems.push('the run did not end after 40 quiet attempts');
  }

  checkOptions() {
    return { maxAttempts: this.spec.maxAttempts, passDead: this.spec.passDead, combine: this.spec.combine };
  }

  /** I1–I8 against the reference, the exit code and stdout of the final run, and I10 (a re-run runs nothing). */
  async verify(options: { rerun?: boolean } = {}): Promise<CheckResult> {
    const r = this.env.report;
    const sink = readSink(this.sinkPath);
    const audit = await this.backend.audit(this.runId);
    const result = check(audit, this.expected, { ...this.checkOptions(), sink });
    const problems = [...this.problems, ...result.problems];
    for (const id of result.falseBlames) problems.push(`I7 node ${id} is dead (CRASHED) after three redrives`);
    const wantCode = this.expected.dead > 0 || this.expected.runState !== 'completed' ? 3 : 0;
    if (this.finalExit) {
      if (this.finalExit.code !== wantCode) problems.push(`exit code ${this.finalExit.code}, expected ${wantCode}`);
      if (this.expected.runState === 'completed' && this.finalExit.stdout.trim() !== String(this.expected.rootResult)) {
        problems.push(`rlm run printed ${JSON.stringify(this.finalExit.stdout.trim())}, expected ${this.expected.rootResult}`);
      }
    }
    if (this.finalExit && options.rerun !== false) {
      // I10: a run that ended runs no handler again.
      const ledger = join(this.env.dir, 'ledger.txt');
      const before = sinkTotals(sink).calls;
      const again = this.spawn({ label: 'rerun', env: { RLM_TORTURE_LEDGER: ledger } });
      await this.settle([again]);
      if (again.exit?.code !== wantCode) problems.push(`I10 the re-run exited ${again.exit?.code}, expected ${wantCode}: ${tail(again.exit?.stderr ?? '')}`);
      if (existsSync(ledger) && readFileSync(ledger, 'utf8').length > 0) {
        problems.push(`I10 re-running the finished run called handlers: ${readFileSync(ledger, 'utf8').split('\n').slice(0, 5).join(', ')}`);
      }
      const after = sinkTotals(readSink(this.sinkPath)).calls;
      if (after !== before) problems.push(`I10 re-running the finished run made ${after - before} effect calls`);
    }
    if (!this.finalExit && !problems.some((p) => p.startsWith('the quiet run') || p.startsWith('the run did not end'))) {
      problems.push('the run never ended');
    }
    const totals = sinkTotals(sink);
    r.effects.calls += totals.calls;
    r.effects.applications += totals.applications;
    r.effects.reinvocations += totals.reinvocations;
    r.nodesProcessed += audit.nodes.length;
    r.invariants.checked++;
    r.invariants.dataLost += result.lost;
    r.invariants.duplicatedCompletions += result.duplicated;
    r.invariants.violations += problems.length;
    return { ...result, problems };
  }

  /** Kills whatever is left, keeps the fault log, and drops the store unless the episode failed. */
  async close(failed: boolean): Promise<void> {
    for (const p of this.procs) p.signal('SIGCONT');
    for (const p of this.procs) p.signal('SIGKILL', 'episode closing');
    await Promise.all(this.procs.map((p) => p.exited));
    if (failed) {
      for (const [i, p] of this.procs.entries()) {
        if (!p.stderr.trim()) continue;
        this.log.note(`${p.label} stderr (last lines): ${tail(p.stderr, 12)}`);
        writeFileSync(join(this.env.dir, `${String(i).padStart(2, '0')}-${p.label}.stderr`), p.stderr);
      }
    }
    writeFileSync(join(this.env.dir, 'faults.log'), this.log.toString());
    await this.backend.dispose(failed, this.env.dir);
  }
}

export function tail(text: string, lines = 4): string {
  return text.trim().split('\n').slice(-lines).join(' | ').slice(0, 600);
}

/** A fresh directory for an episode. */
export function episodeDir(root: string, index: number, kind: string): string {
  const dir = join(root, `ep${String(index).padStart(4, '0')}-${kind}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}
