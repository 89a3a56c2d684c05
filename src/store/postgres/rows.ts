/** Rows of the PostgreSQL schema as the Store interface's records. */
import { openErrors, openText, type Place, sealError, sealText } from '../checksum.js';
import * as shared from '../rows.js';
import type { Columns, Row } from '../rows.js';
import type { ErrorEntry, LeasedNode, NodeRecord, NodeState, Payload, RunRecord, RunState, StateCounts } from '../store.js';

export { countsFromRow, emptyCounts, LEASED_COLUMNS, workerFromRow } from '../rows.js';

/**
 * Payload columns are TEXT, which cannot hold a NUL byte: bytes are kept as `~` and their base64. JSON text,
 * the only other payload, never starts with `~`.
 */
const BYTES_MARK = '~';
const BYTES_MARK_CODE = 0x7e;

/** A payload as text: JSON as it is, bytes marked. */
function encodeText(payload: Payload): string {
  return typeof payload === 'string' ? payload : BYTES_MARK + Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('base64');
}

function decodeText(text: string): Payload {
  return text.charCodeAt(0) === BYTES_MARK_CODE ? Buffer.from(text.slice(1), 'base64') : text;
}

/** A payload as its TEXT column holds it: sealed with its checksum (see checksum.ts). */
export function textOf(payload: Payload): string {
  return sealText(encodeText(payload));
}

export function textOfOptional(payload: Payload | null | undefined): string | null {
  return payload === null || payload === undefined ? null : textOf(payload);
}

/** A payload from its TEXT column, checked against its checksum: text, or the bytes it marks; null for NULL. */
export function payloadOf(text: unknown, place: Place): Payload | null {
  if (text === null || text === undefined) return null;
  if (typeof text !== 'string') return decodeText(openText(String(text), place));
  return decodeText(openText(text, place));
}

/** A leased node with its payloads as text, for the commit marker (JSON). */
export function leasedAsText(node: LeasedNode): LeasedNode {
  return typeof node.input === 'string' && (node.context === null || typeof node.context === 'string')
    ? node
    : { ...node, input: encodeText(node.input), context: node.context === null ? null : encodeText(node.context) };
}

/** A leased node read back from the commit marker. */
export function leasedFromText(node: LeasedNode): LeasedNode {
  return {
    ...node,
    input: typeof node.input === 'string' ? decodeText(node.input) : node.input,
    context: typeof node.context === 'string' ? decodeText(node.context) : node.context,
  };
}

export function errorsOf(value: unknown, place: Place): ErrorEntry[] {
  return openErrors(value, place);
}

/** Payloads are TEXT (bytes marked, see `payloadOf`), sealed; errors are JSONB arrays of sealed entries. */
const COLUMNS: Columns = { payload: payloadOf, errors: errorsOf };

export const leasedFromRow = (row: Row): LeasedNode => shared.leasedFromRow(row, COLUMNS);
export const nodeFromRow = (row: Row): NodeRecord => shared.nodeFromRow(row, COLUMNS);
export const runFromRow = (row: Row): RunRecord => shared.runFromRow(row, COLUMNS);

/**
 * An error entry PostgreSQL can hold: JSONB refuses the NUL character, which a thrown message may contain.
 * @internal
 */
export function storableError(entry: ErrorEntry): ErrorEntry {
  const clean = (text: string | null) => (text === null ? null : text.replace(/\u0000/g, '\uFFFD'));
  return sealError({ ...entry, message: clean(entry.message) ?? '', code: clean(entry.code), stack: clean(entry.stack), worker: clean(entry.worker) ?? '' });
}

/** The settle rule shared by commits and run operations: has the run ended, paused, or (after a redrive) reopened? */
export function settledState(input: {
  state: RunState;
  counts: StateCounts;
  rootState: NodeState | null;
  pauseReason: string | null;
  reopen: boolean;
}): { state: RunState; pauseReason: string | null } {
  const { state, counts } = input;
  if (state === 'cancelled') return { state, pauseReason: input.pauseReason };
  const active = counts.pending + counts.running;
  if (input.rootState === 'done' && active === 0 && counts.waiting === 0 && counts.parked === 0) return { state: 'completed', pauseReason: null };
  if (active === 0 && state !== 'paused') {
    if (counts.parked > 0) return { state: 'paused', pauseReason: input.pauseReason ?? 'parked nodes wait for `rlm approve` or `rlm reject`' };
    return { state: 'failed', pauseReason: null };
  }
  if (active > 0 && input.reopen && (state === 'failed' || state === 'completed')) return { state: 'running', pauseReason: null };
  return { state, pauseReason: state === 'paused' ? input.pauseReason : null };
}
