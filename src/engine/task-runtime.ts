import { createHash } from 'node:crypto';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { DEFAULT_LIMITS, type GroupLimits, type Json, type Task, type TaskLimits } from '../task.js';
import type { ResolvedGroupLimits } from './groups.js';
import { CODECS, type Codec, type CodecName, codecNamed } from './codec.js';
import { ConfigError, InvalidInputError, RlmError } from './errors.js';

/** @internal A task checked once, with its defaults applied: what the worker runs. */
export interface TaskRuntime {
  readonly task: Task;
  readonly name: string;
  readonly version: number;
  readonly limits: Required<TaskLimits>;
  readonly order: 'dfs' | 'bfs';
  readonly keyed: boolean;
  readonly hasPriority: boolean;
  readonly waits: boolean;
  readonly passDead: boolean;
  readonly depthPolicy: 'dlq' | 'park';
  readonly codec: Codec;
  /** A hash of the task's code (run, combine, key, migrate): tells a code change that kept its `version`. */
  readonly codeHash: string;
  /** Migrates (from `version`) then validates; throws InvalidInputError or an RlmError('MIGRATION'). */
  prepare(input: unknown, version: number): Promise<unknown>;
  /** Validates only (a child at spawn). Returns the schema's output. */
  validate(input: unknown): unknown | Promise<unknown>;
  keyOf(input: unknown): string;
  priorityOf(input: unknown, depth: number, context: Json): number;
  /** The task's `estimate` of a run's node count for this root input, rounded; null when it declares none. */
  estimateOf(input: unknown): number | null;
  /** Whether the task names groups with limits: only then does a worker gate its steps. */
  readonly grouped: boolean;
  /** The node's group, or null; throws RlmError('INVALID_INPUT') when `group` throws or returns a bad name. */
  groupOf(input: unknown): string | null;
  /** A group's limits; throws ConfigError when `groups` gives bad ones. */
  groupLimits(group: string): ResolvedGroupLimits;
}

/** Checks a group's limits and applies their defaults. */
export function resolveGroupLimits(where: string, raw: unknown): ResolvedGroupLimits {
  if (typeof raw !== 'object' || raw === null) throw new ConfigError(`${where} must be an object { concurrency?, perSecond?, burst? }, got ${raw === null ? 'null' : typeof raw}.`);
  const limits = raw as GroupLimits;
  for (const name of Object.keys(limits)) {
    if (name !== 'concurrency' && name !== 'perSecond' && name !== 'burst') throw new ConfigError(`${where} has an unknown field \`${name}\`; use concurrency, perSecond or burst.`);
  }
  const perSecond = limits.perSecond;
  if (perSecond !== undefined && (typeof perSecond !== 'number' || !Number.isFinite(perSecond) || perSecond <= 0)) {
    throw new ConfigError(`Expected \`${where}.perSecond\` to be a number > 0, got \`${String(perSecond)}\` (${typeof perSecond}).`);
  }
  return {
    concurrency: limits.concurrency === undefined ? null : positiveInt(`${where}.concurrency`, limits.concurrency, 1),
    perSecond: perSecond ?? null,
    burst: limits.burst === undefined ? 1 : positiveInt(`${where}.burst`, limits.burst, 1),
  };
}

function positiveInt(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > Number.MAX_SAFE_INTEGER) {
    throw new ConfigError(`Expected \`${name}\` to be an integer >= ${min}, got \`${String(value)}\` (${typeof value}).`);
  }
  return value;
}

/** Checks a task definition and applies its defaults. Throws ConfigError with what to fix. */
export function taskRuntime(value: unknown): TaskRuntime {
  if (typeof value !== 'object' || value === null) {
    throw new ConfigError(`A task must be an object with \`name\` and \`run\`, got ${value === null ? 'null' : typeof value}.`);
  }
  const task = value as Task;
  if (typeof task.name !== 'string' || task.name.trim() === '') throw new ConfigError('A task needs a `name`: a non-empty string.');
  if (typeof task.run !== 'function') throw new ConfigError(`Task ${task.name}: \`run\` must be a function (input, ctx) => ({ result, children }).`);
  if (task.combine !== undefined && typeof task.combine !== 'function') throw new ConfigError(`Task ${task.name}: \`combine\` must be a function.`);
  if (task.key !== undefined && typeof task.key !== 'function') throw new ConfigError(`Task ${task.name}: \`key\` must be a function (input) => string.`);
  if (task.priority !== undefined && typeof task.priority !== 'function') throw new ConfigError(`Task ${task.name}: \`priority\` must be a function.`);
  if (task.estimate !== undefined && typeof task.estimate !== 'function') throw new ConfigError(`Task ${task.name}: \`estimate\` must be a function (input) => number.`);
  const version = positiveInt(`${task.name}.version`, task.version ?? 1, 1);
  const limits = { ...DEFAULT_LIMITS };
  if (task.limits !== undefined) {
    if (typeof task.limits !== 'object' || task.limits === null) throw new ConfigError(`Task ${task.name}: \`limits\` must be an object.`);
    for (const [name, raw] of Object.entries(task.limits)) {
      if (raw === undefined) continue;
      if (!(name in DEFAULT_LIMITS)) throw new ConfigError(`Task ${task.name}: unknown limit \`${name}\`; known: ${Object.keys(DEFAULT_LIMITS).join(', ')}.`);
      const min = name === 'maxAttempts' || name === 'maxChildren' ? 1 : 0;
      limits[name as keyof TaskLimits] = positiveInt(`limits.${name}`, raw, min);
    }
  }
  if (task.order !== undefined && task.order !== 'dfs' && task.order !== 'bfs') throw new ConfigError(`Task ${task.name}: \`order\` must be 'dfs' or 'bfs'.`);
  if (task.migrate !== undefined) {
    if (typeof task.migrate !== 'object' || task.migrate === null) throw new ConfigError(`Task ${task.name}: \`migrate\` must map versions to functions.`);
    for (const [from, fn] of Object.entries(task.migrate)) {
      if (!/^\d+$/.test(from) || typeof fn !== 'function') throw new ConfigError(`Task ${task.name}: \`migrate[${from}]\` must be a function keyed by a version number.`);
    }
  }
  if (task.codec !== undefined && !CODECS.includes(task.codec)) {
    throw new ConfigError(`Task ${task.name}: \`codec\` must be ${CODECS.map((c) => `'${c}'`).join(' or ')}, got \`${String(task.codec)}\`.`);
  }
  const schema = task.input;
  if (schema !== undefined && typeof (schema as StandardSchemaV1)?.['~standard']?.validate !== 'function') {
    throw new ConfigError(`Task ${task.name}: \`input\` must be a Standard Schema (zod, valibot, arktype…); it has no ~standard.validate.`);
  }
  const check = (output: StandardSchemaV1.Result<unknown>): unknown => {
    if (output.issues) {
      const issues = output.issues.map((issue) => ({ message: issue.message, path: issue.path?.map((p) => (typeof p === 'object' ? p.key : p)) }));
      const text = issues.map((i) => (i.path && i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
      throw new InvalidInputError(`Input rejected by the schema of ${task.name}: ${text}`, issues);
    }
    return output.value;
  };
  const validate = (input: unknown): unknown | Promise<unknown> => {
    if (!schema) return input;
    const output = schema['~standard'].validate(input);
    return output instanceof Promise ? output.then(check) : check(output);
  };
  if (task.group !== undefined && typeof task.group !== 'function') throw new ConfigError(`Task ${task.name}: \`group\` must be a function (input) => string.`);
  if (task.groups !== undefined && task.group === undefined) throw new ConfigError(`Task ${task.name}: \`groups\` sets limits per group, but the task has no \`group\` (input) => string to name them.`);
  const fixedGroupLimits = task.groups === undefined || typeof task.groups === 'function' ? null : resolveGroupLimits(`groups of ${task.name}`, task.groups);
  return {
    task,
    name: task.name,
    version,
    limits,
    order: task.order ?? 'dfs',
    keyed: task.key !== undefined,
    hasPriority: task.priority !== undefined,
    waits: task.combine !== undefined,
    passDead: task.deadChildren === 'pass',
    depthPolicy: task.depthPolicy === 'park' ? 'park' : 'dlq',
    codec: codecNamed((task.codec ?? 'json') as CodecName),
    codeHash: codeHashOf(task),
    async prepare(input, from) {
      let value = input;
      if (from > version) throw new RlmError(`Node written by version ${from} of ${task.name}; this worker runs version ${version}.`, 'VERSION');
      for (let v = from; v < version; v++) {
        const step = task.migrate?.[v];
        if (!step) {
          throw new RlmError(`Task ${task.name} has no migrate[${v}] to upgrade an input stored by version ${v} to version ${v + 1}.`, 'MIGRATION');
        }
        try {
          value = await step(value);
        } catch (error) {
          throw new RlmError(`migrate[${v}] of ${task.name} threw: ${(error as Error)?.message ?? String(error)}`, 'MIGRATION', { cause: error });
        }
      }
      return validate(value);
    },
    validate,
    keyOf(input) {
      let key: unknown;
      try {
        key = task.key?.(input);
      } catch (error) {
        throw new RlmError(`key() of ${task.name} threw: ${(error as Error)?.message ?? String(error)}`, 'INVALID_INPUT', { cause: error });
      }
      if (typeof key !== 'string' || key === '') throw new RlmError(`key() of ${task.name} must return a non-empty string, got ${key === '' ? "''" : typeof key}.`, 'INVALID_INPUT');
      if (key.includes('\u0000')) throw new RlmError(`key() of ${task.name} returned a key with a NUL character, which stores cannot hold; remove it.`, 'INVALID_INPUT');
      if (key.length > 4096) throw new RlmError(`key() of ${task.name} returned ${key.length} characters; keys are limited to 4096.`, 'INVALID_INPUT');
      return key;
    },
    priorityOf(input, depth, context) {
      if (!task.priority) return 0;
      const p: unknown = task.priority(input, { depth, context });
      if (typeof p !== 'number' || !Number.isFinite(p)) throw new RlmError(`priority() of ${task.name} must return a finite number, got ${String(p)}.`, 'INVALID_INPUT');
      return p;
    },
    grouped: task.group !== undefined && task.groups !== undefined,
    groupOf(input) {
      let group: unknown;
      try {
        group = task.group?.(input);
      } catch (error) {
        throw new RlmError(`group() of ${task.name} threw: ${(error as Error)?.message ?? String(error)}`, 'INVALID_INPUT', { cause: error });
      }
      if (group === null || group === undefined) return null;
      if (typeof group !== 'string' || group === '' || group.length > 1024) {
        throw new RlmError(`group() of ${task.name} must return a non-empty string of at most 1024 characters, null or undefined, got ${typeof group === 'string' ? `${group.length} characters` : typeof group}.`, 'INVALID_INPUT');
      }
      return group;
    },
    groupLimits(group) {
      if (typeof task.groups === 'function') return resolveGroupLimits(`groups('${group}') of ${task.name}`, task.groups(group));
      return fixedGroupLimits ?? resolveGroupLimits(`groups of ${task.name}`, task.groups);
    },
    estimateOf(input) {
      if (!task.estimate) return null;
      let n: unknown;
      try {
        n = task.estimate(input);
      } catch (error) {
        throw new ConfigError(`estimate() of ${task.name} threw: ${(error as Error)?.message ?? String(error)}; fix it, or remove \`estimate\` to show progress without a percentage.`, { cause: error });
      }
      if (typeof n !== 'number' || !Number.isFinite(n) || n < 1) {
        throw new ConfigError(`Expected estimate() of ${task.name} to return a finite number >= 1 (the run's node count), got \`${String(n)}\` (${typeof n}).`);
      }
      return Math.min(Math.round(n), Number.MAX_SAFE_INTEGER);
    },
  };
}

/**
 * A hash of the sources of the task's functions that decide what is stored: run, combine, key and migrate.
 * Helpers they call are not covered; a change there goes unnoticed.
 */
export function codeHashOf(task: Task): string {
  const source = (fn: unknown) => (typeof fn === 'function' ? Function.prototype.toString.call(fn) : '');
  const parts = [source(task.run), source(task.combine), source(task.key)];
  for (const [from, fn] of Object.entries(task.migrate ?? {}).sort(([a], [b]) => Number(a) - Number(b))) parts.push(`${from}:${source(fn)}`);
  return createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 16);
}
