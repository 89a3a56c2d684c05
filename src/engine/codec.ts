import type { Payload } from '../store/store.js';
import { NotSerializableError } from './errors.js';
import { decodeBinary, encodeMsgpack } from './msgpack.js';

/*
 * Codecs: how a task's values (inputs, contexts, results, emitted records, effect values) become payloads.
 * - json (the default): JSON text. What a handler gets back on resume must equal what it returned, so values
 *   that JSON would silently change (a Date, a Map, NaN, a function) are refused at the step that produced them.
 * - msgpack (`codec: 'msgpack'` on the task): bytes, which keep Date, Map, Set, BigInt, Uint8Array/Buffer and
 *   undefined. Values it would silently change are refused the same way.
 * Payloads describe themselves (text is JSON; bytes start with a format mark), so a run's stored payloads decode
 * whichever codec the task names today; a run may hold both after a task switches codec.
 */

export type CodecName = 'json' | 'msgpack';

export const CODECS: readonly CodecName[] = ['json', 'msgpack'];

/** Encodes values for the store. */
export interface Codec {
  readonly name: CodecName;
  /** Encodes `value`, or throws NotSerializableError naming what (`what`) and the path of the value it cannot hold. */
  encode(value: unknown, what: string): Payload;
}

export const jsonCodec: Codec = Object.freeze({ name: 'json', encode });
export const msgpackCodec: Codec = Object.freeze({ name: 'msgpack', encode: encodeMsgpack });

export function codecNamed(name: CodecName): Codec {
  return name === 'msgpack' ? msgpackCodec : jsonCodec;
}

/** The JSON codec's encoder. */
export function encode(value: unknown, what: string): string {
  try {
    const problem = findUnserializable(value);
    if (problem) throw new NotSerializableError(`${what} cannot be stored as JSON: ${problem.reason} at ${problem.path}.`, problem.path);
    return JSON.stringify(value) ?? 'null';
  } catch (error) {
    // Nesting deep enough to exhaust the stack is refused like any value JSON cannot hold, not left to crash.
    if (error instanceof RangeError) throw new NotSerializableError(`${what} cannot be stored as JSON: it is nested too deeply.`, '$');
    throw error;
  }
}

/** Like `codec.encode`, but `undefined` stays absent (null in the store). */
export function encodeOptional(codec: Codec, value: unknown, what: string): Payload | null {
  return value === undefined ? null : codec.encode(value, what);
}

/** Decodes a payload of any codec; null (absent) is undefined. */
export function decode(payload: Payload | null): unknown {
  if (payload === null) return undefined;
  return typeof payload === 'string' ? JSON.parse(payload) : decodeBinary(payload);
}

/** Whether two payloads hold the same bytes (or text). */
export function samePayload(a: Payload | null, b: Payload | null): boolean {
  if (typeof a === 'string' || typeof b === 'string' || a === null || b === null) return a === b;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** Objects on the path from the value being checked down to the current one: a repeat is a cycle. */
const ancestors: object[] = [];

/** What is wrong and where: `path` holds the keys from the top down (`$` and the dots are added at the end). */
interface Problem {
  reason: string;
  path: (string | number)[];
}

/**
 * The first value under `value` that JSON would not give back as it is. The happy path allocates nothing: a
 * problem's path is collected only on the way back up from it.
 */
function findUnserializable(value: unknown): { path: string; reason: string } | null {
  const depth = ancestors.length;
  try {
    const problem = check(value);
    if (!problem) return null;
    let path = '$';
    for (let i = problem.path.length - 1; i >= 0; i--) {
      const key = problem.path[i];
      path += typeof key === 'number' ? `[${key}]` : `.${key}`;
    }
    return { path, reason: problem.reason };
  } finally {
    ancestors.length = depth;
  }
}

function check(value: unknown): Problem | null {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return null;
    case 'number':
      return Number.isFinite(value) ? null : { path: [], reason: `the number ${value} has no JSON form` };
    case 'bigint':
      return { path: [], reason: "a BigInt has no JSON form (store it as a string, or use codec: 'msgpack')" };
    case 'function':
      return { path: [], reason: 'a function cannot be stored' };
    case 'symbol':
      return { path: [], reason: 'a symbol cannot be stored' };
  }
  if (value === null) return null;
  const object = value as object;
  if (ancestors.includes(object)) return { path: [], reason: 'the value contains a cycle' };
  if (Array.isArray(object)) {
    ancestors.push(object);
    for (let i = 0; i < object.length; i++) {
      const item: unknown = object[i];
      const problem = item === undefined ? { path: [], reason: 'undefined in an array becomes null' } : check(item);
      if (problem) {
        problem.path.push(i);
        return problem;
      }
    }
    ancestors.pop();
    return null;
  }
  const proto = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    const name = (object as { constructor?: { name?: string } }).constructor?.name ?? 'object';
    return { path: [], reason: `a ${name} is not plain JSON (convert it, e.g. a Date with toISOString(), or use codec: 'msgpack')` };
  }
  ancestors.push(object);
  for (const key in object) {
    const problem = check((object as Record<string, unknown>)[key]);
    if (problem) {
      problem.path.push(key);
      return problem;
    }
  }
  ancestors.pop();
  return null;
}
