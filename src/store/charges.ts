/**
 * What both stores share about cost charges and signals: the journal names of charges, the decision a charge
 * gets, and how a signal's waiters and payloads are named and compared.
 */
import { RefusedError } from '../engine/errors.js';
import type { CostCharge, Payload } from './store.js';

/** A signal's payload as text (signals are JSON). */
export function payloadText(payload: Payload): string {
  return typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8');
}

/** A signal sent again with another payload. */
export function signalRefused(runId: string, name: string): RefusedError {
  return new RefusedError(`Run ${runId} has a signal \`${name}\` already, with another payload: a signal is delivered once per name. Send it under a new name.`);
}

/** The park reason of a node waiting for a signal: sending the signal wakes it. */
export function signalWaitReason(name: string): string {
  return `signal: waits for \`${name}\` (rlm signal RUN ${name} JSON)`;
}

/** Journal entries of cost charges are effects whose names start with this. */
export const COST_EFFECT_PREFIX = 'rlm:cost:';

/** The amount a journaled cost charge holds. */
export function costOf(value: Payload): number {
  const cost = (JSON.parse(payloadText(value)) as { cost?: unknown }).cost;
  return typeof cost === 'number' && Number.isFinite(cost) ? cost : 0;
}

/**
 * What a charge gets, given the run's budget and what it was charged so far, and the amount a journal entry of
 * the same name holds if there is one: the journaled charge again, a refusal, or a new charge to write.
 */
export function decideCharge(
  charge: CostCharge,
  spent: number,
  budget: number | null,
  journaled: number | undefined,
): { granted: boolean; amount: number; spent: number; budget: number | null; write: boolean } {
  if (journaled !== undefined) return { granted: true, amount: journaled, spent, budget, write: false };
  if (charge.kind === 'reserve' && budget !== null && spent + charge.amount > budget) return { granted: false, amount: charge.amount, spent, budget, write: false };
  return { granted: true, amount: charge.amount, spent: spent + charge.amount, budget, write: true };
}

/** A charge's journal entry: the value of its effect row. */
export function costEntry(amount: number): string {
  return JSON.stringify({ cost: amount });
}
