/**
 * Failpoints: named places in rlm where a test can crash, freeze or fail the process on purpose.
 * Inert unless RLM_FAILPOINTS names them, e.g. `RLM_FAILPOINTS="commit.beforeCommit=kill@7;effect.afterCall=stop"`:
 * - `kill`: SIGKILL this process at that line (a real kill -9)
 * - `stop`: SIGSTOP this process (a deterministic zombie)
 * - `throw(CODE)`: throw an error whose `code` is CODE (an injected store error such as SQLITE_IOERR)
 * - `sleep(MS)`: block the thread for MS milliseconds
 * - `beacon`: only report the hit
 * `@N` fires on the N-th hit only; `@N+` on the N-th and every later one. Every hit of a named failpoint is
 * reported to a parent process over IPC as `{ fp, n }` when there is one, so tests time faults to events.
 */

type Action = { kind: 'kill' } | { kind: 'stop' } | { kind: 'throw'; code: string } | { kind: 'sleep'; ms: number } | { kind: 'beacon' };

interface Rule {
  action: Action;
  at: number | null;
  onward: boolean;
}

const rules = new Map<string, Rule>();
const hits = new Map<string, number>();

function parseAction(text: string): Action {
  if (text === 'kill' || text === 'stop' || text === 'beacon') return { kind: text };
  const call = /^(throw|sleep)\((.*)\)$/.exec(text);
  if (call?.[1] === 'throw') return { kind: 'throw', code: call[2] || 'SQLITE_IOERR' };
  if (call?.[1] === 'sleep') return { kind: 'sleep', ms: Number(call[2]) || 0 };
  throw new Error(`RLM_FAILPOINTS: unknown action \`${text}\`; use kill, stop, throw(CODE), sleep(MS) or beacon.`);
}

/** @internal Parses a failpoint specification; replaces the current rules. */
export function configureFailpoints(spec: string | undefined): void {
  rules.clear();
  hits.clear();
  for (const part of (spec ?? '').split(/[;,]/)) {
    const trimmed = part.trim();
    if (!trimmed) continue;
    const match = /^([\w.-]+)=([^@]+)(?:@(\d+)(\+)?)?$/.exec(trimmed);
    if (!match?.[1] || !match[2]) throw new Error(`RLM_FAILPOINTS: cannot read \`${trimmed}\`; expected name=action[@N[+]].`);
    rules.set(match[1], { action: parseAction(match[2]), at: match[3] ? Number(match[3]) : null, onward: match[4] === '+' });
  }
  failpoints.active = rules.size > 0;
}

/**
 * @internal Sends a hit to the parent process over IPC, when there is one; `then` runs once it is on its way.
 * The parent is told before the action, so a kill at a failpoint is still counted.
 */
export function reportBeacon(beacon: { fp: string; n: number }, then?: () => void): void {
  if (process.send && process.connected) {
    try {
      process.send(beacon, undefined, {}, () => then?.());
      return;
    } catch {
      // The parent is gone; the failpoint still fires.
    }
  }
  then?.();
}

/** @internal */
export const failpoints = {
  /** False unless RLM_FAILPOINTS names at least one failpoint: callers test it before calling `hit`. */
  active: false,
  /**
   * Set on a thread that has no IPC channel of its own (the SQLite store thread): hands each hit to the main
   * thread, which reports it. `wait` when a kill or a stop follows: the relay returns once the beacon is sent.
   */
  relay: undefined as ((beacon: { fp: string; n: number }, wait: boolean) => void) | undefined,
  hit(name: string): void {
    const rule = rules.get(name);
    if (!rule) return;
    const n = (hits.get(name) ?? 0) + 1;
    hits.set(name, n);
    const fires = rule.at === null || (rule.onward ? n >= rule.at : n === rule.at);
    const action = rule.action;
    if (failpoints.relay) failpoints.relay({ fp: name, n }, fires && (action.kind === 'kill' || action.kind === 'stop'));
    else reportBeacon({ fp: name, n });
    if (!fires) return;
    switch (action.kind) {
      case 'kill':
        process.kill(process.pid, 'SIGKILL');
        // SIGKILL is delivered asynchronously; block until it lands so no further line runs.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000);
        return;
      case 'stop':
        process.kill(process.pid, 'SIGSTOP');
        // The stop reaches every thread of the process a moment later: a thread that sent it could otherwise go
        // on past this line (into a write transaction, say) before it lands. The wait's clock runs while stopped.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
        return;
      case 'throw': {
        const error = new Error(`Injected failure at failpoint ${name}: ${action.code}`) as Error & { code: string };
        error.code = action.code;
        throw error;
      }
      case 'sleep':
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, action.ms);
        return;
      case 'beacon':
        return;
    }
  },
  /** How often each failpoint was hit in this process. */
  counts(): Record<string, number> {
    return Object.fromEntries(hits);
  },
};

configureFailpoints(process.env.RLM_FAILPOINTS);
