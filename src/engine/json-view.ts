import type { Payload } from '../store/store.js';
import { decode } from './codec.js';

/*
 * How the command line and the dashboard show stored values: as JSON. A value of the JSON codec is shown as
 * it is. A value of the msgpack codec may hold what JSON cannot; each such part becomes an object with one key
 * that starts with `$` (documented in README.md, "Serialisation"):
 *   Date {"$date": "2024-05-01T10:00:00.000Z"}        BigInt {"$bigint": "12345678901234567890"}
 *   Map {"$map": [[key, value], …]}                   Set {"$set": [value, …]}
 *   Uint8Array, Buffer, ArrayBuffer, DataView {"$bytes": "<base64>"}
 *   other typed arrays {"$Float64Array": [1.5, …]}    RegExp {"$regexp": "/a+/g"}
 *   NaN, Infinity, -Infinity {"$number": "NaN"}       undefined {"$undefined": true}
 */

/** `value` as plain JSON, with the tags above where JSON has no form. Plain JSON comes back as the same object. */
export function jsonView(value: unknown): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? value : { $number: String(value) };
    case 'bigint':
      return { $bigint: value.toString() };
    case 'undefined':
      return { $undefined: true };
    case 'function':
    case 'symbol':
      return { $unknown: String(value) };
  }
  if (value === null) return null;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const view = jsonView(item);
      if (view !== item) {
        copy ??= value.slice();
        copy[i] = view;
      }
    }
    return copy ?? value;
  }
  if (value instanceof Date) return { $date: Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString() };
  if (value instanceof Map) return { $map: [...value].map(([key, item]) => [jsonView(key), jsonView(item)]) };
  if (value instanceof Set) return { $set: [...value].map(jsonView) };
  if (value instanceof RegExp) return { $regexp: String(value) };
  if (value instanceof ArrayBuffer) return { $bytes: Buffer.from(value).toString('base64') };
  if (ArrayBuffer.isView(value)) {
    if (value instanceof Uint8Array || value instanceof DataView) return { $bytes: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
    return { [`$${value.constructor.name}`]: Array.from(value as unknown as ArrayLike<unknown>, jsonView) };
  }
  let copy: Record<string, unknown> | undefined;
  const object = value as Record<string, unknown>;
  for (const key of Object.keys(object)) {
    const item = object[key];
    const view = jsonView(item);
    if (view !== item) {
      copy ??= { ...object };
      copy[key] = view;
    }
  }
  return copy ?? value;
}

/** A stored payload as JSON (see jsonView); a payload that does not decode is shown as its text or bytes. */
export function payloadView(payload: Payload | null): unknown {
  if (payload === null) return null;
  let value: unknown;
  try {
    value = decode(payload);
  } catch {
    return typeof payload === 'string' ? payload : { $bytes: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('base64') };
  }
  // JSON text decodes to plain JSON: nothing to tag.
  return typeof payload === 'string' ? value : jsonView(value);
}
