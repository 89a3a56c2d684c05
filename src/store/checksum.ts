/**
 * Checksums of stored values. Every payload rlm writes (inputs, contexts, results, emitted records, effect values)
 * is stored sealed: its CRC-32 first, then the value, in the same column and so in the same statement. Text is
 * prefixed with the CRC as 8 lowercase hex digits (the CRC of the text's UTF-8 bytes); bytes (SQLite BLOBs) with
 * the CRC as 4 big-endian bytes. Each error entry carries `sum`, the CRC of its fields in a fixed order, so that
 * SQL can append entries to the JSON array without reading it back. Every read opens the value and checks it: a
 * value changed after rlm wrote it (a flipped bit on disk, an UPDATE that bypassed rlm) is `STORE_CORRUPT`
 * naming the table, column, run and node, never a wrong answer.
 *
 * A CRC over the value, rather than SQLite's page checksums (the cksumvfs extension): cksumvfs needs a loadable
 * extension better-sqlite3 does not ship, must be enabled before the file's first page is written (so existing
 * stores could not have it), works on SQLite alone (PostgreSQL's data checksums are an initdb option rlm does not
 * control), and cannot see an UPDATE that went around rlm. A value checksum covers both stores alike.
 */
import * as zlib from 'node:zlib';
import { StoreCorruptError } from '../engine/errors.js';
import type { ErrorEntry, Payload } from './store.js';

/** CRC-32 (IEEE) with a table, for Node versions whose zlib has no `crc32` (before 20.15). */
const TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

function tableCrc32(data: string | Uint8Array): number {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = (TABLE[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

const native = (zlib as { crc32?: (data: string | Uint8Array) => number }).crc32;

/** CRC-32 (IEEE, as zlib's) of a string's UTF-8 bytes or of bytes. @internal */
export const crc32: (data: string | Uint8Array) => number = native ?? tableCrc32;

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function hex8(crc: number): string {
  return (HEX[crc >>> 24] as string) + HEX[(crc >>> 16) & 255] + HEX[(crc >>> 8) & 255] + HEX[crc & 255];
}

/** The 8 hex digits at the start of `text` as a number, or -1 when they are not 8 lowercase hex digits. */
function hexAt(text: string): number {
  if (text.length < 8) return -1;
  let value = 0;
  for (let i = 0; i < 8; i++) {
    const c = text.charCodeAt(i);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (d < 0) return -1;
    value = value * 16 + d;
  }
  return value;
}

/** Text as its column holds it: the CRC of the text, then the text. @internal */
export function sealText(text: string): string {
  return hex8(crc32(text)) + text;
}

/** A payload as its column holds it (text prefixed, bytes prefixed). @internal */
export function seal(payload: Payload): Payload {
  if (typeof payload === 'string') return sealText(payload);
  const out = Buffer.allocUnsafe(payload.byteLength + 4);
  out.writeUInt32BE(crc32(payload), 0);
  out.set(payload, 4);
  return out;
}

export function sealOptional(payload: Payload | null | undefined): Payload | null {
  return payload === null || payload === undefined ? null : seal(payload);
}

/**
 * Where a stored value lives, for the message of a checksum that does not match. `row` is the row the value was
 * read with: its `run_id`/`id` (a node), `id` (a run), `node_id`, `key`, `seq` or `name` name the place.
 */
export type Place = { table: string; column: string; row?: object | undefined };

function where(place: Place): string {
  const row = (place.row ?? {}) as Record<string, unknown>;
  const parts: string[] = [];
  const run = place.table === 'rlm_runs' ? row.id : row.run_id;
  if (run !== undefined && run !== null) parts.push(`run ${JSON.stringify(String(run))}`);
  const node = place.table === 'rlm_nodes' ? row.id : row.node_id;
  if (node !== undefined && node !== null) parts.push(`node ${String(node)}`);
  if (place.table === 'rlm_nodes' && typeof row.key === 'string') parts.push(`key ${JSON.stringify(row.key.slice(0, 80))}`);
  if (row.seq !== undefined && place.table === 'rlm_emits') parts.push(`record ${String(row.seq)}`);
  if (typeof row.name === 'string' && place.table === 'rlm_effects') parts.push(`effect ${JSON.stringify(row.name)}`);
  return parts.length > 0 ? ` (${parts.join(', ')})` : '';
}

/** A stored value that does not match its checksum. */
export class ChecksumError extends StoreCorruptError {
  constructor(
    readonly place: Place,
    detail: string,
  ) {
    super(
      `The store is damaged: the value in ${place.table}.${place.column}${where(place)} ${detail}; it was changed after rlm wrote it. ` +
        'rlm will not use it: restore the store from an `rlm snapshot` copy or a backup (`rlm doctor` lists every damaged value).',
    );
  }
}

/** A payload read from its column, checked against its checksum; null for SQL NULL. @internal */
export function open(value: unknown, place: Place): Payload | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return openText(value, place);
  if (value instanceof Uint8Array) {
    if (value.byteLength < 4) throw new ChecksumError(place, `is ${value.byteLength} bytes long, too short to hold its checksum`);
    const body = value.subarray(4);
    const stored = ((value[0] as number) * 0x1000000 + (((value[1] as number) << 16) | ((value[2] as number) << 8) | (value[3] as number))) >>> 0;
    const actual = crc32(body);
    if (stored !== actual) throw new ChecksumError(place, `does not match its checksum (stored ${hex8(stored)}, computed ${hex8(actual)})`);
    return body;
  }
  throw new ChecksumError(place, `is a ${typeof value}, where rlm writes text or bytes`);
}

/** Text read from its column, checked against its checksum. @internal */
export function openText(value: string, place: Place): string {
  const stored = hexAt(value);
  if (stored < 0) throw new ChecksumError(place, 'does not start with its checksum');
  const body = value.slice(8);
  const actual = crc32(body);
  if (stored !== actual) throw new ChecksumError(place, `does not match its checksum (stored ${hex8(stored)}, computed ${hex8(actual)})`);
  return body;
}

/** An error entry as stored: its fields and `sum`, their CRC. */
export type SealedErrorEntry = ErrorEntry & { sum: number };

function errorSum(entry: ErrorEntry): number {
  return crc32(JSON.stringify([entry.attempt, entry.message, entry.code, entry.stack, entry.at, entry.worker]));
}

/** An error entry with its checksum, to append to a node's errors. @internal */
export function sealError(entry: ErrorEntry): SealedErrorEntry {
  const clean: ErrorEntry = { attempt: entry.attempt, message: entry.message, code: entry.code, stack: entry.stack, at: entry.at, worker: entry.worker };
  return { ...clean, sum: errorSum(clean) };
}

/**
 * A node's errors read from their column (JSON text on SQLite, JSONB on PostgreSQL), each entry checked against
 * its `sum`; [] for SQL NULL. @internal
 */
export function openErrors(value: unknown, place: Place): ErrorEntry[] {
  if (value === null || value === undefined) return [];
  let list: unknown = value;
  if (typeof value === 'string') {
    try {
      list = JSON.parse(value);
    } catch {
      throw new ChecksumError(place, 'is not the JSON array rlm wrote');
    }
  }
  if (!Array.isArray(list)) throw new ChecksumError(place, 'is not the JSON array rlm wrote');
  const out: ErrorEntry[] = [];
  for (let i = 0; i < list.length; i++) {
    const e = list[i] as Partial<SealedErrorEntry> | null;
    const entry = e !== null && typeof e === 'object' ? { attempt: e.attempt, message: e.message, code: e.code, stack: e.stack, at: e.at, worker: e.worker } : null;
    if (
      entry === null ||
      typeof entry.attempt !== 'number' ||
      typeof entry.message !== 'string' ||
      typeof entry.at !== 'number' ||
      typeof entry.worker !== 'string' ||
      typeof e?.sum !== 'number' ||
      errorSum(entry as ErrorEntry) !== e.sum
    ) {
      throw new ChecksumError(place, `has an error entry (#${i + 1}) that does not match its checksum`);
    }
    out.push(entry as ErrorEntry);
  }
  return out;
}
