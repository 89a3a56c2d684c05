import type { GroupGrant, GroupRequest, Store } from '../store/store.js';

/** A group's limits with its defaults applied: null is unbounded. */
export interface ResolvedGroupLimits {
  concurrency: number | null;
  perSecond: number | null;
  burst: number;
}

/** What a gate needs of a node: its run and the group its steps count against. */
export interface GroupedNode {
  readonly runId: string;
  group?: string | null;
}

interface Gate<N> {
  readonly runId: string;
  readonly group: string;
  readonly limits: ResolvedGroupLimits;
  /** Slots this worker holds in the store (with no concurrency limit: unused). */
  held: number;
  running: number;
  /** Tokens granted and not spent yet. */
  tokens: number;
  readonly queue: N[];
  asking: boolean;
  timer: NodeJS.Timeout | null;
  /** Lets go of the slots once the group has stayed idle here a moment, so other workers get them. */
  idleTimer: NodeJS.Timeout | null;
  /** When a step of the group last started here. */
  usedAt: number;
}

export interface GroupGatesOptions<N> {
  store: Store;
  /** The worker's id (a worker that rejoins gets another). */
  workerId(): string;
  leaseMs: number;
  /** How long a worker waits to ask again for slots that other workers hold. */
  pollMs: number;
  /** The most steps this worker runs at once: the slots it asks for when it needs some. */
  concurrency: number;
  limitsOf(group: string): ResolvedGroupLimits;
  /** Nodes whose group now lets them start. */
  onReady(nodes: N[]): void;
  /** A store call failed: the worker cannot keep its groups' limits and must stop. */
  onError(error: unknown): void;
}

/**
 * Holds this worker's share of each group's capacity and the nodes that wait for it. A node that finds its
 * group full waits here, leased but holding no step slot, while nodes of other groups go on; slots are leased
 * from the store for many steps at once (renewed with the heartbeat), so a group whose limit does not bind
 * costs one store call per heartbeat, not one per step. Tokens are asked for as nodes need them, at most
 * `burst` at a time, and spent at once.
 */
export class GroupGates<N extends GroupedNode> {
  readonly #o: GroupGatesOptions<N>;
  readonly #gates = new Map<string, Gate<N>>();
  #waiting = 0;
  /** Each group's store calls in the order they were made (a release must not land after the next grant). */
  readonly #calls = new Map<string, Promise<unknown>>();

  constructor(options: GroupGatesOptions<N>) {
    this.#o = options;
  }

  /** Nodes waiting for their group. */
  get waiting(): number {
    return this.#waiting;
  }

  /** True when the node may start now (its slot and token are taken); otherwise it waits in its group. */
  admit(node: N): boolean {
    if (!node.group) return true;
    const gate = this.#gate(node.runId, node.group);
    if (gate === null) return true;
    if (gate.queue.length === 0 && this.#take(gate)) return true;
    gate.queue.push(node);
    this.#waiting++;
    void this.#ask(gate);
    return false;
  }

  /** A step of the node's group ended (admitted, so it held a slot). */
  finished(node: N): void {
    if (!node.group) return;
    const gate = this.#gates.get(gateKey(node.runId, node.group));
    if (!gate) return;
    gate.running--;
    this.#release(gate);
    if (gate.running === 0 && gate.queue.length === 0 && gate.held > 0 && !gate.idleTimer) this.#releaseWhenIdle(gate, this.#o.pollMs);
  }

  /** Lets go of the gate's slots once no step of it has started here for `pollMs`. */
  #releaseWhenIdle(gate: Gate<N>, ms: number): void {
    gate.idleTimer = setTimeout(() => {
      gate.idleTimer = null;
      if (gate.running > 0 || gate.queue.length > 0 || gate.asking || this.#gates.get(gateKey(gate.runId, gate.group)) !== gate) return;
      const idle = Date.now() - gate.usedAt;
      if (idle < this.#o.pollMs) {
        this.#releaseWhenIdle(gate, this.#o.pollMs - idle);
        return;
      }
      this.#gates.delete(gateKey(gate.runId, gate.group));
      this.#acquire(gate, 0, 0).catch((error: unknown) => this.#o.onError(error));
    }, ms);
    gate.idleTimer.unref();
  }

  /** Renews the slots held and lets go of those of groups with nothing left to run here. */
  async renew(): Promise<void> {
    for (const gate of [...this.#gates.values()]) {
      if (gate.running === 0 && gate.queue.length === 0) {
        this.#gates.delete(gateKey(gate.runId, gate.group));
        if (gate.timer) clearTimeout(gate.timer);
        if (gate.idleTimer) clearTimeout(gate.idleTimer);
        if (gate.held > 0) await this.#acquire(gate, 0, 0);
      } else if (gate.held > 0 && !gate.asking) {
        gate.held = (await this.#acquire(gate, gate.held, 0)).slots;
      }
    }
  }

  /** Forgets every waiting node and slot (the worker lost its leases, or stops: the store frees them). */
  clear(): void {
    for (const gate of this.#gates.values()) {
      if (gate.timer) clearTimeout(gate.timer);
      if (gate.idleTimer) clearTimeout(gate.idleTimer);
    }
    this.#gates.clear();
    this.#waiting = 0;
  }

  #gate(runId: string, group: string): Gate<N> | null {
    const key = gateKey(runId, group);
    let gate = this.#gates.get(key);
    if (!gate) {
      const limits = this.#o.limitsOf(group);
      if (limits.concurrency === null && limits.perSecond === null) return null;
      gate = { runId, group, limits, held: 0, running: 0, tokens: 0, queue: [], asking: false, timer: null, idleTimer: null, usedAt: 0 };
      this.#gates.set(key, gate);
    }
    return gate;
  }

  /** Takes a slot and a token for one step, if this worker has both. */
  #take(gate: Gate<N>): boolean {
    if (gate.limits.concurrency !== null && gate.running >= gate.held) return false;
    if (gate.limits.perSecond !== null) {
      if (gate.tokens < 1) return false;
      gate.tokens--;
    }
    gate.running++;
    gate.usedAt = Date.now();
    return true;
  }

  /** Starts what the gate now allows; asks for more when nodes still wait. */
  #release(gate: Gate<N>): void {
    const ready: N[] = [];
    while (gate.queue.length > 0 && this.#take(gate)) ready.push(gate.queue.shift() as N);
    this.#waiting -= ready.length;
    if (ready.length > 0) this.#o.onReady(ready);
    if (gate.queue.length > 0) void this.#ask(gate);
  }

  /** Asks the store for the gate's group, after this worker's earlier calls for that group. */
  #acquire(gate: Gate<N>, slots: number, tokens: number): Promise<GroupGrant> {
    const { concurrency, perSecond, burst } = gate.limits;
    const request: GroupRequest = { runId: gate.runId, group: gate.group, workerId: this.#o.workerId(), concurrency, perSecond, burst, slots, running: gate.running, tokens, leaseMs: this.#o.leaseMs };
    const key = gateKey(gate.runId, gate.group);
    const call = (this.#calls.get(key) ?? Promise.resolve()).catch(() => undefined).then(() => this.#o.store.acquireGroup(request));
    this.#calls.set(key, call);
    const forget = () => {
      if (this.#calls.get(key) === call) this.#calls.delete(key);
    };
    call.then(forget, forget);
    return call;
  }

  async #ask(gate: Gate<N>): Promise<void> {
    if (gate.asking || gate.timer) return;
    const { concurrency, burst } = gate.limits;
    const slots = concurrency === null ? 0 : Math.min(concurrency, Math.max(this.#o.concurrency, gate.running + gate.queue.length));
    const needSlots = concurrency !== null && gate.running >= gate.held;
    const tokens = gate.limits.perSecond === null ? 0 : Math.min(burst, gate.queue.length);
    gate.asking = true;
    let nextTokenInMs: number | null;
    try {
      const grant = await this.#acquire(gate, needSlots ? slots : gate.held, tokens);
      if (concurrency !== null) gate.held = grant.slots;
      gate.tokens += grant.tokens;
      nextTokenInMs = grant.nextTokenInMs;
    } catch (error) {
      this.#o.onError(error);
      return;
    } finally {
      gate.asking = false;
    }
    if (this.#gates.get(gateKey(gate.runId, gate.group)) !== gate) return;
    const ready: N[] = [];
    while (gate.queue.length > 0 && this.#take(gate)) ready.push(gate.queue.shift() as N);
    this.#waiting -= ready.length;
    // Tokens are spent as they are granted: one no node took lapses, so a worker never saves up a burst.
    gate.tokens = 0;
    if (ready.length > 0) this.#o.onReady(ready);
    if (gate.queue.length === 0) return;
    // Still full: ask again when the next token comes due, or after a while for slots other workers hold.
    const wait = nextTokenInMs !== null && (gate.limits.concurrency === null || gate.running < gate.held) ? Math.max(1, nextTokenInMs) : this.#o.pollMs;
    gate.timer = setTimeout(() => {
      gate.timer = null;
      void this.#ask(gate);
    }, wait);
    gate.timer.unref();
  }
}

function gateKey(runId: string, group: string): string {
  return `${runId}\u0000${group}`;
}
