import { createRequire } from 'node:module';
import { NotSerializableError } from './errors.js';
import { ancestors, at, firstProblem, type Problem, problem } from './value-check.js';

/*
 * The msgpack codec. A payload is two bytes of header and a msgpack body as msgpackr writes it:
 * - 0xC1: the binary mark. MessagePack never uses this byte and UTF-8 never begins a character with it, so a
 *   binary payload cannot be mistaken for JSON text or for a bare msgpack value.
 * - 0x01: the body's format: msgpackr with the options below. They are part of the stored format; a change to
 *   them takes a new format byte, so that payloads already stored keep decoding as they were written.
 *
 * What the body keeps: plain objects (as msgpackr records, so they stay objects while Maps stay Maps), arrays,
 * strings, numbers (NaN and ±Infinity too; -0 becomes 0, as in JSON), booleans, null, undefined, BigInt of any
 * size, Date, Map (any keys), Set, RegExp, ArrayBuffer, DataView, Buffer and the typed arrays. Anything else
 * would be flattened or dropped silently, so it is refused before it is written (see `check` below).
 */

/** The first byte of every binary payload rlm writes. */
export const BINARY_MARK = 0xc1;
const FORMAT_MSGPACKR_1 = 0x01;

/** The part of msgpackr's Packr that the codec uses. */
interface Packr {
  pack(value: unknown): Uint8Array;
  unpack(body: Uint8Array): unknown;
}

let packr: Packr | undefined;

/** msgpackr, loaded on first use: a task on the JSON codec never pays for it. */
function msgpackr(): Packr {
  if (!packr) {
    const { Packr } = createRequire(import.meta.url)('msgpackr') as { Packr: new (options: Record<string, unknown>) => Packr };
    packr = new Packr({
      // Objects as records, Maps as msgpack maps: decoding tells them apart. Records are defined inline, in each
      // payload, never shared between payloads.
      useRecords: true,
      mapsAsObjects: false,
      // Set, RegExp, Error, typed arrays and ArrayBuffer as extensions.
      moreTypes: true,
      int64AsType: 'bigint',
      useBigIntExtension: true,
      // A decoded Buffer is its own memory, not a view of the payload (which may sit in a buffered commit).
      copyBuffers: true,
    });
  }
  return packr;
}

export function encodeMsgpack(value: unknown, what: string): Uint8Array {
  let body: Uint8Array;
  try {
    const found = firstProblem(value, check);
    if (found) throw new NotSerializableError(`${what} cannot be stored as msgpack: ${found.reason} at ${found.path}.`, found.path);
    body = msgpackr().pack(value);
  } catch (error) {
    if (error instanceof RangeError) throw new NotSerializableError(`${what} cannot be stored as msgpack: it is nested too deeply.`, '$');
    throw error;
  }
  // A copy: msgpackr returns a view of its shared output buffer.
  const payload = Buffer.allocUnsafe(body.length + 2);
  payload[0] = BINARY_MARK;
  payload[1] = FORMAT_MSGPACKR_1;
  payload.set(body, 2);
  return payload;
}

/** Decodes a binary payload; throws on bytes rlm did not write. */
export function decodeBinary(payload: Uint8Array): unknown {
  if (payload[0] !== BINARY_MARK) throw new Error(`A binary payload must begin with 0xC1; this one begins with 0x${(payload[0] ?? 0).toString(16)}.`);
  if (payload[1] !== FORMAT_MSGPACKR_1) throw new Error(`Unknown binary payload format ${payload[1]}: written by a newer rlm?`);
  return msgpackr().unpack(payload.subarray(2));
}

const TYPED_ARRAYS = new Set<object>(
  [
    Buffer,
    Uint8Array,
    Uint8ClampedArray,
    Int8Array,
    Uint16Array,
    Int16Array,
    Uint32Array,
    Int32Array,
    Float32Array,
    Float64Array,
    BigInt64Array,
    BigUint64Array,
    DataView,
  ].map((type) => type.prototype),
);

function check(value: unknown): Problem | null {
  switch (typeof value) {
    case 'string':
      // Node 20 has String.prototype.isWellFormed; TypeScript's ES2023 library does not declare it.
      return (value as unknown as { isWellFormed(): boolean }).isWellFormed() ? null : problem('a string with an unpaired UTF-16 surrogate has no UTF-8 form');
    case 'number':
    case 'boolean':
    case 'bigint':
    case 'undefined':
      return null;
    case 'function':
      return problem('a function cannot be stored');
    case 'symbol':
      return problem('a symbol cannot be stored');
  }
  if (value === null) return null;
  const object = value as object;
  if (ancestors.includes(object)) return problem('the value contains a cycle');
  const proto: unknown = Object.getPrototypeOf(object);
  if (proto === Object.prototype || proto === null) {
    // msgpackr renames a `__proto__` key (a guard against prototype pollution) rather than keep it.
    if (Object.hasOwn(object, '__proto__')) return problem('an own `__proto__` key is renamed by msgpack');
    ancestors.push(object);
    for (const key in object) {
      const found = check((object as Record<string, unknown>)[key]);
      if (found) return at(found, `.${key}`);
    }
    ancestors.pop();
    return null;
  }
  if (proto === Array.prototype) {
    const array = object as unknown[];
    ancestors.push(object);
    for (let i = 0; i < array.length; i++) {
      const found = check(array[i]);
      if (found) return at(found, `[${i}]`);
    }
    ancestors.pop();
    return null;
  }
  if (proto === Map.prototype) {
    ancestors.push(object);
    let i = 0;
    for (const [key, item] of object as Map<unknown, unknown>) {
      const n = i++;
      const keyProblem = check(key);
      if (keyProblem) return at(keyProblem, `.keys()[${n}]`);
      const itemProblem = check(item);
      if (itemProblem) {
        const label = typeof key === 'string' ? JSON.stringify(key) : typeof key === 'number' || typeof key === 'bigint' ? String(key) : `<key ${n}>`;
        return at(itemProblem, `.get(${label})`);
      }
    }
    ancestors.pop();
    return null;
  }
  if (proto === Set.prototype) {
    ancestors.push(object);
    let i = 0;
    for (const item of object as Set<unknown>) {
      const n = i++;
      const found = check(item);
      if (found) return at(found, `.values()[${n}]`);
    }
    ancestors.pop();
    return null;
  }
  if (proto === Date.prototype || proto === RegExp.prototype || proto === ArrayBuffer.prototype || TYPED_ARRAYS.has(proto as object)) return null;
  const name = (object as { constructor?: { name?: string } }).constructor?.name || 'object';
  const reason =
    object instanceof Error
      ? `an error (${name}) would lose its class and fields (store its message)`
      : `a ${name} would be stored as a plain object, losing its class (convert it to plain data)`;
  return problem(reason);
}
