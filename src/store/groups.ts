import type { GroupGrant, GroupRequest } from './store.js';

/** A group's token bucket as stored: tokens left (fractional) at `refilledAt` (ms). */
export interface Bucket {
  tokens: number;
  refilledAt: number;
}

/**
 * What a group grants a worker, given what the other workers hold and the bucket as stored; both stores run it
 * inside the transaction that read those and write back `bucket`. Slots: at most `concurrency` across workers,
 * and never fewer than the caller runs. Tokens: refilled at `perSecond` up to `burst`, granted only for slots
 * the caller holds and does not use, spent at once. Times are the store's clock; the answer gives a duration.
 */
export function grantGroup(request: GroupRequest, othersSlots: number, stored: Bucket | null, now: number): GroupGrant & { bucket: Bucket | null } {
  const slots = request.concurrency === null ? request.slots : Math.max(Math.min(request.slots, request.concurrency - othersSlots), Math.min(request.slots, request.running));
  const idle = request.concurrency === null ? request.tokens : Math.max(0, slots - request.running);
  const wanted = Math.min(request.tokens, idle);
  if (request.perSecond === null || wanted <= 0) return { slots, tokens: wanted, nextTokenInMs: null, bucket: null };
  const before = stored ?? { tokens: request.burst, refilledAt: now };
  const level = Math.min(request.burst, before.tokens + (Math.max(0, now - before.refilledAt) * request.perSecond) / 1_000);
  const tokens = Math.min(wanted, Math.floor(level));
  const left = level - tokens;
  const nextTokenInMs = left >= 1 ? 0 : Math.max(1, Math.ceil(((1 - left) * 1_000) / request.perSecond));
  return { slots, tokens, nextTokenInMs, bucket: { tokens: left, refilledAt: now } };
}
