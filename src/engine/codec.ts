import { NotSerializableError } from './errors.js';

/**
 * The JSON codec: what a handler gets back on resume must equal what it returned, so values that JSON would
 * silently change (a Date, a Map, NaN, a function) are refused at the step that produced them, with the path
 * of the bad value, rather than discovered at a later read.
 */
export function encode(value: unknown, what: string): string {
  try {
    const problem = findUnserializable(value, '$', new Set());
    if (problem) throw new NotSerializableError(`${what} cannot be stored as JSON: ${problem.reason} at ${problem.path}.`, problem.path);
    return JSON.stringify(value) ?? 'null';
  } catch (error) {
    // Nesting deep enough to exhaust the stack is refused like any value JSON cannot hold, not left to crash.
    if (error instanceof RangeError) throw new NotSerializableError(`${what} cannot be stored as JSON: it is nested too deeply.`, '$');
    throw error;
  }
}

/** Like `encode`, but `undefined` stays absent (null in the store). */
export function encodeOptional(value: unknown, what: string): string | null {
  return value === undefined ? null : encode(value, what);
}

export function decode(text: string | null): unknown {
  return text === null ? undefined : JSON.parse(text);
}

function findUnserializable(value: unknown, path: string, seen: Set<object>): { path: string; reason: string } | null {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return null;
    case 'number':
      return Number.isFinite(value) ? null : { path, reason: `the number ${value} has no JSON form` };
    case 'undefined':
      return null;
    case 'bigint':
      return { path, reason: 'a BigInt has no JSON form (store it as a string)' };
    case 'function':
      return { path, reason: 'a function cannot be stored' };
    case 'symbol':
      return { path, reason: 'a symbol cannot be stored' };
  }
  if (value === null) return null;
  const object = value as object;
  if (seen.has(object)) return { path, reason: 'the value contains a cycle' };
  if (Array.isArray(object)) {
    seen.add(object);
    for (let i = 0; i < object.length; i++) {
      const item: unknown = object[i];
      if (item === undefined) return { path: `${path}[${i}]`, reason: 'undefined in an array becomes null' };
      const problem = findUnserializable(item, `${path}[${i}]`, seen);
      if (problem) return problem;
    }
    seen.delete(object);
    return null;
  }
  const proto = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    const name = (object as { constructor?: { name?: string } }).constructor?.name ?? 'object';
    return { path, reason: `a ${name} is not plain JSON (convert it, e.g. a Date with toISOString())` };
  }
  seen.add(object);
  for (const key in object) {
    const problem = findUnserializable((object as Record<string, unknown>)[key], `${path}.${key}`, seen);
    if (problem) return problem;
  }
  seen.delete(object);
  return null;
}
