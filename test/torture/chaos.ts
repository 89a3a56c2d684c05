/**
 * Chaos episodes (TORTURE.md §8.2): a seeded workload run by 1–3 real worker processes through rounds of faults —
 * random and failpoint SIGKILLs (K1–K5), zombies frozen outside and inside a write transaction (Z1, Z3), an event
 * loop blocked past the lease (Z2), graceful stops (G1), faults during recovery (X1), snapshots and checkpoints
 * killed half-way, WAL-tail truncation after a kill (D1), and on PostgreSQL backend terminations, lost COMMIT
 * replies and server restarts (pg-faults.ts) — then a quiet completion and every invariant.
 */
import { closeSync, existsSync, openSync, readSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { auditSqlite, check } from './checker.js';
import { type Backend, Episode, type EpisodeEnv, tail } from './episode.js';
import { faultDelay, type WorkerProcess } from './harness.js';
import type { Rng } from './random.js';
import { Rng as Random } from './random.js';
import { generateWorkload, type Poison, type WorkloadOptions } from './workload.js';

const CHECKPOINTER = join(import.meta.dirname, 'checkpointer.mjs');

export type Round =
  | 'random'
  | 'fpCommit'
  | 'fpEffect'
  | 'fpClaim'
  | 'fpMisc'
  | 'allAtOnce'
  | 'zombieStop'
  | 'zombieTxn'
  | 'zombieBusy'
  | 'graceful'
  | 'recovery'
  | 'snapshot'
  | 'checkpoint'
  | 'pgTerminate'
  | 'pgInCommit'
  | 'pgProxy'
  | 'pgRestart'
  | 'pgBackendKill';

/** Faults only a PostgreSQL episode can take; supplied by pg-faults.ts. */
export interface PgFaults {
  /** Rounds this server supports (a private cluster supports restarts and backend kills). */
  rounds: Round[];
  run(round: Round, episode: Episode, rng: Rng): Promise<boolean>;
}

export interface ChaosOptions {
  backend: Backend;
  pg?: PgFaults;
  /** Rounds of faults (drawn when omitted). */
  rounds?: number;
  /** Workload size bounds. */
  minSize?: number;
  maxSize?: number;
  /** Force some rounds first (episodes that must cover a fault). */
  force?: Round[];
  /** Rounds that may end the run, after the kill rounds (one is drawn; all drawn from these). */
  finish?: Round[];
  /** I10: re-run the finished run and require that nothing runs (costs one process). */
  rerun?: boolean;
  /** Kill rounds fault every worker they start, not only some. */
  killAll?: boolean;
}

function drawWorkload(rng: Rng, options: ChaosOptions, force: readonly Round[]): WorkloadOptions {
  const shape = force.includes('zombieBusy') ? 'tree' : rng.weighted<WorkloadOptions['shape']>([['tree', 6], ['dag', 3.5], ['fanout', 0.5]]);
  const min = options.minSize ?? 40;
  const max = options.maxSize ?? 1200;
  const size = Math.round(Math.exp(Math.log(min) + rng.next() * (Math.log(max) - Math.log(min))));
  const poisons: Partial<Record<Poison, number>> = {};
  if (shape !== 'fanout' && rng.chance(0.55)) {
    if (rng.chance(0.3)) poisons.throw = 1;
    if (rng.chance(0.2)) poisons.nonretry = 1;
    if (rng.chance(0.2)) poisons.crash = 1;
    if (rng.chance(0.2)) poisons.nonserial = 1;
    if (rng.chance(0.3)) poisons.invalidChild = rng.int(1, 2);
    if (rng.chance(0.3)) poisons.cycle = 1;
    if (rng.chance(0.3)) poisons.flaky = rng.int(1, 2);
  }
  if (force.includes('zombieBusy')) poisons.hang = 1;
  const combine = shape === 'fanout' ? rng.chance(0.5) : rng.chance(0.7);
  return {
    shape,
    size,
    keyed: shape === 'tree' ? rng.chance(0.3) : undefined,
    combine,
    passDead: rng.chance(0.5),
    poisons,
    effects: rng.chance(0.8),
    delays: rng.chance(0.4),
    pads: rng.chance(0.3),
    streams: rng.chance(0.3),
    depthLimit: shape === 'tree' && rng.chance(0.2),
    fanout: rng.int(1100, 2600),
    maxChildren: 100,
    hangMs: 1_900,
    // Flaky nodes fail their first attempt; a few harness kills may be blamed on them too.
    maxAttempts: poisons.flaky ? 5 : 3,
  };
}

function drawFlags(rng: Rng, backend: Backend): string[] {
  const commitEvery = rng.pick([1, 4, 16, 100, 1000]);
  return [
    '--lease-ms',
    '600',
    '--heartbeat-ms',
    '150',
    '--commit-every',
    String(commitEvery),
    '--commit-ms',
    String(rng.pick([2, 10, 50])),
    '--concurrency',
    String(rng.pick(backend.kind === 'postgres' ? [2, 4, 8] : [1, 4, 8])),
    '--grace-ms',
    '1500',
  ];
}

/** A round that kills a worker early in its life (there is always work left for the next one). */
function drawKillRound(rng: Rng, episode: Episode, lastKilled: boolean): Round {
  const effects = Object.values(episode.spec.nodes).some((n) => n.e > 0);
  return rng.weighted<Round>([
    ['random', 3],
    ['fpCommit', 3],
    ['fpEffect', effects ? 2 : 0],
    ['fpClaim', 1],
    ['fpMisc', 1.2],
    ['allAtOnce', 1.2],
    ['recovery', lastKilled ? 1.5 : 0],
  ]);
}

/** A round that may let the run finish: zombies, graceful stops, snapshots, checkpoints, PostgreSQL faults. */
function drawFinishRound(rng: Rng, episode: Episode, options: ChaosOptions): Round {
  const sqlite = episode.backend.kind === 'sqlite';
  const choices: [Round, number][] = [
    ['zombieStop', 3],
    ['zombieTxn', 1],
    ['graceful', 1.2],
    ['snapshot', sqlite ? 0.8 : 0],
    ['checkpoint', sqlite ? 0.8 : 0],
    ['random', 1],
  ];
  for (const round of options.pg?.rounds ?? []) choices.push([round, round === 'pgRestart' || round === 'pgBackendKill' ? 0.5 : 2.5]);
  return rng.weighted(choices);
}

/** Kills `proc` `delayMs` after its `n`-th `fp` beacon (0 = in the same tick). Resolves whether it killed. */
async function killOnBeacon(proc: WorkerProcess, fp: string, n: number, delayMs: number, why: string): Promise<boolean> {
  const beacon = await proc.waitFor(fp, n);
  if (!beacon) return false;
  if (delayMs > 0) await faultDelay(delayMs);
  return proc.signal('SIGKILL', why);
}

/** Starts `count` workers; the first creates the run, the others join once its first claim shows the run exists. */
async function startWorkers(episode: Episode, count: number, rulesFor: (i: number) => Record<string, string> | undefined): Promise<WorkerProcess[]> {
  const first = episode.spawn({ rules: rulesFor(0), label: 'w0' });
  const procs = [first];
  if (count > 1) {
    await first.waitFor('claim.beforeUpdate', 1);
    for (let i = 1; i < count; i++) procs.push(episode.spawn({ rules: rulesFor(i), label: `w${i}` }));
  }
  return procs;
}

function ended(procs: readonly WorkerProcess[]): boolean {
  return procs.some((p) => !p.killed && (p.exit?.code === 0 || p.exit?.code === 3));
}

/** Cuts the tail of the SQLite -wal file after every writer was killed: the power-loss stand-in (D1). */
function truncateWal(dbPath: string, rng: Rng, episode: Episode): boolean {
  const wal = `${dbPath}-wal`;
  if (!existsSync(wal)) return false;
  const size = statSync(wal).size;
  if (size <= 32) return false;
  const header = Buffer.alloc(32);
  const fd = openSync(wal, 'r+');
  try {
    readSync(fd, header, 0, 32, 0);
    const pageSize = header.readUInt32BE(8) || 4096;
    const frame = 24 + pageSize;
    const frames = Math.floor((size - 32) / frame);
    const variant = rng.pick(['frame', 'mid', 'garbage'] as const);
    if (variant === 'frame' && frames > 0) {
      const cut = 32 + rng.int(0, frames - 1) * frame;
      truncateSync(wal, cut);
      episode.log.note(`D1: cut the WAL at frame boundary ${cut} of ${size} bytes`);
    } else if (variant === 'mid') {
      const cut = rng.int(33, size - 1);
      truncateSync(wal, cut);
      episode.log.note(`D1: cut the WAL mid-frame at ${cut} of ${size} bytes`);
    } else {
      const length = Math.min(size - 32, rng.int(1, 3 * frame));
      const junk = Buffer.alloc(length);
      for (let i = 0; i < length; i++) junk[i] = rng.int(0, 255);
      writeSync(fd, junk, 0, length, size - length);
      episode.log.note(`D1: overwrote the last ${length} bytes of the ${size}-byte WAL with random bytes`);
    }
  } finally {
    closeSync(fd);
  }
  if (rng.chance(0.5)) rmSync(`${dbPath}-shm`, { force: true });
  return true;
}

/**
 * One round of faults. Resolves whether the run ended in it (nothing left to torture). A round that is not the
 * episode's last (`last` false) ends its surviving workers with SIGKILL once its own fault has played out, so the
 * run still has work for the rounds after it.
 */
async function round(kind: Round, episode: Episode, rng: Rng, options: ChaosOptions, last = true): Promise<boolean> {
  const r = episode.env.report;
  const workers = rng.int(1, 3);
  switch (kind) {
    case 'random': {
      const procs = await startWorkers(episode, workers, () => undefined);
      await Promise.all(
        procs.map(async (proc, i) => {
          if (i > 0 && !options.killAll && rng.chance(0.4)) return;
          if (rng.chance(0.6)) {
            // Exponential after a commit beacon: often lands inside COMMIT, or in the native write.
            const delay = rng.chance(0.5) ? 0 : Math.min(3, Math.floor(rng.exponential(1)));
            await killOnBeacon(proc, 'commit.beforeCommit', rng.int(1, 3), delay, 'random, after a commit beacon');
          } else {
            const started = await proc.waitFor('claim.beforeCommit', 1);
            if (!started) return;
            await faultDelay(rng.int(0, 250));
            proc.signal('SIGKILL', 'random instant');
          }
        }),
      );
      await episode.settle(procs);
      return ended(procs);
    }
    case 'fpCommit':
    case 'fpEffect':
    case 'fpClaim':
    case 'fpMisc': {
      const phases: Record<string, [string, number][]> = {
        fpCommit: [
          ['commit.beforeCommit', 3],
          ['commit.afterCommit', 2],
          ['commit.beforeBegin', 2],
        ],
        fpEffect: [
          ['effect.afterCall', 3],
          ['effect.beforeCall', 3],
          ['effect.afterJournal', 3],
        ],
        fpClaim: [
          ['claim.beforeUpdate', 2],
          ['claim.beforeCommit', 2],
        ],
        fpMisc: [
          ['store.call', 6],
          ['heartbeat.beforeRenew', 2],
          ['heartbeat.afterRenew', 2],
          ['stop.release', 1],
        ],
      };
      const choices = phases[kind] as [string, number][];
      const procs = await startWorkers(episode, workers, (i) => {
        if (i > 0 && !options.killAll && rng.chance(0.5)) return undefined;
        const [phase, most] = rng.pick(choices);
        return { [phase]: `kill@${rng.int(1, most)}` };
      });
      await episode.settle(procs);
      return ended(procs);
    }
    case 'allAtOnce': {
      const procs = await startWorkers(episode, Math.max(2, workers), () => undefined);
      const target = rng.int(1, 3);
      const fired = await Promise.race(procs.map((p) => p.waitFor('commit.afterCommit', target)));
      if (fired) for (const p of procs) if (p.signal('SIGKILL', 'all at once')) episode.tag(p, 'allAtOnce');
      await episode.settle(procs);
      return ended(procs);
    }
    case 'zombieStop': {
      // Z1: one or two workers freeze holding finished steps; another waits out their lease and takes their nodes
      // over; they wake up, and every write they had in hand must be fenced.
      const count = rng.int(1, 2);
      const zombies: { proc: WorkerProcess; inCommit: boolean }[] = [];
      for (let i = 0; i < count; i++) {
        // Frozen at the start of a commit, it holds no lock; a freeze at an arbitrary instant may hold the write
        // lock (SQLite) or a row lock (PostgreSQL: others wait for idle_in_transaction_session_timeout, 60 s).
        const inCommit = episode.backend.kind === 'postgres' || rng.chance(0.85);
        const n = rng.int(1, 4);
        const a = episode.spawn({ label: `zombie${i}`, rules: inCommit ? { 'commit.beforeBegin': `stop@${n}` } : undefined });
        const frozen = inCommit ? (await a.waitFor('commit.beforeBegin', n)) !== null : (await a.waitFor('commit.afterCommit', n)) !== null && a.signal('SIGSTOP', 'freeze past the lease');
        if (frozen) {
          r.zombies.sigstop++;
          zombies.push({ proc: a, inCommit });
        } else {
          await episode.settle([a]);
          if (ended([a])) return true;
        }
      }
      if (zombies.length === 0) return false;
      const b = episode.spawn({ label: 'taker' });
      // The taker declares each frozen worker dead once its lease is over (polled in the store: no process says so).
      const dead = await Promise.all(zombies.map((z) => episode.declaredDead(z.proc.pid, b.exited)));
      episode.log.note(`frozen workers declared dead: ${dead.join(', ')}`);
      if (rng.chance(0.5) && b.alive) await faultDelay(rng.int(0, 200));
      // A zombie frozen inside a commit goes on with it when woken: that commit is a zombie commit, to be fenced.
      const fenced = zombies.map((z, i) => (z.inCommit && dead[i] ? z.proc.waitFor('commit.afterCommit', z.proc.hitsOf('commit.afterCommit') + 1) : Promise.resolve(null)));
      for (const z of zombies) z.proc.signal('SIGCONT', 'wake the zombie');
      for (const beacon of await Promise.all(fenced)) if (beacon) r.zombies.commitsAttempted++;
      if (!last) {
        await Promise.all(zombies.map((z) => z.proc.waitUntil((beacon) => beacon.fp === 'commit.afterCommit' || beacon.fp === 'claim.beforeCommit')));
        for (const p of [...zombies.map((z) => z.proc), b]) p.signal('SIGKILL', 'the zombie round is over');
      }
      await episode.settle([...zombies.map((z) => z.proc), b]);
      for (const z of zombies) {
        const rejected = z.proc.logLines('Step writes were rejected');
        r.zombies.opsRejected += rejected.reduce((sum, line) => sum + Number(line.count ?? 0), 0);
        if (!z.inCommit) r.zombies.commitsAttempted += rejected.length;
      }
      return ended([...zombies.map((z) => z.proc), b]);
    }
    case 'zombieTxn': {
      // Z3: A freezes inside its write transaction (SQLite: holding the file's write lock).
      const n = rng.int(1, 5);
      const a = episode.spawn({ label: 'locker', rules: { 'commit.beforeCommit': `stop@${n}` } });
      if (!(await a.waitFor('commit.beforeCommit', n))) {
        await episode.settle([a]);
        return ended([a]);
      }
      r.zombies.sigstop++;
      r.zombies.inTransactionStops++;
      const b = episode.spawn({ label: 'blocked', beacons: ['store.call', 'commit.beforeCommit', 'commit.afterCommit', 'takeback.afterMarkDead'] });
      await b.waitFor('store.call', 1);
      await faultDelay(rng.int(50, 400));
      if (rng.chance(0.3)) a.signal('SIGKILL', 'kill the lock holder');
      else a.signal('SIGCONT', 'release the lock holder');
      if (!last) {
        // The blocked worker gets the lock and commits; then the round ends.
        await b.waitFor('commit.afterCommit', 1);
        for (const p of [a, b]) p.signal('SIGKILL', 'the lock round is over');
      }
      await episode.settle([a, b]);
      const rejected = a.logLines('Step writes were rejected');
      r.zombies.commitsAttempted += rejected.length;
      r.zombies.opsRejected += rejected.reduce((sum, line) => sum + Number(line.count ?? 0), 0);
      return ended([a, b]);
    }
    case 'zombieBusy': {
      // Z2: a handler blocks the event loop for 3× the lease on its first-ever attempt; a second worker takes over.
      const procs = await startWorkers(episode, 2, () => undefined);
      await episode.settle(procs);
      for (const p of procs) {
        const rejected = p.logLines('Step writes were rejected');
        r.zombies.commitsAttempted += rejected.length;
        r.zombies.opsRejected += rejected.reduce((sum, line) => sum + Number(line.count ?? 0), 0);
      }
      return ended(procs);
    }
    case 'graceful': {
      const procs = await startWorkers(episode, workers, () => undefined);
      const victim = rng.pick(procs);
      const twice = rng.chance(0.3);
      if (await victim.waitFor('commit.afterCommit', rng.int(1, 3))) {
        victim.signal('SIGTERM', 'graceful stop');
        if (twice && (await victim.waitFor('stop.begin', 1))) victim.signal('SIGTERM', 'second signal');
      }
      if (!last) {
        await victim.exited;
        for (const p of procs) p.signal('SIGKILL', 'the graceful round is over');
      }
      await episode.settle(procs);
      const code = victim.exit?.code;
      if (victim.signals.includes('SIGTERM') && !victim.killed) {
        if (code === 143) {
          r.gracefulStops++;
          // G1: a graceful stop hands every lease back; alone, it leaves nothing running.
          if (procs.length === 1) {
            const left = (await episode.backend.audit(episode.runId)).nodes.filter((n) => n.state === 'running');
            if (left.length > 0) episode.problems.push(`G1 a graceful stop left ${left.length} nodes running (${left.slice(0, 3).map((n) => n.key).join(' ')})`);
          }
        } else if (code !== 0 && code !== 3) episode.problems.push(`G1 a SIGTERM'd worker exited ${code}: ${tail(victim.exit?.stderr ?? '')}`);
      }
      return ended(procs.filter((p) => p !== victim || !p.signals.includes('SIGTERM')));
    }
    case 'recovery': {
      // X1: the resume itself is killed during its recovery: the take-back, its first claim or its first commit.
      const [phase, n] = rng.pick([
        ['takeback.afterMarkDead', 1],
        ['claim.beforeCommit', 1],
        ['commit.beforeCommit', 1],
        ['commit.afterCommit', 1],
      ] as const);
      const proc = episode.spawn({ label: 'recovering', rules: { [phase]: `kill@${n}` } });
      episode.tag(proc, 'recovery');
      await episode.settle([proc]);
      return ended([proc]);
    }
    case 'snapshot': {
      const procs = await startWorkers(episode, 1, () => undefined);
      if (await procs[0]?.waitFor('commit.afterCommit', rng.int(1, 4))) {
        const file = join(episode.env.dir, `snapshot-${episode.procs.length}.db`);
        const kill = rng.chance(0.5) ? { [rng.pick(['snapshot.begin', 'snapshot.end'])]: 'kill@1' } : undefined;
        const snap = episode.command(['snapshot', episode.runId, file], { rules: kill, beacons: ['snapshot.begin', 'snapshot.end'], label: 'snapshot' });
        await episode.settle([snap]);
        if (snap.exit?.code === 0 || (snap.killed && snap.hitsOf('snapshot.end') > 0)) snapshots.set(episode, [...(snapshots.get(episode) ?? []), file]);
        else if (!snap.killed) episode.problems.push(`snapshot exited ${snap.exit?.code}: ${tail(snap.exit?.stderr ?? '')}`);
      }
      await episode.settle(procs);
      return ended(procs);
    }
    case 'checkpoint': {
      const procs = await startWorkers(episode, workers, () => undefined);
      const rule = rng.chance(0.7) ? { [rng.pick(['wal.beforeCheckpoint', 'wal.afterCheckpoint'])]: `kill@${rng.int(1, 30)}` } : {};
      const checkpointer = episode.command([episode.backend.dbPath as string], {
        script: CHECKPOINTER,
        rules: rule,
        beacons: ['wal.beforeCheckpoint', 'wal.afterCheckpoint'],
        label: 'checkpointer',
      });
      await Promise.all(procs.map((p) => p.exited));
      checkpointer.signal('SIGKILL', 'workers are done');
      await episode.settle([...procs, checkpointer]);
      if (!checkpointer.killed && checkpointer.exit?.code !== 0) episode.problems.push(`the checkpointer failed: ${tail(checkpointer.exit?.stderr ?? '')}`);
      return ended(procs);
    }
    default: {
      if (!options.pg) throw new Error(`round ${kind} needs PostgreSQL`);
      return options.pg.run(kind, episode, rng);
    }
  }
}

/** Snapshot files written during an episode, checked at its end. */
const snapshots = new WeakMap<Episode, string[]>();

/** Runs one chaos episode end to end. Resolves with its problems (empty when sound). */
export async function chaosEpisode(env: EpisodeEnv, options: ChaosOptions): Promise<string[]> {
  const rng = new Random(env.seed);
  const force = options.force ?? [];
  const workload = drawWorkload(rng.fork('workload'), options, force);
  const spec = generateWorkload(rng.fork('spec'), workload);
  const episode = new Episode(env, options.backend, spec, drawFlags(rng.fork('flags'), options.backend));
  const faults = rng.fork('faults');
  let failed = true;
  try {
    episode.log.note(`workload ${spec.shape} of ${Object.keys(spec.nodes).length} nodes, combine ${spec.combine}, keyed ${spec.keyed}, flags ${episode.flags.join(' ')}`);
    await episode.quiet();
    // Forced rounds first, then rounds that kill early, then one that may let the run finish.
    const kills = options.rounds ?? faults.int(2, 5);
    const plan: Round[] = [...force];
    let lastKilled = false;
    for (let i = 0; i < kills + 1 + force.length && !episode.overBudget; i++) {
      const kind =
        plan[i] ??
        (i < kills + force.length
          ? drawKillRound(faults, episode, lastKilled)
          : options.finish
            ? faults.pick(options.finish)
            : drawFinishRound(faults, episode, options));
      episode.log.note(`round ${i}: ${kind}`);
      const before = episode.procs.length;
      const finished = await round(kind, episode, faults, options, i === kills + force.length);
      const roundProcs = episode.procs.slice(before);
      lastKilled = roundProcs.length > 0 && roundProcs.every((p) => p.killed);
      await episode.checkCommitSeq();
      if (lastKilled && episode.backend.kind === 'sqlite' && faults.chance(0.6)) {
        if (truncateWal(episode.backend.dbPath as string, faults, episode)) {
          env.report.storage.walTruncations++;
          episode.lostCommitsOnPurpose = true;
        }
      }
      if (finished) break;
    }
    if (spec.nodes[spec.root] && Object.values(spec.nodes).some((n) => n.p === 'hang')) {
      env.report.zombies.eventLoopBlocks++;
    }
    await episode.complete();
    const result = await episode.verify({ rerun: options.rerun ?? true });
    const problems = result.problems;
    for (const file of snapshots.get(episode) ?? []) {
      problems.push(...(await checkSnapshot(episode, file)));
    }
    failed = problems.length > 0;
    return problems;
  } finally {
    await episode.close(failed);
  }
}

/** A snapshot taken mid-run must open, pass integrity_check, and resume to the exact result on its own. */
async function checkSnapshot(episode: Episode, file: string): Promise<string[]> {
  if (!existsSync(file)) return [];
  episode.env.report.storage.snapshotsChecked++;
  const problems: string[] = [];
  const wantCode = episode.expected.dead > 0 || episode.expected.runState !== 'completed' ? 3 : 0;
  const store = `sqlite:${file}`;
  let redrives = 0;
  for (let attempt = 0; attempt < 20; attempt++) {
    const proc = episode.command(['run', episode.modulePath, '--run', episode.runId, ...episode.flags], { label: 'from-snapshot', store });
    await episode.settle([proc]);
    if (proc.killed) continue;
    if (proc.exit?.code === 4) {
      await episode.settle([episode.command(['approve', episode.runId, '--all'], { store })]);
      continue;
    }
    if (proc.exit?.code === 3 && wantCode === 0 && redrives < 3) {
      // The snapshot may hold a node blamed for a crash the harness caused, which the main run redrove later
      // (Episode.quiet): redrive it here too.
      const blamed = check(auditSqlite(file, episode.runId), episode.expected, episode.checkOptions()).falseBlames;
      if (blamed.length > 0) {
        redrives++;
        await episode.settle([episode.command(['dlq', 'retry', episode.runId, ...blamed.map(String)], { store })]);
        continue;
      }
    }
    if (proc.exit?.code !== wantCode) {
      problems.push(`resuming from snapshot ${file} exited ${proc.exit?.code}: ${tail(proc.exit?.stderr ?? '')}`);
      return problems;
    }
    const result = check(auditSqlite(file, episode.runId), episode.expected, episode.checkOptions());
    for (const p of result.problems) problems.push(`snapshot: ${p}`);
    return problems;
  }
  problems.push(`resuming from snapshot ${file} did not end`);
  return problems;
}
