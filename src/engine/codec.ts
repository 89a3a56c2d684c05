import type { Payload } from '../store/store.js';
import { NotSerializableError } from './errors.js';
import { decodeBinary, encodeMsgpack } from './msgpack.js';
import { ancestors, at, firstProblem, type Problem, problem } from './value-check.js';

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
    const found = firstProblem(value, check);
    if (found) throw new NotSerializableError(`${what} cannot be stored as JSON: ${found.reason} at ${found.path}.`, found.path);
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

function check(value: unknown): Problem | null {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return null;
    case 'number':
      return Number.isFinite(value) ? null : problem(`the number ${value} has no JSON form`);
    case 'bigint':
      return problem("a BigInt has no JSON form (store it as a string, or use codec: 'msgpack')");
    case 'function':
      return problem('a function cannot be stored');
    case 'symbol':
      return problem('a symbol cannot be stored');
  }
  if (value === null) return null;
  const object = value as object;
  if (ancestors.includes(object)) return problem('the value contains a cycle');
  if (Array.isArray(object)) {
    ancestors.push(object);
    for (let i = 0; i < object.length; i++) {
      const item: unknown = object[i];
      const found = item === undefined ? problem('undefined in an array becomes null') : check(item);
      if (found) return at(found, `[${i}]`);
    }
    ancestors.pop();
    return null;
  }
  const proto = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    const name = (object as { constructor?: { name?: string } }).constructor?.name ?? 'object';
    return problem(`a ${name} is not plain JSON (convert it, e.g. a Date with toISOString(), or use codec: 'msgpack')`);
  }
  ancestors.push(object);
  for (const key in object) {
    const found = check((object as Record<string, unknown>)[key]);
    if (found) return at(found, `.${key}`);
  }
  ancestors.pop();
  return null;
}
