/**
 * Real worker processes for the torture suite. Each is `node bin/rlm.mjs …` with an IPC channel: with
 * RLM_FAILPOINTS set, every failpoint hit arrives here as a beacon `{ fp, n }`, and faults (SIGKILL, SIGSTOP,
 * SIGTERM, a backend termination) are delivered on those events rather than after sleeps. The fault log of an
 * episode records every beacon that mattered and every fault, with its time, for the replay.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = fileURLToPath(new URL('../../bin/rlm.mjs', import.meta.url));

export interface Beacon {
  fp: string;
  n: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Every failpoint phase compiled into rlm (src/failpoints.ts callers). */
export const PHASES = [
  'claim.beforeUpdate',
  'claim.beforeCommit',
  'heartbeat.beforeRenew',
  'heartbeat.afterRenew',
  'effect.beforeCall',
  'effect.afterCall',
  'effect.afterJournal',
  'commit.beforeBegin',
  'commit.beforeCommit',
  'commit.afterCommit',
  'spawn.midChunk',
  'takeback.afterMarkDead',
  'stop.begin',
  'stop.release',
  'store.call',
  'snapshot.begin',
  'snapshot.end',
  'wal.beforeCheckpoint',
  'wal.afterCheckpoint',
] as const;
export type Phase = (typeof PHASES)[number];

/** Beacons a chaos worker reports by default: the commit path, effects, claims and take-backs. */
export const DEFAULT_BEACONS: readonly string[] = [
  'claim.beforeUpdate',
  'claim.beforeCommit',
  'commit.beforeBegin',
  'commit.beforeCommit',
  'commit.afterCommit',
  'effect.beforeCall',
  'effect.afterCall',
  'effect.afterJournal',
  'takeback.afterMarkDead',
  'stop.begin',
  'stop.release',
  'heartbeat.beforeRenew',
  'heartbeat.afterRenew',
  'spawn.midChunk',
];

/** Builds RLM_FAILPOINTS: the given rules, and a beacon for every other name in `beacons`. */
export function failpointSpec(rules: Record<string, string>, beacons: readonly string[] = DEFAULT_BEACONS): string {
  const parts = Object.entries(rules).map(([name, rule]) => `${name}=${rule}`);
  for (const name of beacons) if (!(name in rules)) parts.push(`${name}=beacon`);
  return parts.join(';');
}

export class FaultLog {
  readonly #started = performance.now();
  readonly lines: string[] = [];

  note(text: string): void {
    this.lines.push(`${(performance.now() - this.#started).toFixed(1).padStart(9)} ms  ${text}`);
  }

  toString(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

/** Something the harness counts per beacon, across every process of the suite. */
export type BeaconSink = (beacon: Beacon, proc: WorkerProcess) => void;

let sequence = 0;

/** One `rlm` process under the harness. */
export class WorkerProcess {
  readonly child: ChildProcess;
  readonly label: string;
  readonly args: readonly string[];
  readonly failpoints: string;
  readonly hits = new Map<string, number>();
  readonly exited: Promise<ExitInfo>;
  stdout = '';
  stderr = '';
  /** Signals the harness sent, in order. */
  readonly signals: NodeJS.Signals[] = [];
  /** What the harness's last SIGKILL interrupted, by the last beacons it had seen. */
  killContext: string | null = null;
  #exit: ExitInfo | null = null;
  readonly #listeners = new Set<(beacon: Beacon) => void>();
  readonly #log: FaultLog;

  constructor(
    args: readonly string[],
    options: { env?: Record<string, string>; failpoints?: string; label?: string; log: FaultLog; onBeacon?: BeaconSink; script?: string },
  ) {
    this.args = args;
    this.label = options.label ?? `p${++sequence}`;
    this.failpoints = options.failpoints ?? '';
    this.#log = options.log;
    const env: Record<string, string> = { ...(process.env as Record<string, string>), RLM_LOG_LEVEL: 'warn', ...options.env };
    if (this.failpoints) env.RLM_FAILPOINTS = this.failpoints;
    else delete env.RLM_FAILPOINTS;
    this.child = spawn(process.execPath, [options.script ?? BIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    this.child.stdout?.on('data', (d: Buffer) => {
      this.stdout += d.toString();
    });
    this.child.stderr?.on('data', (d: Buffer) => {
      if (this.stderr.length < 4_000_000) this.stderr += d.toString();
    });
    this.child.on('message', (message: unknown) => {
      const beacon = message as Partial<Beacon>;
      if (typeof beacon?.fp !== 'string' || typeof beacon.n !== 'number') return;
      this.hits.set(beacon.fp, Math.max(this.hits.get(beacon.fp) ?? 0, beacon.n));
      options.onBeacon?.(beacon as Beacon, this);
      for (const listener of [...this.#listeners]) listener(beacon as Beacon);
    });
    this.child.on('error', () => undefined);
    this.exited = new Promise<ExitInfo>((resolve) => {
      this.child.on('close', (code, signal) => {
        this.#exit = { code, signal, stdout: this.stdout, stderr: this.stderr };
        this.#listeners.clear();
        this.#log.note(`${this.label} exited ${signal ?? code}`);
        resolve(this.#exit);
      });
    });
    this.#log.note(`${this.label} started pid ${this.child.pid}: ${options.script ? 'node' : 'rlm'} ${args.map((a) => (a.length > 80 ? `${a.slice(0, 77)}...` : a)).join(' ')}${this.failpoints ? ` [${this.failpoints}]` : ''}`);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.#exit === null;
  }

  get exit(): ExitInfo | null {
    return this.#exit;
  }

  hitsOf(fp: string): number {
    return this.hits.get(fp) ?? 0;
  }

  /** Calls `listener` for every later beacon until the process exits; returns a function that stops it. */
  onBeacon(listener: (beacon: Beacon) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves with the beacon once `fp` reached its `n`-th hit (any later hit when `n` is omitted), or with null
   * when the process exits first.
   */
  waitFor(fp: string, n?: number): Promise<Beacon | null> {
    if (n !== undefined && this.hitsOf(fp) >= n) return Promise.resolve({ fp, n: this.hitsOf(fp) });
    if (!this.alive) return Promise.resolve(null);
    return new Promise((resolve) => {
      const stop = this.onBeacon((beacon) => {
        if (beacon.fp === fp && (n === undefined || beacon.n >= n)) {
          stop();
          resolve(beacon);
        }
      });
      void this.exited.then(() => {
        stop();
        resolve(null);
      });
    });
  }

  /** Resolves with the first beacon for which `predicate` holds, or null when the process exits first. */
  waitUntil(predicate: (beacon: Beacon) => boolean): Promise<Beacon | null> {
    if (!this.alive) return Promise.resolve(null);
    return new Promise((resolve) => {
      const stop = this.onBeacon((beacon) => {
        if (predicate(beacon)) {
          stop();
          resolve(beacon);
        }
      });
      void this.exited.then(() => {
        stop();
        resolve(null);
      });
    });
  }

  signal(signal: NodeJS.Signals, why = ''): boolean {
    if (!this.alive) return false;
    try {
      process.kill(this.pid, signal);
    } catch {
      return false;
    }
    this.signals.push(signal);
    if (signal === 'SIGKILL') this.killContext = this.#commitPosition();
    this.#log.note(`${this.label} <- ${signal}${why ? ` (${why})` : ''}`);
    return true;
  }

  /** Where the commit path was by the beacons seen so far: 'in-commit' between beforeCommit and afterCommit. */
  #commitPosition(): string {
    const before = this.hitsOf('commit.beforeCommit');
    const after = this.hitsOf('commit.afterCommit');
    return before > after ? 'in-commit' : 'outside';
  }

  /** The process ended by a SIGKILL (the harness's, a failpoint's or its own poison pill's). */
  get killed(): boolean {
    return this.#exit?.signal === 'SIGKILL';
  }

  /** Structured log lines of the process (pino JSON on stderr) whose message contains `text`. */
  logLines(text: string): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.stderr.split('\n')) {
      if (!line.startsWith('{') || !line.includes(text)) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // A line cut by the kill.
      }
    }
    return out;
  }
}

/** Resolves after `ms`: only ever the length of a fault (a freeze, a delay before a kill), never a wait for an event. */
export function faultDelay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves when every process has exited, or rejects after `ms` with what is still running (the episode's budget). */
export async function allExited(procs: readonly WorkerProcess[], ms: number): Promise<ExitInfo[]> {
  let timer: NodeJS.Timeout | undefined;
  const budget = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`budget of ${ms} ms passed with ${procs.filter((p) => p.alive).map((p) => p.label).join(', ')} still running`)), ms);
  });
  try {
    return await Promise.race([Promise.all(procs.map((p) => p.exited)), budget]);
  } finally {
    clearTimeout(timer);
  }
}
