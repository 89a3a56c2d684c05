/**
 * The transitive dependency closure of every package in a package-lock.json (lockfile v2/v3), as a memoised DAG:
 * one keyed node per `name@version`, shared by every package that depends on it, whose result is the set of
 * packages it reaches. Each node emits one record per package: `{ package, closure, bytes, cycle }`; the root's
 * result is a summary.
 *
 *   npx rlm run examples/deps.ts --input '{"lockfile":"package-lock.json"}' --run deps && npx rlm results deps
 *
 * Resolution is npm's: a dependency `b` of the copy installed at `node_modules/a` is the first of
 * `node_modules/a/node_modules/b`, `node_modules/b` that the lockfile lists (a nested copy shadows the hoisted one).
 * `dependencies`, `optionalDependencies` and `peerDependencies` are followed (and `devDependencies` of the project
 * and its workspaces, the only packages whose dev dependencies npm installs); a dependency the lockfile does not
 * list (an optional or peer dependency npm left out) is skipped and counted in the summary. A `name@version`
 * installed at several paths is one node whose dependencies are the union of what each copy resolves to.
 *
 * npm graphs may have cycles, which a keyed rlm run reports as a `CYCLE` dead letter. So the graph is condensed
 * into its strongly connected components first (Tarjan's algorithm, iterative) and the run's nodes are the
 * components: a DAG. Every package of a cycle reaches the same packages, so its members share one node (keyed by
 * the first member's `name@version`) and one closure, and each member's record names the cycle.
 *
 * A node's input is only the lockfile's path, its sha256 and the component's key: each step derives the graph
 * from the lockfile (parsed once per process) and refuses to go on if the file changed since the run started.
 * Putting the graph in the inputs instead would store it once per node.
 *
 * A node's result is its closure as a bitset over the lockfile's packages (bit p: the package at index p of the
 * sorted package list), so a parent unions its children's closures with a bitwise OR and counts them without
 * double-counting shared packages. Each result takes packages / 8 bytes whatever its closure's size: the store
 * holds packages² / 8 bytes of them (12.5 MB at 10,000 packages, 1.25 GB at 100,000, the practical limit).
 * Installed bytes are measured once per package and process, and summed over the bits.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { defineTask, NonRetryableError } from 'rlm';
import { z } from 'zod';

/** The root's input is `{ lockfile, package? }`; a component's adds the lockfile's hash and the component's key. */
interface DepsInput {
  lockfile: string;
  package?: string;
  sha256?: string;
  component?: string;
}

/** A component's result: the packages it reaches, its own members included. */
interface Closure {
  /** Bit p is set when the component reaches package p (an index into the lockfile's sorted package list). */
  reach: Uint8Array;
  /** Packages reached, the members included. */
  packages: number;
  /** Installed bytes of the packages reached that are on disk. */
  bytes: number;
}

interface Summary {
  lockfile: string;
  packages: number;
  components: number;
  cycles: string[][];
  largest: { package: string; closure: number; bytes: number | null }[];
  /** Dependencies the run's packages declare that the lockfile does not list, skipped, by kind. */
  skipped: Record<DependencyKind, number>;
}

type DependencyKind = 'dependencies' | 'optionalDependencies' | 'peerDependencies' | 'devDependencies';
const KINDS: readonly DependencyKind[] = ['dependencies', 'optionalDependencies', 'peerDependencies', 'devDependencies'];

interface LockEntry {
  name?: string;
  version?: string;
  link?: boolean;
  resolved?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

/** A lockfile resolved to packages and condensed into its strongly connected components. */
interface LockGraph {
  sha256: string;
  /** `name@version` of every package, sorted; a package's id is its index here. */
  packages: string[];
  /** Each package's name, without its version. */
  names: string[];
  /** One install path of each package, relative to the lockfile's folder ('' is the project itself). */
  paths: string[];
  /** Each package's dependencies (ids, sorted), the union over its installed copies. */
  deps: number[][];
  /** Each package's component. */
  componentOf: number[];
  /** Each component's members (ids, sorted); its key is its first member's `name@version`. */
  members: number[][];
  /** Each component's dependencies among the other components: the condensed graph, a DAG. */
  componentDeps: number[][];
  /** Whether each component is a cycle: several members, or one that depends on itself. */
  cyclic: boolean[];
  componentByKey: Map<string, number>;
  /** @internal Each package's installed bytes once measured in this process (null: not on disk). */
  ownBytes: (number | null | undefined)[];
  /** Each package's declared dependencies that the lockfile does not list, by kind (in the order of KINDS). */
  skipped: number[][];
}

/** Where `name`, required by the package installed at `from`, resolves: the nearest `node_modules/name` going up. */
function resolveFrom(entries: Record<string, LockEntry>, from: string, name: string): string | undefined {
  for (let dir = from; ; ) {
    // Node never looks in `…/node_modules/node_modules`.
    if (dir !== 'node_modules' && !dir.endsWith('/node_modules')) {
      const candidate = dir === '' ? `node_modules/${name}` : `${dir}/node_modules/${name}`;
      if (Object.hasOwn(entries, candidate)) return candidate;
    }
    if (dir === '') return undefined;
    const slash = dir.lastIndexOf('/');
    dir = slash === -1 ? '' : dir.slice(0, slash);
  }
}

/** A link entry (a workspace under node_modules) stands for the folder it points to. */
function followLink(entries: Record<string, LockEntry>, path: string): string {
  const entry = entries[path];
  return entry?.link && entry.resolved !== undefined && Object.hasOwn(entries, entry.resolved) ? entry.resolved : path;
}

/** Tarjan's strongly connected components without recursion (a long dependency chain would overflow the stack). */
function stronglyConnected(deps: readonly (readonly number[])[]): number[][] {
  const n = deps.length;
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  const components: number[][] = [];
  let next = 0;
  for (let start = 0; start < n; start++) {
    if (index[start] !== -1) continue;
    const frames: number[] = [start];
    const edges: number[] = [0];
    index[start] = low[start] = next++;
    stack.push(start);
    onStack[start] = 1;
    while (frames.length > 0) {
      const top = frames.length - 1;
      const v = frames[top]!;
      const out = deps[v]!;
      const e = edges[top]!;
      if (e < out.length) {
        edges[top] = e + 1;
        const w = out[e]!;
        if (index[w] === -1) {
          index[w] = low[w] = next++;
          stack.push(w);
          onStack[w] = 1;
          frames.push(w);
          edges.push(0);
        } else if (onStack[w]) low[v] = Math.min(low[v]!, index[w]!);
        continue;
      }
      frames.pop();
      edges.pop();
      if (frames.length > 0) {
        const parent = frames[frames.length - 1]!;
        low[parent] = Math.min(low[parent]!, low[v]!);
      }
      if (low[v] === index[v]) {
        const component: number[] = [];
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          component.push(w);
        } while (w !== v);
        components.push(component.sort((a, b) => a - b));
      }
    }
  }
  return components;
}

/** Resolves a lockfile's text into packages and their dependencies, then condenses it. */
function buildGraph(text: string): LockGraph {
  const sha256 = createHash('sha256').update(text).digest('hex');
  const lock = JSON.parse(text) as { name?: string; version?: string; lockfileVersion?: number; packages?: Record<string, LockEntry> };
  const entries = lock.packages;
  if (!entries || typeof entries !== 'object' || (lock.lockfileVersion ?? 0) < 2) {
    throw new NonRetryableError(`Expected a package-lock.json of lockfileVersion 2 or 3 (with a \`packages\` map), got lockfileVersion ${String(lock.lockfileVersion)}; run \`npm install\` with npm 7 or later.`);
  }
  const identity = (path: string): { id: string; name: string } => {
    const entry = entries[path]!;
    const name = entry.name ?? (path === '' ? (lock.name ?? '(project)') : path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
    const version = entry.version ?? (path === '' ? lock.version : undefined);
    return { id: version === undefined ? name : `${name}@${version}`, name };
  };
  // Every installed copy, links followed, grouped by name@version.
  const copies = new Map<string, { name: string; paths: string[] }>();
  for (const path of Object.keys(entries)) {
    if (entries[path]!.link) continue;
    const { id, name } = identity(path);
    const known = copies.get(id);
    if (known) known.paths.push(path);
    else copies.set(id, { name, paths: [path] });
  }
  const packages = [...copies.keys()].sort();
  const idOf = new Map(packages.map((id, i) => [id, i]));
  const skipped: number[][] = [];
  const deps = packages.map((id, p) => {
    const out = new Set<number>();
    const missing = KINDS.map(() => new Set<string>());
    for (const path of copies.get(id)!.paths) {
      const entry = entries[path]!;
      // npm installs dev dependencies of the project and its workspaces only, never of a package in node_modules.
      const kinds = path.includes('node_modules') ? KINDS.slice(0, 3) : KINDS;
      kinds.forEach((kind, k) => {
        for (const name of Object.keys(entry[kind] ?? {})) {
          const found = resolveFrom(entries, path, name);
          if (found === undefined) missing[k]!.add(name);
          else out.add(idOf.get(identity(followLink(entries, found)).id)!);
        }
      });
    }
    skipped[p] = missing.map((names) => names.size);
    return [...out].sort((a, b) => a - b);
  });
  const members = stronglyConnected(deps);
  const componentOf = new Array<number>(packages.length);
  members.forEach((component, c) => {
    for (const p of component) componentOf[p] = c;
  });
  const componentDeps = members.map((component, c) => {
    const out = new Set<number>();
    for (const p of component) for (const q of deps[p]!) if (componentOf[q] !== c) out.add(componentOf[q]!);
    return [...out].sort((a, b) => a - b);
  });
  const cyclic = members.map((component) => component.length > 1 || deps[component[0]!]!.includes(component[0]!));
  return {
    sha256,
    packages,
    names: packages.map((id) => copies.get(id)!.name),
    paths: packages.map((id) => copies.get(id)!.paths[0]!),
    deps,
    componentOf,
    members,
    componentDeps,
    cyclic,
    componentByKey: new Map(members.map((component, c) => [packages[component[0]!]!, c])),
    ownBytes: new Array(packages.length).fill(undefined),
    skipped,
  };
}

// Each worker process parses a lockfile once: the graph is a pure function of the file's bytes, and a step checks
// the file is the one the run started on. The cache is refreshed when the file's size, mtime or inode change.
const graphs = new Map<string, { signature: string; graph: Promise<LockGraph> }>();

async function loadGraph(path: string): Promise<LockGraph> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (error) {
    throw new NonRetryableError(`Cannot read the lockfile ${path}: ${(error as Error).message}`);
  }
  const signature = `${info.size} ${info.mtimeMs} ${info.ino}`;
  const cached = graphs.get(path);
  if (cached?.signature === signature) return cached.graph;
  const graph = readFile(path, 'utf8').then(buildGraph);
  graphs.set(path, { signature, graph });
  graph.catch(() => graphs.delete(path));
  return graph;
}

/** The graph of a component's step, refused if the lockfile changed since the run started. */
async function graphOf(input: DepsInput): Promise<LockGraph> {
  const graph = await loadGraph(input.lockfile);
  if (input.sha256 !== undefined && graph.sha256 !== input.sha256) {
    throw new NonRetryableError(`The lockfile ${input.lockfile} changed since the run started (sha256 ${input.sha256.slice(0, 12)}…, now ${graph.sha256.slice(0, 12)}…); start a new run.`);
  }
  return graph;
}

/** The components a run starts from: every one, or those of the packages `name@version` or `name`. */
function targets(graph: LockGraph, wanted: string | undefined): number[] {
  if (wanted === undefined) return graph.members.map((_, c) => c);
  const ids = graph.packages.flatMap((id, p) => (id === wanted || graph.names[p] === wanted ? [p] : []));
  if (ids.length === 0) throw new NonRetryableError(`The lockfile lists no package ${wanted} (give \`name\` or \`name@version\`; it lists ${graph.packages.length} packages).`);
  return [...new Set(ids.map((p) => graph.componentOf[p]!))];
}

/** Installed bytes of a package: the sizes of its files, its own node_modules (nested dependencies) left out. */
async function ownBytes(dir: string): Promise<number | null> {
  try {
    if (!(await lstat(dir)).isDirectory()) return null;
  } catch {
    return null;
  }
  let total = 0;
  const walk = async (path: string, top: boolean): Promise<void> => {
    for (const entry of await readdir(path, { withFileTypes: true })) {
      if (top && entry.name === 'node_modules') continue;
      const child = join(path, entry.name);
      if (entry.isDirectory()) await walk(child, false);
      else total += (await lstat(child)).size;
    }
  };
  await walk(dir, true);
  return total;
}

/** Calls `fn` with each package id whose bit is set, in ascending order. */
function forEachId(reach: Uint8Array, fn: (id: number) => void): void {
  for (let i = 0; i < reach.length; i++) {
    for (let bits = reach[i]!; bits !== 0; bits &= bits - 1) fn(i * 8 + 31 - Math.clz32(bits & -bits));
  }
}

/**
 * The installed bytes of each package of `reach`, measured once per process: a package's directory is walked
 * by the first step that needs it (its own node's, unless a crash lost that process).
 */
async function measure(input: DepsInput, graph: LockGraph, reach: Uint8Array): Promise<(number | null)[]> {
  const todo: number[] = [];
  forEachId(reach, (p) => {
    if (graph.ownBytes[p] === undefined) todo.push(p);
  });
  for (const p of todo) {
    const path = graph.paths[p]!;
    // The project and its workspaces are the checkout itself, not something npm installed: no bytes of their own.
    graph.ownBytes[p] = path.includes('node_modules') ? await ownBytes(join(dirname(input.lockfile), path)) : 0;
  }
  return graph.ownBytes as (number | null)[];
}

function isClosure(value: unknown): value is Closure {
  return typeof value === 'object' && value !== null && 'reach' in value;
}

/** A component's closure: its members and its dependencies' closures; one record per member. */
async function finish(input: DepsInput, graph: LockGraph, component: number, children: readonly Closure[], emit: (record: unknown) => void): Promise<Closure> {
  const reach = new Uint8Array(Math.ceil(graph.packages.length / 8));
  const members = graph.members[component]!;
  for (const p of members) reach[p >> 3]! |= 1 << (p & 7);
  for (const child of children) for (let i = 0; i < reach.length; i++) reach[i]! |= child.reach[i]!;
  const own = await measure(input, graph, reach);
  let packages = 0;
  let bytes = 0;
  forEachId(reach, (p) => {
    packages++;
    bytes += own[p] ?? 0;
  });
  const cycle = graph.cyclic[component] ? members.map((p) => graph.packages[p]!) : null;
  for (const p of members) emit({ package: graph.packages[p], closure: packages - 1, bytes: own[p] === null ? null : bytes, cycle });
  return { reach, packages, bytes };
}

export default defineTask<DepsInput, Closure | Summary>({
  name: 'deps',
  // A closure is a bitset: msgpack stores the Uint8Array as bytes, where JSON has no binary type.
  codec: 'msgpack',
  input: z.object({ lockfile: z.string().min(1), package: z.string().optional(), sha256: z.string().optional(), component: z.string().optional() }),
  key: (input) => input.component ?? `lockfile ${input.lockfile}${input.package === undefined ? '' : ` ${input.package}`}`,
  // One node per component reached, plus the root. rlm asks before the root's input is validated or its step
  // runs; an input or lockfile that will not do gets 1 here and its error from the step, in the dead-letter queue.
  estimate(input) {
    let graph: LockGraph;
    try {
      graph = buildGraph(readFileSync(resolve(input.lockfile), 'utf8'));
      targets(graph, input.package);
    } catch {
      return 1;
    }
    const seen = new Set<number>();
    const todo = targets(graph, input.package);
    while (todo.length > 0) {
      const c = todo.pop()!;
      if (seen.has(c)) continue;
      seen.add(c);
      todo.push(...graph.componentDeps[c]!);
    }
    return seen.size + 1;
  },
  async run(input, ctx) {
    if (input.component === undefined) {
      const lockfile = resolve(input.lockfile);
      const graph = await graphOf({ lockfile });
      return { children: targets(graph, input.package).map((c) => ({ input: { lockfile, sha256: graph.sha256, component: graph.packages[graph.members[c]![0]!]! } })) };
    }
    const graph = await graphOf(input);
    const component = graph.componentByKey.get(input.component);
    if (component === undefined) throw new NonRetryableError(`The lockfile ${input.lockfile} has no package ${input.component}.`);
    const deps = graph.componentDeps[component]!;
    if (deps.length > 0) {
      return { children: deps.map((c) => ({ input: { lockfile: input.lockfile, sha256: input.sha256, component: graph.packages[graph.members[c]![0]!]! } })) };
    }
    return { result: await finish(input, graph, component, [], (record) => ctx.emit(record)) };
  },
  async combine(input, results, ctx) {
    // Under deadChildren 'wait' (the default) a failed dependency never reaches here: its parent waits for a redrive.
    const closures = results.filter(isClosure);
    if (input.component !== undefined) {
      const graph = await graphOf(input);
      return finish(input, graph, graph.componentByKey.get(input.component)!, closures, (record) => ctx.emit(record));
    }
    const lockfile = resolve(input.lockfile);
    const graph = await graphOf({ lockfile });
    const reach = new Uint8Array(Math.ceil(graph.packages.length / 8));
    for (const child of closures) for (let i = 0; i < reach.length; i++) reach[i]! |= child.reach[i]!;
    const own = await measure({ lockfile }, graph, reach);
    const largest = targets(graph, input.package)
      .flatMap((c, i) => graph.members[c]!.map((p) => ({ package: graph.packages[p]!, closure: closures[i]!.packages - 1, bytes: own[p] === null ? null : closures[i]!.bytes })))
      .sort((a, b) => b.closure - a.closure || (a.package < b.package ? -1 : 1))
      .slice(0, 10);
    const inRun = new Set<number>();
    const skipped = KINDS.map(() => 0);
    let packages = 0;
    forEachId(reach, (p) => {
      packages++;
      inRun.add(graph.componentOf[p]!);
      graph.skipped[p]!.forEach((n, k) => {
        skipped[k]! += n;
      });
    });
    return {
      lockfile,
      packages,
      components: inRun.size,
      cycles: [...inRun].filter((c) => graph.cyclic[c]).map((c) => graph.members[c]!.map((p) => graph.packages[p]!)),
      largest,
      skipped: Object.fromEntries(KINDS.map((kind, k) => [kind, skipped[k]!])) as Record<DependencyKind, number>,
    };
  },
});
