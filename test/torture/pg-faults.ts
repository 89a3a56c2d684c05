/**
 * PostgreSQL faults (TORTURE.md §8.2 P1–P5): backend terminations at random and just before COMMIT, a proxy
 * that drops the reply to a COMMIT the server made, and — on a private cluster of its own (port 54329, a temp
 * directory, never the shared server) — immediate-mode server crashes and kill -9 of a backend. Only run when
 * the PostgreSQL store works.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import type { PgFaults, Round } from './chaos.js';
import { adminClient, type Episode, withDatabase } from './episode.js';
import { faultDelay, type WorkerProcess } from './harness.js';
import { PgProxy } from './pgproxy.js';
import type { Rng } from './random.js';

const run = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';

/** A PostgreSQL cluster of the suite's own, which it may crash at will. */
export class PrivateCluster {
  readonly dir: string;
  readonly port: number;
  #running = false;

  private constructor(dir: string, port: number) {
    this.dir = dir;
    this.port = port;
  }

  static available(): boolean {
    return existsSync(join(PG_BIN, 'initdb')) && process.getuid?.() === 0;
  }

  static async create(port = 54329): Promise<PrivateCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'rlm-torture-pg-'));
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    chownSync(dir, uid, gid);
    await run('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'initdb'), '-D', join(dir, 'data'), '--auth=trust', '-U', 'postgres', '-E', 'UTF8'], { timeout: 60_000 });
    const cluster = new PrivateCluster(dir, port);
    await cluster.start();
    return cluster;
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  async start(): Promise<void> {
    await run(
      'runuser',
      [
        '-u',
        'postgres',
        '--',
        join(PG_BIN, 'pg_ctl'),
        '-D',
        join(this.dir, 'data'),
        '-l',
        join(this.dir, 'server.log'),
        '-w',
        '-t',
        '60',
        '-o',
        `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c max_connections=200`,
        'start',
      ],
      { timeout: 70_000 },
    );
    this.#running = true;
  }

  /** A crash: every backend gone at once, WAL recovery on the next start. */
  async stopImmediate(): Promise<void> {
    await run('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), '-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop'], { timeout: 60_000 });
    this.#running = false;
  }

  async destroy(): Promise<void> {
    if (this.#running) {
      await run('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), '-D', join(this.dir, 'data'), '-m', 'fast', '-w', 'stop'], { timeout: 60_000 }).catch(() => undefined);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Terminates the rlm sessions of one database; returns how many. */
async function terminate(admin: pg.Client, database: string): Promise<number> {
  const rows = await admin.query(
    "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'rlm-worker%' AND pid <> pg_backend_pid()",
    [database],
  );
  return rows.rows.filter((row) => row.ok === true).length;
}

async function startWorkers(episode: Episode, count: number, options: { rules?: Record<string, string>; store?: string } = {}): Promise<WorkerProcess[]> {
  const first = episode.spawn({ label: 'w0', rules: options.rules, store: options.store });
  const procs = [first];
  if (count > 1) {
    await first.waitFor('claim.beforeUpdate', 1);
    for (let i = 1; i < count; i++) procs.push(episode.spawn({ label: `w${i}`, store: options.store }));
  }
  return procs;
}

function ended(procs: readonly WorkerProcess[]): boolean {
  return procs.some((p) => !p.killed && (p.exit?.code === 0 || p.exit?.code === 3));
}

/** The PostgreSQL rounds of a chaos episode; `cluster` adds server crashes and backend kills. */
export function pgFaults(serverUrl: string, cluster: PrivateCluster | null): PgFaults {
  const rounds: Round[] = ['pgTerminate', 'pgInCommit', 'pgProxy'];
  if (cluster) rounds.push('pgRestart', 'pgBackendKill');
  return {
    rounds,
    async run(round, episode, rng: Rng) {
      const r = episode.env.report;
      const database = episode.backend.database as string;
      const admin = await adminClient(serverUrl);
      try {
        switch (round) {
          case 'pgTerminate': {
            // P1: a storm of terminations timed to commits.
            const procs = await startWorkers(episode, rng.int(1, 3));
            const every = rng.int(2, 6);
            let storms = rng.int(1, 4);
            let seen = 0;
            const pending: Promise<void>[] = [];
            for (const p of procs) {
              p.onBeacon((beacon) => {
                if (beacon.fp !== 'commit.afterCommit' || storms <= 0 || ++seen % every !== 0) return;
                storms--;
                pending.push(
                  terminate(admin, database).then((n) => {
                    r.postgres.terminateBackend += n;
                    episode.log.note(`P1: terminated ${n} backends`);
                  }),
                );
              });
            }
            await episode.settle(procs);
            await Promise.all(pending);
            return ended(procs);
          }
          case 'pgInCommit': {
            // P2: from its n-th commit on, the worker holds still just before COMMIT; at a few of those moments its
            // sessions are terminated, so the COMMIT goes out on a dead connection.
            const n = rng.int(1, 4);
            const procs = await startWorkers(episode, 1, { rules: { 'commit.beforeCommit': `sleep(40)@${n}+` } });
            const proc = procs[0] as WorkerProcess;
            let times = rng.int(2, 4);
            let at = n;
            const pending: Promise<void>[] = [];
            proc.onBeacon((beacon) => {
              if (beacon.fp !== 'commit.beforeCommit' || beacon.n < at || times <= 0) return;
              times--;
              at = beacon.n + rng.int(1, 3);
              pending.push(
                terminate(admin, database).then((killed) => {
                  r.postgres.terminateBackend += killed;
                  if (killed > 0) r.postgres.inCommit++;
                  episode.log.note(`P2: terminated ${killed} backends at COMMIT ${beacon.n}`);
                }),
              );
            });
            // The sleeps would slow every later commit: end the worker once the terminations are made.
            const last = await proc.waitUntil(() => times <= 0);
            await Promise.all(pending);
            if (last) proc.signal('SIGKILL', 'P2 done');
            await episode.settle(procs);
            return ended(procs);
          }
          case 'pgProxy': {
            // P3: the server commits, the reply is lost; the worker must find its commit marker.
            let budget = rng.int(1, 4);
            const p = rng.pick([0.1, 0.3, 0.6]);
            const upstream = new URL(serverUrl);
            const proxy = new PgProxy({
              host: upstream.hostname,
              port: Number(upstream.port || 5432),
              dropCommit: () => budget > 0 && rng.chance(p) && budget-- > 0,
              onDrop: () => {
                r.postgres.proxyAckDrops++;
                episode.log.note('P3: dropped the reply to a COMMIT');
              },
            });
            const port = await proxy.listen();
            const viaProxy = new URL(episode.backend.url);
            viaProxy.port = String(port);
            try {
              const procs = await startWorkers(episode, rng.int(1, 2), { store: viaProxy.toString() });
              await episode.settle(procs);
              return ended(procs);
            } finally {
              await proxy.close();
            }
          }
          case 'pgRestart': {
            // P4: the server crashes (immediate mode) and comes back; workers reconnect.
            if (!cluster) return false;
            const procs = await startWorkers(episode, rng.int(1, 3));
            const n = rng.int(1, 3);
            const fired = await Promise.race(procs.map((proc) => proc.waitFor('commit.afterCommit', n)));
            if (fired) {
              await cluster.stopImmediate();
              r.postgres.immediateRestarts++;
              episode.log.note('P4: server stopped in immediate mode');
              await faultDelay(rng.int(100, 800));
              await cluster.start();
              episode.log.note('P4: server started again');
            }
            await episode.settle(procs);
            return ended(procs);
          }
          case 'pgBackendKill': {
            // P5: kill -9 of one backend: the postmaster ends every session and recovers.
            if (!cluster) return false;
            const procs = await startWorkers(episode, rng.int(1, 2));
            const fired = await Promise.race(procs.map((proc) => proc.waitFor('commit.afterCommit', rng.int(1, 6))));
            if (fired) {
              const rows = await admin.query("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'rlm-worker%'", [database]);
              const pid = Number(rows.rows[0]?.pid ?? 0);
              if (pid > 0) {
                try {
                  process.kill(pid, 'SIGKILL');
                  r.postgres.backendKill9++;
                  episode.log.note(`P5: kill -9 of backend ${pid}`);
                } catch {
                  // Gone already.
                }
              }
            }
            await episode.settle(procs);
            return ended(procs);
          }
          default:
            throw new Error(`not a PostgreSQL round: ${round}`);
        }
      } finally {
        await admin.end().catch(() => undefined);
      }
    },
  };
}

/** Creates (once) a migrated template database, so each episode's database is a quick copy. */
export async function templateDatabase(serverUrl: string, name: string): Promise<string> {
  const { PostgresStore } = await import('../../src/store/postgres/postgres-store.js');
  for (let attempt = 1; ; attempt++) {
    try {
      const admin = await adminClient(serverUrl);
      try {
        await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        await admin.query(`CREATE DATABASE "${name}"`);
      } finally {
        await admin.end().catch(() => undefined);
      }
      const store = new PostgresStore({ connectionString: withDatabase(serverUrl, name), poolSize: 1 });
      try {
        await store.migrate();
      } finally {
        await store.close();
      }
      return name;
    } catch (error) {
      // Other test files on a shared server terminate every 'rlm%' session now and then.
      if (attempt >= 4) throw error;
      await faultDelay(200 * attempt);
    }
  }
}
